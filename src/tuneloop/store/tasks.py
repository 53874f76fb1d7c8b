"""Long work of every kind (fine-tuning jobs, judge runs, eval runs…): queued, taken by one worker at a time,
heartbeating while it runs, cancelled on request, finished once; and what it said while it ran, in order. The runner
that drives them is :mod:`tuneloop.tasks`; every write here is one short transaction, guarded so that a worker and a
canceller racing never both win."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tuneloop.errors import TaskNotFoundError
from tuneloop.store.database import Repository, aware, epoch_seconds, new_id
from tuneloop.store.schema import TaskEventRow, TaskRow, utcnow

ACTIVE = ("validating_files", "queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
STATUSES = (*ACTIVE, *FINISHED)


def _when(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


@dataclass(frozen=True)
class Task:
    id: str
    kind: str
    status: str
    title: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    state: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: dict[str, Any] | None
    model: str | None
    device: str | None
    quantize: str | None
    worker: str | None
    pid: int | None
    heartbeat_at: datetime | None
    attempts: int
    spawns: int  # one-task workers started for it since a worker last took it
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: TaskRow) -> Task:
        return cls(id=row.id, kind=row.kind, status=row.status, title=row.title, params=dict(row.params or {}),
                   result=row.result, state=row.state, error=row.error, progress=row.progress, model=row.model,
                   device=row.device, quantize=row.quantize, worker=row.worker, pid=row.pid,
                   heartbeat_at=_when(row.heartbeat_at), attempts=int(row.attempts or 0),
                   spawns=int(row.spawns or 0), cancel_requested=bool(row.cancel_requested),
                   created_at=aware(row.created_at), started_at=_when(row.started_at),
                   finished_at=_when(row.finished_at))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """The task as JSON (the CLI's --json, ``GET /v1/tasks/{id}``); times in Unix seconds. A parameter that is
        a long list (an eval's questions) is given as its length."""
        params = {k: (f"{len(v)} items" if isinstance(v, list) and len(v) > 20 else v) for k, v in self.params.items()}
        return {"id": self.id, "object": "task", "kind": self.kind, "status": self.status, "title": self.title,
                "params": params, "progress": self.progress, "result": self.result, "error": self.error,
                "attempts": self.attempts, "worker": self.worker, "cancel_requested": self.cancel_requested,
                "created_at": epoch_seconds(self.created_at), "started_at": epoch_seconds(self.started_at),
                "finished_at": epoch_seconds(self.finished_at)}


@dataclass(frozen=True)
class TaskEvent:
    id: int
    task_id: str
    level: str
    message: str
    type: str
    data: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: TaskEventRow) -> TaskEvent:
        return cls(row.id, row.task_id, row.level, row.message, row.type, row.data, aware(row.created_at))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "task.event", "created_at": epoch_seconds(self.created_at),
                "level": self.level, "type": self.type, "message": self.message, "data": self.data or {}}


def event_row(task_id: str, message: str, level: str = "info", type_: str = "message",
              data: dict[str, Any] | None = None) -> TaskEventRow:
    return TaskEventRow(task_id=task_id, level=level, message=message, type=type_, data=data, created_at=utcnow())


class TaskStore(Repository):
    """Tasks and their events."""

    def _not_found(self, task_id: str) -> TaskNotFoundError:
        return TaskNotFoundError(f"no task {task_id!r} in {self.location}", task_id).with_hint(
            "`tuneloop tasks list` lists them")

    def add_task(self, session: Session, kind: str, *, task_id: str | None = None, status: str = "queued",
                 params: dict[str, Any] | None = None, title: str | None = None, model: str | None = None,
                 device: str | None = None, quantize: str | None = None, first_event: str | None = None) -> TaskRow:
        """A new task's row in ``session`` (the transaction of whoever creates it with its kind's own rows)."""
        row = TaskRow(id=task_id or new_id("task"), kind=kind, status=status, params=params, title=title,
                      model=model, device=device, quantize=quantize, attempts=0, spawns=0, cancel_requested=False,
                      created_at=utcnow())
        session.add(row)
        session.flush()
        if first_event:
            session.add(event_row(row.id, first_event))
        return row

    def create(self, kind: str, **fields: Any) -> Task:
        """Queue a new task (see :meth:`add_task` for the fields)."""
        with self.db.session(write=True) as session:
            return Task.from_row(self.add_task(session, kind, **fields))

    def get(self, task_id: str) -> Task:
        with self.db.session() as session:
            row = session.get(TaskRow, task_id)
            if row is None:
                raise self._not_found(task_id)
            return Task.from_row(row)

    def list(self, *, kinds: Sequence[str] | None = None, statuses: Sequence[str] | None = None, limit: int = 20,
             after: str | None = None) -> list[Task]:
        """Tasks, newest first; ``after``: the page after that task (its id)."""
        statement = select(TaskRow).order_by(TaskRow.created_at.desc(), TaskRow.id.desc())
        if kinds is not None:
            statement = statement.where(TaskRow.kind.in_(kinds))
        if statuses is not None:
            statement = statement.where(TaskRow.status.in_(statuses))
        if after:
            try:
                anchor = self.get(after)
            except TaskNotFoundError as exc:
                raise exc.named_by("after") from None
            statement = statement.where(TaskRow.created_at <= anchor.created_at, TaskRow.id != after)
        with self.db.session() as session:
            return [Task.from_row(r) for r in session.scalars(statement.limit(limit))]

    def unfinished(self, kinds: Sequence[str] | None = None, statuses: Sequence[str] = ACTIVE) -> list[Task]:
        """Tasks in ``statuses`` (every unfinished one by default), oldest first."""
        statement = select(TaskRow).where(TaskRow.status.in_(statuses)).order_by(TaskRow.created_at, TaskRow.id)
        if kinds is not None:
            statement = statement.where(TaskRow.kind.in_(kinds))
        with self.db.session() as session:
            return [Task.from_row(r) for r in session.scalars(statement)]

    def claim(self, worker: str, *, pid: int, kinds: Sequence[str], task_id: str | None = None,
              models: Sequence[str] | None = None, devices: Sequence[str] = ("cpu",), quantize: bool = False
              ) -> Task | None:
        """Take the oldest queued task of ``kinds`` this worker can run, atomically: it becomes ``running`` for
        ``worker`` and no other worker can take it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock,
        taken up front by an immediate transaction, does the same)."""
        statement = (select(TaskRow).where(TaskRow.status == "queued", TaskRow.kind.in_(kinds))
                     .where(or_(TaskRow.device.is_(None), TaskRow.device == "auto", TaskRow.device.in_(devices)))
                     .order_by(TaskRow.created_at, TaskRow.id).limit(1).with_for_update(skip_locked=True))
        if task_id is not None:
            statement = statement.where(TaskRow.id == task_id)
        if models:
            statement = statement.where(or_(TaskRow.model.is_(None), TaskRow.model.in_(models)))
        if not quantize:
            statement = statement.where(TaskRow.quantize.is_(None))
        now = utcnow()
        with self.db.session(write=True) as session:
            row = session.scalars(statement).first()
            if row is None:
                return None
            row.status, row.worker, row.pid, row.heartbeat_at = "running", worker, pid, now
            row.attempts, row.spawns = int(row.attempts or 0) + 1, 0
            row.started_at = now
            session.flush()
            return Task.from_row(row)

    def requeue(self, task_id: str, *, worker: str | None, reason: str, max_attempts: int, charge: bool = True,
                noun: str = "task") -> Task | None:
        """Put a running task back in the queue (its worker was lost, or stopped), or fail it once it has been
        started ``max_attempts`` times. ``worker`` guards against a task another worker has taken meanwhile;
        ``charge=False`` (a worker that stopped cleanly) does not count the attempt."""
        with self.db.session(write=True) as session:
            row = self.locked_row(session, task_id, ("running",), worker)
            if row is None:
                return None
            attempts = int(row.attempts or 0) - (0 if charge else 1)
            if attempts >= max_attempts:
                message = f"{reason}; the {noun} was started {attempts} times, the most allowed (job_max_attempts)"
                row.status, row.finished_at = "failed", utcnow()
                row.error = {"code": "worker_lost", "message": message, "param": None}
                session.add(event_row(task_id, message, "error"))
            else:
                row.status, row.worker, row.pid, row.attempts = "queued", None, None, max(0, attempts)
                session.add(event_row(task_id, f"{reason}; the {noun} is queued again ({attempts} of {max_attempts} "
                                               "attempts used)", "warn"))
            session.flush()
            return Task.from_row(row)

    def spawned(self, task_id: str, *, worker: str, pid: int) -> Task | None:
        """Record the one-task worker started for queued ``task_id`` (its pid, while the task waits), counted in
        ``spawns``; None when the task is no longer queued."""
        with self.db.session(write=True) as session:
            row = self.locked_row(session, task_id, ("queued",))
            if row is None:
                return None
            row.worker, row.pid, row.heartbeat_at, row.spawns = worker, pid, utcnow(), int(row.spawns or 0) + 1
            session.flush()
            return Task.from_row(row)

    def update(self, task_id: str, *, event: tuple[str, str] | None = None,
               only_if_status: Sequence[str] | None = None, only_if_worker: str | None = None, **fields: Any
               ) -> Task | None:
        """Change a task (and log an event ``(level, message)``) in one transaction. With ``only_if_status``,
        nothing changes (None is returned) unless the task is in one of those states: the guard that keeps a
        finished task finished when a worker and a canceller race; ``only_if_worker`` likewise keeps a worker from
        touching a task that was taken from it."""
        with self.db.session(write=True) as session:
            row = self.locked_row(session, task_id, only_if_status, only_if_worker)
            if row is None:
                return None
            for name, value in fields.items():
                setattr(row, name, value)
            if event is not None:
                session.add(event_row(task_id, event[1], event[0]))
            session.flush()
            return Task.from_row(row)

    def locked_row(self, session: Session, task_id: str, only_if_status: Sequence[str] | None = None,
                   only_if_worker: str | None = None) -> TaskRow | None:
        """The task's row, read for a change in ``session``, or None when a guard does not hold."""
        row = session.get(TaskRow, task_id, with_for_update=True)
        if row is None:
            raise self._not_found(task_id)
        if only_if_status is not None and row.status not in only_if_status:
            return None
        if only_if_worker is not None and row.worker != only_if_worker:
            return None
        return row

    def add_event(self, task_id: str, message: str, *, level: str = "info", type_: str = "message",
                  data: dict[str, Any] | None = None, progress: dict[str, Any] | None = None) -> None:
        """Log an event; ``progress`` (the task's latest state, for lists and bars) is kept with it, and counts as a
        heartbeat."""
        with self.db.session(write=True) as session:
            session.add(event_row(task_id, message, level, type_, data))
            if progress is not None:
                row = session.get(TaskRow, task_id)
                if row is not None:
                    row.progress = progress
                    row.heartbeat_at = utcnow()

    def events(self, task_id: str, *, after: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[TaskEvent]:
        self.get(task_id)
        statement = select(TaskEventRow).where(TaskEventRow.task_id == task_id)
        if after is not None:
            statement = statement.where(TaskEventRow.id < after if newest_first else TaskEventRow.id > after)
        statement = statement.order_by(TaskEventRow.id.desc() if newest_first else TaskEventRow.id)
        if limit is not None:
            statement = statement.limit(limit)
        with self.db.session() as session:
            return [TaskEvent.from_row(r) for r in session.scalars(statement)]
