"""The one database handle: engine, transactions, migrations and the dialect's small differences.

Every concept of the store is a repository over one :class:`Database` (``DialogueStore``, ``Conversations``,
``JobStore``, ``ApiObjects``, ``BaseModels`` …). They open transactions with :meth:`Database.session`; nothing
else reaches the engine. The store persists what it is given: labels such as sentiment are computed above it.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from tuneloop.errors import StoreCorruptError, StoreError, StoreLockedError
from tuneloop.store.indexing import add_sqlite_functions
from tuneloop.store.schema import schema_head
from tuneloop.util.fileio import create_private


def aware(value: datetime) -> datetime:
    """``value`` with its zone: SQLite hands datetimes back without it, and everything is stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def epoch_seconds(value: datetime | None) -> int | None:
    """``value`` as Unix seconds, as OpenAI's objects give times (None stays None)."""
    return int(aware(value).timestamp()) if value is not None else None


ROW_ID_MAX = 2**63 - 1  # the largest integer key SQLite and PostgreSQL's BIGINT hold


def row_id_in_range(row_id: int) -> bool:
    """Whether ``row_id`` can be an integer key at all: a number outside it names no row (and must not reach the
    driver, which raises OverflowError for it)."""
    return 0 < row_id <= ROW_ID_MAX


def new_id(prefix: str) -> str:
    """A new row id such as ``file-1a2b3c4d5e6f7a8b`` or ``ftjob-…``."""
    return f"{prefix}-{secrets.token_hex(8)}"


class Database:
    """SQLite (WAL mode) or any SQLAlchemy database, migrated to the newest schema when opened."""

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
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
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
        if self.dialect == "sqlite":
            self._configure_sqlite()
        self._migrate()

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, …: where a repository's SQL must differ (full-text search, locks)."""
        return self.engine.dialect.name

    @property
    def location(self) -> str:
        """Where the data is, for messages: the file, or the URL without its password."""
        return str(self.path) if self.path else self.url

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction, committed when the block ends (rolled back on an exception). ``write`` takes SQLite's
        write lock up front, so a busy database is waited for (``busy_timeout``) instead of failing mid-way.
        Database errors come out as StoreError and its subclasses, saying what to do."""
        with self.translate_errors(), self.engine.connect() as conn:
            conn.execution_options(tuneloop_write=write)
            with conn.begin(), Session(bind=conn, expire_on_commit=False) as session:
                yield session
                session.flush()

    def check_writable(self) -> None:
        """Fail now, with StoreLockedError, if another process holds the write lock too long."""
        with self.session(write=True):
            pass

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Database errors inside the block come out as StoreError (locked, corrupt, unreachable, …)."""
        try:
            yield
        except DBAPIError as exc:
            raise self._store_error(exc) from None
        except SQLAlchemyError as exc:
            raise StoreError(f"database {self.location}: {exc}") from None

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
            add_sqlite_functions(dbapi_connection)  # the full-text index's triggers call it

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A writer takes the write lock up front, so waiting on a busy database honours busy_timeout.
            write = conn.get_execution_options().get("tuneloop_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

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
        # Lazy: alembic costs 0.1 s of every command's start, and a database at head never needs it.
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self.translate_errors():
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            try:
                with self.engine.connect() as conn:
                    if self.dialect == "postgresql":
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


class Repository:
    """One concept's rows over the shared :class:`Database`. Built from the database itself, or from anything that
    holds it as ``db`` (another repository, the ``Store`` handle)."""

    def __init__(self, db: Database | Repository | Any) -> None:
        self.db: Database = db if isinstance(db, Database) else db.db

    @property
    def location(self) -> str:
        return self.db.location
