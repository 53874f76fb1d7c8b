"""The dialogue store on real SQLite and real PostgreSQL: exchanges, reactions, O(1) appends, full-text search,
locks and corruption."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli
from helpers import log_exchange
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tuneloop.errors import StoreCorruptError, StoreLockedError, ThreadNotFoundError
from tuneloop.store import DialogueStore
from tuneloop.store import dialogue as dialogue_module
from tuneloop.store.schema import Base, schema_head


@pytest.fixture
def store(database_url: str) -> DialogueStore:
    """A fresh store on SQLite, then on PostgreSQL."""
    return DialogueStore(database_url, busy_timeout=0.3)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> DialogueStore:
    return DialogueStore(f"sqlite:///{tmp_path / 'log.db'}", busy_timeout=0.3)


def test_exchange_logs_sentiment_reaction_and_system(store: DialogueStore) -> None:
    thread = store.create_thread(model="m", assistant={"id": "helper", "name": "Helper"})
    turns = [("What is the capital of France?", "Paris.", "Be brief."),
             ("Thanks, that is great!", "Glad to help.", "Be brief."),
             ("That is wrong and useless.", "Sorry.", "Be kind.")]
    for user, reply, system in turns:
        log_exchange(store, thread.id, user, reply, model="m", system_instruction=system)
    messages = store.messages(thread.id)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "system", "user",
                                          "assistant"]
    assert messages[2].reaction == "positive" and messages[4].reaction == "negative"
    assert messages[7].reaction is None
    assert messages[3].sentiment == "positive" and messages[6].sentiment == "negative"
    assert [m.content for m in messages if m.role == "system"] == ["Be brief.", "Be kind."]
    assert store.get_thread(thread.id).title == "What is the capital of France?"
    assert messages[1].to_dialogue() == {"role": "user", "content": "What is the capital of France?",
                                         "sentiment": "neutral"}


def test_append_creates_thread_in_the_same_transaction(store: DialogueStore) -> None:
    exchange = log_exchange(store, "thread_new", "hi", "hello", model="m", create=True,
                                     assistant={"id": "default", "name": "Default"})
    assert exchange.user.thread_id == "thread_new"
    assert store.get_thread("thread_new").assistant_id == "default"
    with pytest.raises(ThreadNotFoundError):
        log_exchange(store, "thread_missing", "hi", "hello", model="m")
    assert [t.id for t in store.list_threads()] == ["thread_new"]


def test_append_cost_does_not_grow_with_the_thread(store: DialogueStore) -> None:
    thread = store.create_thread(model="m")
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(statement)

    log_exchange(store, thread.id, "first", "reply", model="m")
    event.listen(store.db.engine, "before_cursor_execute", count)
    log_exchange(store, thread.id, "second", "reply", model="m")
    first = len(statements)
    for i in range(150):
        log_exchange(store, thread.id, f"question {i}", f"answer {i}", model="m")
    statements.clear()
    log_exchange(store, thread.id, "last", "reply", model="m")
    assert len(statements) == first
    assert not any("count(" in s.lower() for s in statements)
    assert all("limit" in s.lower() for s in statements if s.lower().startswith("select") and "messages" in s)


def test_search_list_export_and_feedback(store: DialogueStore) -> None:
    a = store.create_thread(model="m")
    b = store.create_thread(model="m")
    log_exchange(store, a.id, "Tell me about 100% cotton shirts", "Cotton is soft, and cotton breathes.", model="m")
    log_exchange(store, b.id, "What about wool?", "Wool is warm. Café au lait is not.", model="m")
    hits = store.search("COTTON")
    # Ranked: the reply that says cotton twice first; the matching words are marked, in their own case.
    assert [h.message.content for h in hits] == ["Cotton is soft, and cotton breathes.",
                                                 "Tell me about 100% cotton shirts"]
    assert hits[0].rank > hits[1].rank
    assert hits[0].matches == ["cotton"] and "\x02Cotton\x03" in hits[0].snippet
    assert hits[1].marked("[", "]") == "Tell me about 100% [cotton] shirts"
    assert [h.message.content for h in store.search("shirt 100")] == ["Tell me about 100% cotton shirts"]  # prefixes
    assert [h.message.content for h in store.search("CAFÉ")] == ["Wool is warm. Café au lait is not."]
    assert store.search("cotton wool") == []  # every word must match
    assert store.search("_") == [] and store.search("\\\\%") == [] and store.search('"*:') == []
    log_exchange(store, b.id, "and cotton?", "Also nice.", model="m")
    assert "and cotton?" in [h.message.content for h in store.search("cotton")]  # new messages are indexed
    assert {t.id: t.message_count for t in store.list_threads()} == {a.id: 2, b.id: 4}
    exported = list(store.export())
    assert [t.id for t, _ in exported] == [a.id, b.id]
    reply = exported[0][1][1]
    assert store.set_feedback(reply.id, 1).feedback == 1


def test_locked_database_gives_typed_error_quickly(sqlite_store: DialogueStore, tmp_path: Path) -> None:
    store = sqlite_store
    holder = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as info:
            store.create_thread(model="m")
        assert time.monotonic() - started < 5
        assert "log.db" in str(info.value) and "locked" in str(info.value)
        assert store.list_threads() == []  # readers are not blocked (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.create_thread(model="m")


def test_corrupt_database_gives_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreCorruptError) as info:
        DialogueStore(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert path.read_bytes().startswith(b"this is not a database")  # nothing was overwritten


def test_reopening_keeps_data_and_migrates_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    first = DialogueStore(url)
    thread = first.create_thread(model="m")
    log_exchange(first, thread.id, "hi", "hello", model="m")
    first.close()
    again = DialogueStore(url)
    assert [m.content for m in again.messages(thread.id)] == ["hi", "hello"]
    with sqlite3.connect(tmp_path / "log.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema_head(),)]


def test_the_quick_schema_check_knows_alembics_head() -> None:
    """Opening a store compares its version with ``schema_head`` (no alembic import): it must be alembic's head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    config = Config()
    config.set_main_option("script_location", str(Path(dialogue_module.__file__).parent / "migrations"))
    assert schema_head() == ScriptDirectory.from_config(config).get_current_head()


def test_the_migrations_build_the_schema_the_code_declares(tmp_path: Path) -> None:
    """A column or table added to schema.py without a migration (or the other way round) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = DialogueStore(f"sqlite:///{tmp_path / 'log.db'}")
    with store.db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # The full-text index of 0004 is SQLite's own virtual table, which schema.py does not declare.
    assert [d for d in differences if "messages_fts" not in str(d)] == []


def test_an_unreachable_or_refusing_postgresql_is_one_clear_line(home: Path, postgres) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("logs", env={"TUNELOOP_DATABASE_URL": f"postgresql+psycopg://me:s3cret-pw@127.0.0.1:{port}/x"})
    assert_one_line_error(result, "cannot connect to the database", "TUNELOOP_DATABASE_URL")
    assert "s3cret-pw" not in result.stderr
    missing = make_url(postgres.admin_url).set(database="no_such_database").render_as_string(hide_password=False)
    result = run_cli("logs", env={"TUNELOOP_DATABASE_URL": missing})
    assert_one_line_error(result, "no_such_database")
