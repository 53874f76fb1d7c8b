"""Fine-tuning jobs, their events and checkpoints, in the same database as the dialogue log (the files they train
on are ``store.files``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

# The errors live in tuneloop.errors; JobStateError is importable from here too, as before.
from tuneloop.errors import JobNotFoundError
from tuneloop.errors import JobStateError as JobStateError
from tuneloop.store.database import Repository, aware, epoch_seconds, new_id
from tuneloop.store.schema import CheckpointRow, JobEventRow, JobRow, utcnow

ACTIVE = ("validating_files", "queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


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
    def from_row(cls, row: JobEventRow) -> JobEvent:
        return cls(row.id, row.job_id, row.level, row.message, row.type, row.data, aware(row.created_at))

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
    def from_row(cls, row: JobRow) -> Job:
        return cls(
            id=row.id,
            backend=row.backend,
            model=row.model,
            method=row.method,
            status=row.status,
            training_file=row.training_file,
            validation_file=row.validation_file,
            suffix=row.suffix,
            hyperparameters=dict(row.hyperparameters or {}),
            seed=row.seed,
            fine_tuned_model=row.fine_tuned_model,
            model_path=row.model_path,
            trained_tokens=row.trained_tokens,
            error=row.error,
            result_files=list(row.result_files or []),
            description=row.description,
            metadata=row.metadata_,
            pid=row.pid,
            heartbeat_at=aware(row.heartbeat_at) if row.heartbeat_at else None,
            cancel_requested=bool(row.cancel_requested),
            progress=row.progress,
            created_at=aware(row.created_at),
            finished_at=aware(row.finished_at) if row.finished_at else None,
            device=row.device,
            quantize=row.quantize,
            worker=row.worker,
            attempts=int(row.attempts or 0),
            started_at=aware(row.started_at) if row.started_at else None,
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


class JobStore(Repository):
    """Jobs, their events and checkpoints; every write is one short transaction."""

    # jobs

    def create_job(self, **fields: Any) -> Job:
        fields.setdefault("id", new_id("ftjob"))
        fields.setdefault("created_at", utcnow())
        fields.setdefault("result_files", [])
        fields.setdefault("cancel_requested", False)
        if "metadata" in fields:
            fields["metadata_"] = fields.pop("metadata")
        message = fields.pop("first_event", None)
        with self.db.session(write=True) as session:
            row = JobRow(**fields)
            session.add(row)
            session.flush()
            if message:
                session.add(JobEventRow(job_id=row.id, level="info", message=message, type="message",
                                        created_at=utcnow()))
            return Job.from_row(row)

    def _not_found(self, job_id: str) -> JobNotFoundError:
        return JobNotFoundError(f"no fine-tuning job {job_id!r} in {self.location}; run `tuneloop jobs list`", job_id)

    def get_job(self, job_id: str) -> Job:
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise self._not_found(job_id)
            return Job.from_row(row)

    def list_jobs(self, *, limit: int = 20, after: str | None = None, backend: str | None = None) -> list[Job]:
        statement = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc())
        if backend:
            statement = statement.where(JobRow.backend == backend)
        if after:
            try:
                anchor = self.get_job(after)
            except JobNotFoundError as exc:
                raise exc.named_by("after") from None
            statement = statement.where(JobRow.created_at <= anchor.created_at, JobRow.id != after)
        with self.db.session() as session:
            return [Job.from_row(r) for r in session.scalars(statement.limit(limit))]

    def running_jobs(self, backend: str = "local", statuses: tuple[str, ...] = ("running",)) -> list[Job]:
        statement = select(JobRow).where(JobRow.backend == backend, JobRow.status.in_(statuses)).order_by(
            JobRow.created_at, JobRow.id)
        with self.db.session() as session:
            return [Job.from_row(r) for r in session.scalars(statement)]

    def succeeded_models(self, backend: str = "local") -> list[Job]:
        statement = (
            select(JobRow)
            .where(JobRow.backend == backend, JobRow.status == "succeeded", JobRow.fine_tuned_model.is_not(None))
            .order_by(JobRow.created_at)
        )
        with self.db.session() as session:
            return [Job.from_row(r) for r in session.scalars(statement)]

    def claim(self, worker: str, *, pid: int, job_id: str | None = None, models: list[str] | None = None,
              devices: tuple[str, ...] = ("cpu",), quantize: bool = False) -> Job | None:
        """Take the oldest queued local job this worker can run, atomically: it becomes ``running`` for ``worker``
        and no other worker can take it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock, taken
        up front by an immediate transaction, does the same)."""
        statement = (select(JobRow).where(JobRow.status == "queued", JobRow.backend == "local")
                     .where(or_(JobRow.device.is_(None), JobRow.device == "auto", JobRow.device.in_(devices)))
                     .order_by(JobRow.created_at, JobRow.id).limit(1).with_for_update(skip_locked=True))
        if job_id is not None:
            statement = statement.where(JobRow.id == job_id)
        if models:
            statement = statement.where(JobRow.model.in_(models))
        if not quantize:
            statement = statement.where(JobRow.quantize.is_(None))
        now = utcnow()
        with self.db.session(write=True) as session:
            row = session.scalars(statement).first()
            if row is None:
                return None
            row.status, row.worker, row.pid, row.heartbeat_at = "running", worker, pid, now
            row.attempts = int(row.attempts or 0) + 1
            row.started_at = now
            session.add(JobEventRow(job_id=row.id, level="info", type="message", created_at=now,
                                    message=f"Fine-tuning job started by worker {worker} (attempt {row.attempts})"))
            session.flush()
            return Job.from_row(row)

    def requeue(self, job_id: str, *, worker: str | None, reason: str, max_attempts: int, charge: bool = True
                ) -> Job | None:
        """Put a running job back in the queue (its worker was lost, or stopped), or fail it once it has been
        started ``max_attempts`` times. ``worker`` guards against a job another worker has taken meanwhile;
        ``charge=False`` (a worker that stopped cleanly) does not count the attempt."""
        with self.db.session(write=True) as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise self._not_found(job_id)
            if row.status != "running" or (worker is not None and row.worker != worker):
                return None
            attempts = int(row.attempts or 0) - (0 if charge else 1)
            now = utcnow()
            if attempts >= max_attempts:
                message = f"{reason}; the job was started {attempts} times, the most allowed (job_max_attempts)"
                row.status, row.finished_at = "failed", now
                row.error = {"code": "worker_lost", "message": message, "param": None}
                session.add(JobEventRow(job_id=job_id, level="error", type="message", message=message,
                                        created_at=now))
            else:
                row.status, row.worker, row.pid, row.attempts = "queued", None, None, max(0, attempts)
                session.add(JobEventRow(job_id=job_id, level="warn", type="message", created_at=now,
                                        message=f"{reason}; the job is queued again ({attempts} of {max_attempts} "
                                                "attempts used)"))
            session.flush()
            return Job.from_row(row)

    def update_job(
        self,
        job_id: str,
        *,
        event: tuple[str, str] | None = None,
        only_if_status: tuple[str, ...] | None = None,
        only_if_worker: str | None = None,
        **fields: Any,
    ) -> Job | None:
        """Change a job (and log an event ``(level, message)``) in one transaction.

        With ``only_if_status``, nothing changes (None is returned) unless the job is in one of those states:
        the guard that keeps a finished job finished when a worker and a canceller race. ``only_if_worker``
        likewise keeps a worker from touching a job that was taken from it.
        """
        with self.db.session(write=True) as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise self._not_found(job_id)
            if only_if_status is not None and row.status not in only_if_status:
                return None
            if only_if_worker is not None and row.worker != only_if_worker:
                return None
            if "metadata" in fields:
                fields["metadata_"] = fields.pop("metadata")
            for name, value in fields.items():
                setattr(row, name, value)
            if event is not None:
                session.add(JobEventRow(job_id=job_id, level=event[0], message=event[1], type="message",
                                        created_at=utcnow()))
            session.flush()
            return Job.from_row(row)

    def put_imported(self, fields: dict[str, Any], events: list[dict[str, Any]],
                     checkpoints: list[dict[str, Any]]) -> None:
        """A job copied from a vendor, with all its events and checkpoints, in one transaction (so a job that is
        here is here whole); an earlier copy of it is replaced."""
        with self.db.session(write=True) as session:
            old = session.get(JobRow, fields["id"])
            if old is not None:
                session.delete(old)  # its events and checkpoints go with it (ON DELETE CASCADE)
                session.flush()
            session.add(JobRow(origin="import", **fields))
            session.flush()
            session.add_all(JobEventRow(job_id=fields["id"], **e) for e in events)
            session.add_all(CheckpointRow(job_id=fields["id"], **c) for c in checkpoints)

    def add_event(self, job_id: str, message: str, *, level: str = "info", type_: str = "message",
                  data: dict[str, Any] | None = None, progress: dict[str, Any] | None = None) -> None:
        with self.db.session(write=True) as session:
            session.add(JobEventRow(job_id=job_id, level=level, message=message, type=type_, data=data,
                                    created_at=utcnow()))
            if progress is not None:
                row = session.get(JobRow, job_id)
                if row is not None:
                    row.progress = progress
                    row.heartbeat_at = utcnow()

    def events(self, job_id: str, *, after: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[JobEvent]:
        self.get_job(job_id)
        statement = select(JobEventRow).where(JobEventRow.job_id == job_id)
        if after is not None:
            statement = statement.where(JobEventRow.id < after if newest_first else JobEventRow.id > after)
        statement = statement.order_by(JobEventRow.id.desc() if newest_first else JobEventRow.id)
        if limit is not None:
            statement = statement.limit(limit)
        with self.db.session() as session:
            return [JobEvent.from_row(r) for r in session.scalars(statement)]

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
            .where(JobRow.backend == backend, JobRow.status == "succeeded", CheckpointRow.path.is_not(None))
        )
        with self.db.session() as session:
            return {model: path for model, path in session.execute(statement)}

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        self.get_job(job_id)
        statement = select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.step.desc())
        with self.db.session() as session:
            return [Checkpoint(r.id, r.job_id, r.step, r.metrics, r.fine_tuned_model_checkpoint, aware(r.created_at))
                    for r in session.scalars(statement)]
