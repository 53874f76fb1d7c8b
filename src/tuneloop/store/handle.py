"""The one database handle: :class:`Store` opens (and migrates) the database once and holds a repository per
concept by name, so that a service takes the repositories it uses (``store.dialogue``, ``store.jobs``…) and nothing
builds a second handle over the same database."""

from __future__ import annotations

from functools import cached_property

from tuneloop.store.api_objects import ApiObjects
from tuneloop.store.base_models import BaseModels
from tuneloop.store.browse import LogBrowser
from tuneloop.store.conversations import Conversations
from tuneloop.store.corrections import Corrections
from tuneloop.store.database import Database
from tuneloop.store.dialogue import DialogueStore
from tuneloop.store.eval_runs import EvalRuns
from tuneloop.store.files import FileStore
from tuneloop.store.jobs import JobStore
from tuneloop.store.judgments import Judgments
from tuneloop.store.tasks import TaskStore


class Store:
    """The database at ``url`` (SQLite or PostgreSQL) and its repositories."""

    def __init__(self, url: str | Database, *, busy_timeout: float = 5.0) -> None:
        self.db = url if isinstance(url, Database) else Database(url, busy_timeout=busy_timeout)

    @property
    def location(self) -> str:
        """Where the data is, for messages: the file, or the URL without its password."""
        return self.db.location

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def check_writable(self) -> None:
        """Fail now, with StoreLockedError, if another process holds the write lock too long."""
        self.db.check_writable()

    def close(self) -> None:
        self.db.close()

    @cached_property
    def dialogue(self) -> DialogueStore:
        """Threads and their messages (the log)."""
        return DialogueStore(self.db)

    @cached_property
    def browse(self) -> LogBrowser:
        """The log's threads, filtered and paged by the database."""
        return LogBrowser(self.db)

    @cached_property
    def conversations(self) -> Conversations:
        return Conversations(self.db)

    @cached_property
    def api_objects(self) -> ApiObjects:
        return ApiObjects(self.db)

    @cached_property
    def corrections(self) -> Corrections:
        return Corrections(self.db)

    @cached_property
    def judgments(self) -> Judgments:
        return Judgments(self.db)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.db)

    @cached_property
    def files(self) -> FileStore:
        return FileStore(self.db)

    @cached_property
    def base_models(self) -> BaseModels:
        return BaseModels(self.db)

    @cached_property
    def eval_runs(self) -> EvalRuns:
        return EvalRuns(self.db)

    @cached_property
    def tasks(self) -> TaskStore:
        """Long work of every kind: queued, taken, heartbeating, cancelled, finished; its events."""
        return TaskStore(self.db)
