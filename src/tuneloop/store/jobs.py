"""Fine-tuning jobs, their events and checkpoints, in the same database as the dialogue log (the files they train
on are ``store.files``). A job is a task of kind ``fine_tune`` (``remote_fine_tune`` for one a remote platform runs):
its lifecycle and events are its task's (:mod:`tuneloop.store.tasks`, same id); OpenAI's fields are the job's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

# The errors live in tuneloop.errors; JobStateError is importable from here too, as before.
from tuneloop.errors import JobNotFoundError, TaskNotFoundError
from tuneloop.errors import JobStateError as JobStateError
from tuneloop.store.database import Repository, aware, epoch_seconds, new_id
from tuneloop.store.schema import CheckpointRow, JobRow, TaskEventRow, TaskRow, utcnow
from tuneloop.store.tasks import ACTIVE, FINISHED, TaskEvent, TaskStore, event_row

__all__ = ["ACTIVE", "FINISHED", "Checkpoint", "Job", "JobEvent", "JobStateError", "JobStore", "TASK_FIELDS",
           "kind_of"]

# A job's fields that are its task's (the lifecycle); the others are the job's own (OpenAI's).
TASK_FIELDS = frozenset({"status", "error", "pid", "heartbeat_at", "cancel_requested", "progress", "finished_at",
                         "device", "quantize", "worker", "attempts", "started_at", "created_at"})


def kind_of(backend: str) -> str:
    """The task kind of a job: ``fine_tune`` (a worker here trains it), ``remote_fine_tune`` (a platform does)."""
    return "fine_tune" if backend == "local" else "remote_fine_tune"


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    level: str
    message: str
    type: str
    data: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def from_task_event(cls, event: TaskEvent) -> JobEvent:
        return cls(event.id, event.task_id, event.level, event.message, event.type, event.data, event.created_at)

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": f"ftevent-{self.id}",
            "object": "fine_tuning.job.event",
            "created_at": epoch_seconds(self.created_at),
            "level": self.level,
            "message": self.message,
            "type": self.type,
            "data": self.data or {},
        }


@dataclass(frozen=True)
class Checkpoint:
    id: str
    job_id: str
    step: int
    metrics: dict[str, Any]
    fine_tuned_model_checkpoint: str
    created_at: datetime

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job.checkpoint",
            "created_at": epoch_seconds(self.created_at),
            "fine_tuning_job_id": self.job_id,
            "fine_tuned_model_checkpoint": self.fine_tuned_model_checkpoint,
            "step_number": self.step,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Job:
    id: str
    backend: str
    model: str
    method: str
    status: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    hyperparameters: dict[str, Any]
    seed: int
    fine_tuned_model: str | None
    model_path: str | None
    trained_tokens: int | None
    error: dict[str, Any] | None
    result_files: list[str]
    description: str | None
    metadata: dict[str, Any] | None
    pid: int | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    progress: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    device: str | None = None
    quantize: str | None = None
    worker: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    origin: str | None = None  # "import": copied from a vendor by `tuneloop import openai`

    @classmethod
    def from_rows(cls, row: JobRow, task: TaskRow) -> Job:
        return cls(
            id=row.id,
            backend=row.backend,
            model=row.model,
            method=row.method,
            status=task.status,
            training_file=row.training_file,
            validation_file=row.validation_file,
            suffix=row.suffix,
            hyperparameters=dict(row.hyperparameters or {}),
            seed=row.seed,
            fine_tuned_model=row.fine_tuned_model,
            model_path=row.model_path,
            trained_tokens=row.trained_tokens,
            error=task.error,
            result_files=list(row.result_files or []),
            description=row.description,
            metadata=row.metadata_,
            pid=task.pid,
            heartbeat_at=aware(task.heartbeat_at) if task.heartbeat_at else None,
            cancel_requested=bool(task.cancel_requested),
            progress=task.progress,
            created_at=aware(task.created_at),
            finished_at=aware(task.finished_at) if task.finished_at else None,
            device=task.device,
            quantize=task.quantize,
            worker=task.worker,
            attempts=int(task.attempts or 0),
            started_at=aware(task.started_at) if task.started_at else None,
            origin=row.origin,
        )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_openai(self) -> dict[str, Any]:
        """The job as OpenAI's ``fine_tuning.job`` object."""
        hyper = {k: v for k, v in self.hyperparameters.items() if k in ("n_epochs", "batch_size",
                                                                         "learning_rate_multiplier", "beta")}
        supervised = {k: v for k, v in hyper.items() if k != "beta"}
        method: dict[str, Any] = {"type": self.method, self.method: {"hyperparameters": hyper if self.method == "dpo"
                                                                     else supervised}}
        estimated = (self.progress or {}).get("estimated_finish") if self.status == "running" else None
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": epoch_seconds(self.created_at),
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": epoch_seconds(self.finished_at),
            "hyperparameters": supervised,
            "model": self.model,
            "organization_id": "org-tuneloop",
            "result_files": self.result_files,
            "seed": self.seed,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "estimated_finish": estimated,
            "integrations": [],
            "metadata": self.metadata,
            "method": method,
        }


def _joined() -> Any:
    return select(JobRow, TaskRow).join(TaskRow, TaskRow.id == JobRow.id)


class JobStore(Repository):
    """Jobs, their events and checkpoints; every write is one short transaction."""

    @property
    def tasks(self) -> TaskStore:
        return TaskStore(self.db)

    # jobs

    def create_job(self, **fields: Any) -> Job:
        """A new job and its task, in one transaction (``first_event``: the task's first event)."""
        fields.setdefault("id", new_id("ftjob"))
        fields.setdefault("result_files", [])
        if "metadata" in fields:
            fields["metadata_"] = fields.pop("metadata")
        message = fields.pop("first_event", None)
        lifecycle = {k: fields.pop(k) for k in list(fields) if k in TASK_FIELDS}
        with self.db.session(write=True) as session:
            task = self.tasks.add_task(session, kind_of(fields["backend"]), task_id=fields["id"],
                                       status=lifecycle.pop("status", "queued"), model=fields.get("model"),
                                       device=lifecycle.pop("device", None), quantize=lifecycle.pop("quantize", None),
                                       first_event=message)
            for name, value in lifecycle.items():
                setattr(task, name, value)
            row = JobRow(**fields)
            session.add(row)
            session.flush()
            return Job.from_rows(row, task)

    def _not_found(self, job_id: str) -> JobNotFoundError:
        return JobNotFoundError(f"no fine-tuning job {job_id!r} in {self.location}", job_id).with_hint(
            "`tuneloop jobs list` lists them")

    def _read(self, session: Session, job_id: str) -> Job:
        found = session.execute(_joined().where(JobRow.id == job_id)).first()
        if found is None:
            raise self._not_found(job_id)
        return Job.from_rows(*found)

    def get_job(self, job_id: str) -> Job:
        with self.db.session() as session:
            return self._read(session, job_id)

    def list_jobs(self, *, limit: int = 20, after: str | None = None, backend: str | None = None) -> list[Job]:
        statement = _joined().order_by(TaskRow.created_at.desc(), TaskRow.id.desc())
        if backend:
            statement = statement.where(JobRow.backend == backend)
        if after:
            try:
                anchor = self.get_job(after)
            except JobNotFoundError as exc:
                raise exc.named_by("after") from None
            statement = statement.where(TaskRow.created_at <= anchor.created_at, TaskRow.id != after)
        with self.db.session() as session:
            return [Job.from_rows(*r) for r in session.execute(statement.limit(limit))]

    def running_jobs(self, backend: str = "local", statuses: tuple[str, ...] = ("running",)) -> list[Job]:
        statement = _joined().where(JobRow.backend == backend, TaskRow.status.in_(statuses)).order_by(
            TaskRow.created_at, TaskRow.id)
        with self.db.session() as session:
            return [Job.from_rows(*r) for r in session.execute(statement)]

    def succeeded_models(self, backend: str = "local") -> list[Job]:
        statement = (_joined().where(JobRow.backend == backend, TaskRow.status == "succeeded",
                                     JobRow.fine_tuned_model.is_not(None)).order_by(TaskRow.created_at))
        with self.db.session() as session:
            return [Job.from_rows(*r) for r in session.execute(statement)]

    def update_job(
        self,
        job_id: str,
        *,
        event: tuple[str, str] | None = None,
        only_if_status: tuple[str, ...] | None = None,
        only_if_worker: str | None = None,
        **fields: Any,
    ) -> Job | None:
        """Change a job (its own fields and its task's) and log an event ``(level, message)``, in one transaction.

        With ``only_if_status``, nothing changes (None is returned) unless the job is in one of those states:
        the guard that keeps a finished job finished when a worker and a canceller race. ``only_if_worker``
        likewise keeps a worker from touching a job that was taken from it.
        """
        with self.db.session(write=True) as session:
            try:
                task = self.tasks.locked_row(session, job_id, only_if_status, only_if_worker)
            except TaskNotFoundError:
                raise self._not_found(job_id) from None
            if task is None:
                return None
            row = session.get(JobRow, job_id)
            if row is None:
                raise self._not_found(job_id)
            if "metadata" in fields:
                fields["metadata_"] = fields.pop("metadata")
            for name, value in fields.items():
                setattr(task if name in TASK_FIELDS else row, name, value)
            if event is not None:
                session.add(event_row(job_id, event[1], event[0]))
            session.flush()
            return Job.from_rows(row, task)

    def put_imported(self, fields: dict[str, Any], events: list[dict[str, Any]],
                     checkpoints: list[dict[str, Any]]) -> None:
        """A job copied from a vendor, with all its events and checkpoints, in one transaction (so a job that is
        here is here whole); an earlier copy of it is replaced."""
        fields = dict(fields)
        lifecycle = {k: fields.pop(k) for k in list(fields) if k in TASK_FIELDS}
        with self.db.session(write=True) as session:
            old, old_task = session.get(JobRow, fields["id"]), session.get(TaskRow, fields["id"])
            for found in (old, old_task):  # its events and checkpoints go with them (ON DELETE CASCADE)
                if found is not None:
                    session.delete(found)
            session.flush()
            task = self.tasks.add_task(session, kind_of(fields["backend"]), task_id=fields["id"],
                                       status=lifecycle.pop("status"), model=fields.get("model"))
            for name, value in lifecycle.items():
                setattr(task, name, value)
            session.add(JobRow(origin="import", **fields))
            session.flush()
            session.add_all(TaskEventRow(task_id=fields["id"], **e) for e in events)
            session.add_all(CheckpointRow(job_id=fields["id"], **c) for c in checkpoints)

    def add_event(self, job_id: str, message: str, *, level: str = "info", type_: str = "message",
                  data: dict[str, Any] | None = None, progress: dict[str, Any] | None = None) -> None:
        self.tasks.add_event(job_id, message, level=level, type_=type_, data=data, progress=progress)

    def events(self, job_id: str, *, after: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[JobEvent]:
        self.get_job(job_id)
        return [JobEvent.from_task_event(e) for e in self.tasks.events(job_id, after=after, limit=limit,
                                                                       newest_first=newest_first)]

    def add_checkpoint(self, job_id: str, *, step: int, metrics: dict[str, Any], model: str,
                       path: str | None = None) -> Checkpoint:
        with self.db.session(write=True) as session:
            row = CheckpointRow(id=new_id("ftckpt"), job_id=job_id, step=step, metrics=metrics,
                                fine_tuned_model_checkpoint=model, path=path, created_at=utcnow())
            session.add(row)
            session.flush()
            return Checkpoint(row.id, job_id, step, metrics, model, aware(row.created_at))

    def succeeded_checkpoints(self, backend: str = "local") -> dict[str, str]:
        """Checkpoint model id → adapter folder, for jobs that succeeded."""
        statement = (
            select(CheckpointRow.fine_tuned_model_checkpoint, CheckpointRow.path)
            .join(JobRow, JobRow.id == CheckpointRow.job_id)
            .join(TaskRow, TaskRow.id == JobRow.id)
            .where(JobRow.backend == backend, TaskRow.status == "succeeded", CheckpointRow.path.is_not(None))
        )
        with self.db.session() as session:
            return {model: path for model, path in session.execute(statement)}

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        self.get_job(job_id)
        statement = select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.step.desc())
        with self.db.session() as session:
            return [Checkpoint(r.id, r.job_id, r.step, r.metrics, r.fine_tuned_model_checkpoint, aware(r.created_at))
                    for r in session.scalars(statement)]
