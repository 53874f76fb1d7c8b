"""Search in Japanese, Chinese and Korean on real SQLite and real PostgreSQL: a word of one or two characters in the
middle of a run of text is found (those languages put no spaces between words), by the store's search (`tuneloop
logs search`) and by the log page's query, on a new database and on one written before migration 0010."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import run_cli
from sqlalchemy import Engine, create_engine, delete, insert, text, update

from tuneloop.store import DialogueStore
from tuneloop.store import database as database_module
from tuneloop.store.browse import LogBrowser, LogFilter
from tuneloop.store.schema import MessageRow, ThreadRow

DAY = datetime(2026, 11, 1, 9, tzinfo=UTC)
TEXTS = {
    1: "日本の首都は東京です。",  # Japanese: kanji and kana, no spaces
    2: "中国的首都是北京。",  # Chinese
    3: "東京都庁は新宿にある",  # 都 alone, 東京 again
    4: "대한민국의 수도는 서울입니다",  # Korean: spaces between phrases, particles attached
    5: "Tokyo is the capital of Japan; café au lait",
    6: "北 京 is written with a space here",  # as an English sentence might
    8: "牛丼なら𠮷野家",  # 𠮷 is beyond the BMP (CJK extension B)
}


def seed(engine: Engine, texts: dict[int, str]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ThreadRow.__table__), [
            {"id": f"t{i}", "model": "m", "created_at": DAY, "updated_at": DAY + timedelta(minutes=i)}
            for i in texts])
        conn.execute(insert(MessageRow.__table__), [
            {"id": i, "thread_id": f"t{i}", "role": "user", "content": content, "sentiment_label": "neutral",
             "sentiment_score": 0.5, "created_at": DAY + timedelta(minutes=i)} for i, content in texts.items()])


def found(store: DialogueStore, query: str) -> set[int]:
    """What `tuneloop logs search` finds, checked against what the log page's query keeps."""
    ids = {hit.message.id for hit in store.search(query)}
    threads = LogBrowser(store.db).thread_ids(LogFilter(query=query))
    assert sorted(threads) == sorted(f"t{i}" for i in ids), query
    return ids


@pytest.fixture
def store(database_url: str) -> DialogueStore:
    db = DialogueStore(database_url)
    seed(db.db.engine, TEXTS)
    return db


@pytest.mark.parametrize(("query", "expected"), [
    ("首都", {1, 2}),
    ("東京", {1, 3}),
    ("北京", {2, 6}),  # spaces between the characters do not count
    ("都", {1, 2, 3}),
    ("日本の首都", {1}),
    ("首都 東京", {1}),  # every word must match
    ("東都", set()),  # both characters are in 3, never side by side
    ("수도", {4}),
    ("민국", {4}),  # the end of 대한민국의
    ("서울", {4}),
    ("𠮷野", {8}),
    ("丼な", {8}),
    ("capit", {5}),  # prefixes of other words work as before
    ("CAFÉ", {5}),
    ("cafe", set()),  # accents count, as before
])
def test_one_and_two_character_words_are_found_anywhere(store: DialogueStore, query: str,
                                                        expected: set[int]) -> None:
    assert found(store, query) == expected


def test_the_matches_are_marked_in_the_text_as_written(store: DialogueStore) -> None:
    [hit] = store.search("首都 東京")
    assert hit.marked("[", "]").startswith("日本の[首都]は[東京]です")  # PostgreSQL leaves out the last 。
    assert hit.matches == ["首都", "東京"]
    [korean] = store.search("민국")
    assert korean.marked("[", "]") == "대한[민국]의 수도는 서울입니다"
    [spaced] = store.search("written")
    assert spaced.marked("[", "]") == "北 京 is [written] with a space here"  # its own spaces are kept
    assert store.search("capital")[0].marked("[", "]") == "Tokyo is the [capital] of Japan; café au lait"


def test_new_changed_and_deleted_messages_are_indexed(store: DialogueStore) -> None:
    seed(store.db.engine, {7: "大阪の首都圏ではない"})
    assert found(store, "首都") == {1, 2, 7}
    with store.db.engine.begin() as conn:
        conn.execute(update(MessageRow).where(MessageRow.id == 7).values(content="大阪は関西にある"))
        conn.execute(delete(ThreadRow).where(ThreadRow.id == "t2"))  # its messages go with it
    assert found(store, "首都") == {1}
    assert found(store, "関西") == {7}
    if store.db.dialect == "sqlite":
        with store.db.engine.begin() as conn:  # the index agrees with the messages it is built from
            conn.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')"))


def test_messages_written_before_the_migration_are_indexed_by_it(database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(database_module.__file__).parent / "migrations"))
    engine = create_engine(database_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0009")
    seed(engine, TEXTS)
    engine.dispose()
    store = DialogueStore(database_url)  # opening it migrates it to the newest schema
    assert found(store, "首都") == {1, 2}
    assert found(store, "都") == {1, 2, 3}
    assert found(store, "capit") == {5}


def test_tuneloop_logs_search_finds_them(any_home: Path, database_url: str) -> None:
    seed(DialogueStore(database_url).db.engine, TEXTS)
    result = run_cli("logs", "search", "--json", "首都")
    assert result.code == 0, result.stderr
    hits = json.loads(result.stdout)
    assert sorted(h["id"] for h in hits) == [1, 2]
    assert {tuple(h["matches"]) for h in hits} == {("首都",)}
