"""The remote backend: fine-tuning on an OpenAI-compatible platform (OpenAI while it lasts, Azure OpenAI,
another ``tuneloop serve``) through the official SDK, tracked in the same jobs table as local jobs.

The file is validated here first (tiktoken counts, the same checks), then uploaded with
``files.create(purpose="fine-tune")`` and the job created with ``fine_tuning.jobs.create(method=…)``.
``retrieve``, ``list_events`` and ``cancel`` go to the platform; every answer refreshes the stored row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneloop.errors import InputError
from tuneloop.providers.openai import OpenAIProvider
from tuneloop.store.jobs import Job, JobEvent, JobStore


def _when(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


class RemoteTrainer:
    def __init__(self, provider: OpenAIProvider, jobs: JobStore) -> None:
        self.provider = provider
        self.client = provider.client  # retries and timeouts: tuneloop.util.retry's policy
        self.jobs = jobs

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated into tuneloop's provider errors, key scrubbed
            translated = self.provider.translate_error(exc)
            if translated is exc:
                raise
            raise translated from None

    def create(
        self,
        path: Path,
        *,
        filename: str,
        model: str,
        method: str,
        hyperparameters: dict[str, Any],
        suffix: str | None,
        seed: int | None,
        description: str | None,
        metadata: dict[str, str] | None,
        validation: tuple[Path, str] | None = None,
    ) -> Job:
        uploaded = self._call(self.client.files.create, file=(filename, path.read_bytes()), purpose="fine-tune")
        given = {k: v for k, v in hyperparameters.items() if v not in (None, "auto")}
        if method == "dpo":
            method_param: dict[str, Any] = {"type": "dpo", "dpo": {"hyperparameters": given}}
        elif "beta" in given:
            raise InputError("hyperparameter beta applies to DPO only", param="hyperparameters.beta")
        else:
            method_param = {"type": "supervised", "supervised": {"hyperparameters": given}}
        options: dict[str, Any] = {"model": model, "training_file": uploaded.id, "method": method_param}
        if validation is not None:
            valid = self._call(self.client.files.create, file=(validation[1], validation[0].read_bytes()),
                               purpose="fine-tune")
            options["validation_file"] = valid.id
        if suffix is not None:
            options["suffix"] = suffix
        if seed is not None:
            options["seed"] = seed
        if metadata:
            options["metadata"] = metadata
        remote = self._call(self.client.fine_tuning.jobs.create, **options)
        self.jobs.create_job(
            id=remote.id, backend="openai", model=remote.model, method=method, status=remote.status,
            training_file=remote.training_file, validation_file=remote.validation_file, suffix=suffix,
            hyperparameters=_hyper(remote), seed=remote.seed, description=description, metadata=metadata,
            created_at=_when(remote.created_at) or datetime.now(UTC),
            first_event=f"Created on {self.provider.where} from {filename} (uploaded as {uploaded.id})",
        )
        return self._store(remote)

    def _store(self, remote: Any) -> Job:
        error = remote.error.model_dump() if remote.error and remote.error.message else None
        job = self.jobs.update_job(
            remote.id, status=remote.status, fine_tuned_model=remote.fine_tuned_model,
            trained_tokens=remote.trained_tokens, error=error, result_files=list(remote.result_files or []),
            finished_at=_when(remote.finished_at), hyperparameters=_hyper(remote),
            progress={"estimated_finish": remote.estimated_finish} if remote.estimated_finish else None,
        )
        assert job is not None
        return job

    def refresh(self, job: Job) -> Job:
        return self._store(self._call(self.client.fine_tuning.jobs.retrieve, job.id))

    def cancel(self, job: Job) -> Job:
        return self._store(self._call(self.client.fine_tuning.jobs.cancel, job.id))

    def events(self, job: Job, *, limit: int | None = None) -> list[JobEvent]:
        page = self._call(self.client.fine_tuning.jobs.list_events, job.id, limit=limit or 100)
        events = [
            JobEvent(id=i, job_id=job.id, level=e.level, message=e.message, type=e.type or "message",
                     data=e.data if isinstance(e.data, dict) else None,
                     created_at=_when(e.created_at) or job.created_at)
            for i, e in enumerate(page.data)
        ]
        events.sort(key=lambda e: e.created_at)  # OpenAI lists newest first
        return events


def _hyper(remote: Any) -> dict[str, Any]:
    method = getattr(remote, "method", None)
    values: dict[str, Any] = {}
    if method is not None and method.type in ("supervised", "dpo"):
        section = getattr(method, method.type, None)
        if section is not None and section.hyperparameters is not None:
            values = section.hyperparameters.model_dump(exclude_none=True)
    if not values and remote.hyperparameters is not None:
        values = remote.hyperparameters.model_dump(exclude_none=True)
    return values
