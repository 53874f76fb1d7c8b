"""The dialogue store: threads and their messages, each with its sentiment, in one database."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from tuneloop import sentiment
from tuneloop._files import create_private
from tuneloop.errors import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    ThreadNotFoundError,
)
from tuneloop.store.schema import AssistantRow, MessageRow, ThreadRow, schema_head, utcnow

if TYPE_CHECKING:
    from tuneloop.store.search import SearchHit

TITLE_LENGTH = 80


def _aware(value: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Thread:
    id: str
    assistant_id: str | None
    model: str
    title: str | None
    system_instruction: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int | None = None
    kind: str | None = None
    metadata: dict[str, str] | None = None

    @classmethod
    def from_row(cls, row: ThreadRow, message_count: int | None = None) -> Thread:
        return cls(
            kind=row.kind,
            metadata=row.metadata_,
            id=row.id,
            assistant_id=row.assistant_id,
            model=row.model,
            title=row.title,
            system_instruction=row.system_instruction,
            created_at=_aware(row.created_at),
            updated_at=_aware(row.updated_at),
            message_count=message_count,
        )


@dataclass(frozen=True)
class Message:
    id: int
    thread_id: str
    role: str
    content: str
    sentiment: str
    sentiment_score: float
    reaction: str | None
    reaction_score: float | None
    feedback: int | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    latency_ms: int | None
    finish_reason: str | None
    attachments: list[dict[str, Any]] | None
    created_at: datetime
    item_id: str | None = None
    metadata: dict[str, str] | None = None

    @classmethod
    def from_row(cls, row: MessageRow) -> Message:
        return cls(
            item_id=row.item_id,
            metadata=row.metadata_,
            id=row.id,
            thread_id=row.thread_id,
            role=row.role,
            content=row.content,
            sentiment=row.sentiment_label,
            sentiment_score=row.sentiment_score,
            reaction=row.reaction_label,
            reaction_score=row.reaction_score,
            feedback=row.feedback,
            model=row.model,
            tokens_in=row.tokens_in,
            tokens_out=row.tokens_out,
            latency_ms=row.latency_ms,
            finish_reason=row.finish_reason,
            attachments=row.attachments,
            created_at=_aware(row.created_at),
        )

    def to_dialogue(self) -> dict[str, Any]:
        """The seed's dialogue entry: role, content, sentiment."""
        return {"role": self.role, "content": self.content, "sentiment": self.sentiment}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "thread_id": self.thread_id,
            "role": self.role,
            "content": self.content,
            "sentiment": self.sentiment,
            "sentiment_score": self.sentiment_score,
            "reaction": self.reaction,
            "reaction_score": self.reaction_score,
            "feedback": self.feedback,
            "model": self.model,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_ms": self.latency_ms,
            "finish_reason": self.finish_reason,
            "attachments": self.attachments,
            "created_at": self.created_at.isoformat(),
            "item_id": self.item_id,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Exchange:
    user: Message
    assistant: Message


def new_thread_id() -> str:
    return f"thread_{secrets.token_hex(12)}"


class DialogueStore:
    """Threads and messages in SQLite (WAL mode) or any SQLAlchemy database, migrated on open."""

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(
                f"invalid database URL {url!r}; use sqlite:///path/to/file.db or "
                "postgresql+psycopg://user@host/db in TUNELOOP_DATABASE_URL"
            ) from None
        self.url = parsed.render_as_string(hide_password=True)
        self.busy_timeout = busy_timeout
        self.path: Path | None = None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        connect_args: dict[str, Any] = {}
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            self.path = Path(parsed.database).expanduser()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                create_private(self.path)  # the log is the user's alone: 0600, as are its -wal and -shm files
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {self.path}: {exc.strerror}") from None
            connect_args["timeout"] = busy_timeout
        try:
            self.engine: Engine = create_engine(parsed, connect_args=connect_args)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(
                f"no driver for database URL {self.url}: {exc}; install the driver "
                "(for PostgreSQL: pip install 'psycopg[binary]')"
            ) from None
        if self.is_sqlite:
            self._configure_sqlite()
        self._migrate()

    @property
    def location(self) -> str:
        return str(self.path) if self.path else self.url

    def _configure_sqlite(self) -> None:
        busy_ms = int(self.busy_timeout * 1000)

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            # We issue BEGIN ourselves (below) so that reads and writes are truly transactional.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A writer takes the write lock up front, so waiting on a busy database honours busy_timeout.
            write = conn.get_execution_options().get("tuneloop_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise self._store_error(exc) from None
        except SQLAlchemyError as exc:
            raise StoreError(f"database {self.location}: {exc}") from None

    def _store_error(self, exc: DBAPIError) -> StoreError:
        text = str(exc.orig).lower()
        if "locked" in text or "busy" in text:
            return StoreLockedError(
                f"database {self.location} is locked by another process (waited {self.busy_timeout:g}s); "
                "let the other tuneloop finish and retry, or raise TUNELOOP_DB_BUSY_TIMEOUT"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreCorruptError(
                f"database {self.location} is corrupt or not a tuneloop database; move it aside "
                "(tuneloop then starts a new one) or point TUNELOOP_DATABASE_URL at another file"
            )
        if "unable to open" in text or "readonly" in text or "read-only" in text:
            return StoreError(
                f"cannot open database {self.location} for writing; check that the file and its folder "
                "are writable"
            )
        if "connection failed" in text or "could not connect" in text or "connection refused" in text:
            return StoreError(
                f"cannot connect to the database {self.location} ({' '.join(str(exc.orig).split())[-160:]}); "
                "check TUNELOOP_DATABASE_URL and that the database server is running"
            )
        if "authentication failed" in text or "no password supplied" in text:
            return StoreError(
                f"the database {self.location} refused the user or password; check TUNELOOP_DATABASE_URL"
            )
        return StoreError(f"database {self.location}: {' '.join(str(exc.orig).split())}")

    def _at_head(self) -> bool:
        """Whether the database is at the newest migration, read without alembic (importing it costs 0.1 s of
        every command's start)."""
        try:
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except DBAPIError:
            return False  # no such table yet (a new database), or a database we could not read: migrate says why
        return [r[0] for r in rows] == [schema_head()]

    def _migrate(self) -> None:
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self._translate_errors():
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            try:
                with self.engine.connect() as conn:
                    if self.engine.dialect.name == "postgresql":
                        # Processes opening a new database at once migrate it one after the other (SQLite: the
                        # write lock that BEGIN IMMEDIATE takes does the same).
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7461535)")
                        if MigrationContext.configure(conn).get_current_revision() == head:
                            conn.commit()
                            return
                    config.attributes["connection"] = conn.execution_options(tuneloop_write=True)
                    command.upgrade(config, "head")
                    conn.commit()
            except DBAPIError as exc:
                # Another process may have migrated the same database at the same moment.
                with self.engine.connect() as conn:
                    if MigrationContext.configure(conn).get_current_revision() != head:
                        raise exc

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with self._translate_errors(), self.engine.connect() as conn:
            conn.execution_options(tuneloop_write=write)
            with conn.begin(), Session(bind=conn, expire_on_commit=False) as session:
                yield session
                session.flush()

    def close(self) -> None:
        self.engine.dispose()

    def _no_thread(self, thread_id: str) -> ThreadNotFoundError:
        return ThreadNotFoundError(
            f"no thread {thread_id!r} in {self.location}; run `tuneloop logs list` to see the threads"
        )

    # Threads

    def create_thread(
        self,
        *,
        model: str,
        assistant: dict[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        """Create an empty thread. ``assistant`` (the definition in use) is recorded beside it."""
        with self._session(write=True) as session:
            row = self._insert_thread(session, thread_id or new_thread_id(), model, assistant)
            return Thread.from_row(row, 0)

    def _insert_thread(
        self, session: Session, thread_id: str, model: str, assistant: dict[str, Any] | None
    ) -> ThreadRow:
        now = utcnow()
        if assistant is not None:
            session.merge(
                AssistantRow(
                    id=assistant["id"],
                    name=assistant.get("name") or assistant["id"],
                    model=assistant.get("model"),
                    instructions=assistant.get("instructions"),
                    temperature=float(assistant.get("temperature") or 0.0),
                    updated_at=now,
                )
            )
        row = ThreadRow(
            id=thread_id,
            assistant_id=assistant["id"] if assistant else None,
            model=model,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def check_writable(self) -> None:
        """Fail now, with StoreLockedError, if another process holds the write lock too long."""
        with self._session(write=True):
            pass

    def get_thread(self, thread_id: str) -> Thread:
        with self._session() as session:
            row = session.get(ThreadRow, thread_id)
            if row is None:
                raise self._no_thread(thread_id)
            return Thread.from_row(row)

    def latest_thread(self) -> Thread | None:
        with self._session() as session:
            row = session.scalars(select(ThreadRow).order_by(ThreadRow.updated_at.desc()).limit(1)).first()
            return Thread.from_row(row) if row else None

    def list_threads(self, limit: int = 20, offset: int = 0) -> list[Thread]:
        counts = (
            select(MessageRow.thread_id, func.count(MessageRow.id).label("n"))
            .group_by(MessageRow.thread_id)
            .subquery()
        )
        query = (
            select(ThreadRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.thread_id == ThreadRow.id)
            .order_by(ThreadRow.updated_at.desc(), ThreadRow.id)
            .limit(limit)
            .offset(offset)
        )
        with self._session() as session:
            return [Thread.from_row(row, int(n)) for row, n in session.execute(query)]

    # Messages

    def messages(self, thread_id: str) -> list[Message]:
        with self._session() as session:
            if session.get(ThreadRow, thread_id) is None:
                raise self._no_thread(thread_id)
            rows = session.scalars(
                select(MessageRow).where(MessageRow.thread_id == thread_id).order_by(MessageRow.id)
            )
            return [Message.from_row(row) for row in rows]

    def append_exchange(
        self,
        thread_id: str,
        user_content: str,
        assistant_content: str,
        *,
        model: str,
        system_instruction: str | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        latency_ms: int | None = None,
        finish_reason: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        create: bool = False,
        assistant: dict[str, Any] | None = None,
    ) -> Exchange:
        """Log one user turn and the reply in one short transaction, whatever the thread's length.

        The user turn's sentiment is also recorded as the reaction to the thread's previous reply;
        a system instruction different from the one in force is logged as a system message first.
        With ``create``, a thread that does not exist yet is created in the same transaction.
        """
        user_sentiment = sentiment.analyze(user_content)
        reply_sentiment = sentiment.analyze(assistant_content)
        now = utcnow()
        with self._session(write=True) as session:
            thread = session.get(ThreadRow, thread_id)
            if thread is None and create:
                thread = self._insert_thread(session, thread_id, model, assistant)
            if thread is None:
                raise self._no_thread(thread_id)
            last = session.scalars(
                select(MessageRow)
                .where(MessageRow.thread_id == thread_id)
                .order_by(MessageRow.id.desc())
                .limit(1)
            ).first()
            if last is not None and last.role == "assistant":
                last.reaction_label = user_sentiment.label
                last.reaction_score = user_sentiment.score
            if system_instruction and system_instruction != thread.system_instruction:
                system_sentiment = sentiment.analyze(system_instruction)
                session.add(
                    MessageRow(
                        thread_id=thread_id,
                        role="system",
                        content=system_instruction,
                        sentiment_label=system_sentiment.label,
                        sentiment_score=system_sentiment.score,
                        created_at=now,
                    )
                )
                thread.system_instruction = system_instruction
            user_row = MessageRow(
                thread_id=thread_id,
                role="user",
                content=user_content,
                attachments=attachments,
                sentiment_label=user_sentiment.label,
                sentiment_score=user_sentiment.score,
                created_at=now,
            )
            reply_row = MessageRow(
                thread_id=thread_id,
                role="assistant",
                content=assistant_content,
                model=model,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                latency_ms=latency_ms,
                finish_reason=finish_reason,
                sentiment_label=reply_sentiment.label,
                sentiment_score=reply_sentiment.score,
                created_at=now,
            )
            session.add_all([user_row, reply_row])
            if thread.title is None:
                thread.title = " ".join(user_content.split())[:TITLE_LENGTH]
            thread.model = model
            thread.updated_at = now
            session.flush()
            return Exchange(Message.from_row(user_row), Message.from_row(reply_row))

    def set_feedback(self, message_id: int, value: int) -> Message:
        """Rate an assistant message up (+1) or down (-1); 0 clears the rating."""
        if value not in (-1, 0, 1):
            raise ValueError("feedback must be -1, 0 or 1")
        with self._session(write=True) as session:
            row = session.get(MessageRow, message_id)
            if row is None or row.role != "assistant":
                raise StoreError(f"no assistant message {message_id} in {self.location}")
            row.feedback = value or None
            session.flush()
            return Message.from_row(row)

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages holding every word of ``query`` (as word prefixes), best match first (full-text search)."""
        from tuneloop.store.search import search

        return search(self, query, limit)

    def export(self, thread_ids: list[str] | None = None) -> Iterator[tuple[Thread, list[Message]]]:
        """Every thread (or those named) with its messages, oldest thread first."""
        if thread_ids is None:
            with self._session() as session:
                thread_ids = list(session.scalars(select(ThreadRow.id).order_by(ThreadRow.created_at)))
        for thread_id in thread_ids:
            yield self.get_thread(thread_id), self.messages(thread_id)
