"""`tuneloop import openai`: carry an OpenAI account's history into the local store before the platform closes
(no new fine-tuning jobs from 2027-01-06; gpt-4o-mini and its fine-tunes retired on 2027-01-14).

What comes over: every fine-tuning job with its settings (method, hyperparameters, seed, suffix, metadata), its
events and checkpoints; its training, validation and result files, bytes included; and every stored chat completion
(``store: true``) with its messages and metadata, as a thread of the dialogue store (so it can be searched, rated
and trained on like any other exchange).

Paged with the SDK's own cursor paging; every call under tuneloop's retry policy. Idempotent and resumable: each
file, each job (with its events and checkpoints) and each completion is written in one transaction when it is
complete, and what is already here is skipped, so a run that stopped half-way (a fault, Ctrl-C) is simply run
again, and a later run imports only what is new (a job still running at the vendor is imported again until it
ends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneloop.conversation.stored_completions import StoredCompletions
from tuneloop.curation import labels
from tuneloop.errors import (
    ConfigError,
    ImportInterruptedError,
    JobNotFoundError,
    ProviderAuthError,
    StoreError,
)
from tuneloop.runtime import Runtime
from tuneloop.store.conversations import NewMessage
from tuneloop.util.fileio import atomic_write_bytes, safe_filename
from tuneloop.util.home import files_dir

FINISHED = ("succeeded", "failed", "cancelled")
PAGE = 100


@dataclass
class Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"new": self.new, "updated": self.updated, "unchanged": self.unchanged}


@dataclass
class ImportSummary:
    jobs: Counts = field(default_factory=Counts)
    files: Counts = field(default_factory=Counts)
    completions: Counts = field(default_factory=Counts)
    events: int = 0
    checkpoints: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def touched(self) -> bool:
        """Whether anything was looked at yet."""
        return any(c.new or c.updated or c.unchanged for c in (self.jobs, self.files, self.completions))

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs.to_dict(), "files": self.files.to_dict(),
                "completions": self.completions.to_dict(), "events": self.events, "checkpoints": self.checkpoints,
                "warnings": self.warnings}


# (what, how many so far): "jobs", "files", "completions"
Progress = Callable[[str, int], None]


def _when(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


class OpenAIImport:
    """One import run. ``runtime.settings`` must hold OPENAI_API_KEY (and OPENAI_BASE_URL for another platform)."""

    def __init__(self, runtime: Runtime, *, progress: Progress | None = None, page_size: int = PAGE) -> None:
        settings = runtime.settings
        if settings.openai_api_key is None:
            raise ConfigError("set OPENAI_API_KEY (and OPENAI_BASE_URL for a platform other than OpenAI) to import "
                              "from it")
        self.runtime = runtime
        self.provider = runtime.openai
        self.client = self.provider.client
        self.jobs = runtime.db.jobs
        self.files = runtime.db.files
        self.completions = StoredCompletions(runtime.db.dialogue, labels.labeller_for(runtime))
        self.objects = runtime.db.api_objects
        self.progress = progress or (lambda _what, _n: None)
        self.summary = ImportSummary()
        self.page = page_size

    def run(self, *, jobs: bool = True, completions: bool = True) -> ImportSummary:
        import openai

        try:
            if jobs:
                for n, job in enumerate(self.client.fine_tuning.jobs.list(limit=self.page), 1):
                    self._job(job)
                    self.progress("jobs", n)
            if completions:
                for n, completion in enumerate(self.client.chat.completions.list(limit=self.page, order="asc"), 1):
                    self._completion(completion)
                    self.progress("completions", n)
        except (openai.OpenAIError, ValueError) as exc:
            cause = self.provider.translate_error(exc)
            if isinstance(cause, ProviderAuthError) or not self.summary.touched:
                raise cause from None  # nothing to go on from: the error alone says what to do
            raise ImportInterruptedError(f"{cause}; what was imported before is kept: import again to go on",
                                         self.summary).with_hint("run `tuneloop import openai` again") from None
        return self.summary

    # jobs

    def _job(self, job: Any) -> None:
        try:
            here = self.jobs.get_job(job.id)
        except JobNotFoundError:
            here = None
        if here is not None and here.status == job.status and job.status in FINISHED:
            self.summary.jobs.unchanged += 1
            return
        for file_id in [job.training_file, job.validation_file, *(job.result_files or [])]:
            if file_id:
                self._file(file_id)
        events = list(self.client.fine_tuning.jobs.list_events(job.id, limit=self.page))
        checkpoints = list(self.client.fine_tuning.jobs.checkpoints.list(job.id, limit=self.page))
        method = job.method.type if job.method is not None else "supervised"
        detail = getattr(job.method, method, None) if job.method is not None else None
        given = detail.hyperparameters if detail is not None and detail.hyperparameters is not None else (
            job.hyperparameters)
        hyper = given.model_dump(exclude_none=True) if given is not None else {}
        fields = {
            "id": job.id, "backend": "openai", "model": job.model, "method": method, "status": job.status,
            "training_file": job.training_file, "validation_file": job.validation_file,
            # (user_provided_suffix: OpenAI sends it; neither its document nor the SDK's type has it)
            "suffix": getattr(job, "user_provided_suffix", None), "hyperparameters": hyper, "seed": job.seed,
            "fine_tuned_model": job.fine_tuned_model, "trained_tokens": job.trained_tokens,
            "error": job.error.model_dump() if job.error and job.error.message else None,
            "result_files": list(job.result_files or []), "metadata_": dict(job.metadata) if job.metadata else None,
            "created_at": _when(job.created_at), "finished_at": _when(job.finished_at),
            "description": "imported from OpenAI",
        }
        rows = [{"level": e.level, "message": e.message, "type": e.type or "message",
                 "data": e.data if isinstance(e.data, dict) else None, "created_at": _when(e.created_at)}
                for e in reversed(events)]  # listed newest first
        saved = [{"id": c.id, "step": c.step_number, "metrics": c.metrics.model_dump(exclude_none=True),
                  "fine_tuned_model_checkpoint": c.fine_tuned_model_checkpoint, "path": None,
                  "created_at": _when(c.created_at)} for c in checkpoints]
        self.jobs.put_imported(fields, rows, saved)
        self.summary.events += len(rows)
        self.summary.checkpoints += len(saved)
        if here is None:
            self.summary.jobs.new += 1
        else:
            self.summary.jobs.updated += 1

    def _file(self, file_id: str) -> None:
        import openai

        try:
            self.files.get(file_id)
            self.summary.files.unchanged += 1
            return
        except StoreError:
            pass
        try:
            meta = self.client.files.retrieve(file_id)
            data = self.client.files.content(file_id).content
        except openai.NotFoundError:
            self.summary.warnings.append(f"file {file_id} is no longer at the vendor (deleted there); not imported")
            return
        name = safe_filename(meta.filename)
        target = files_dir(self.runtime.settings) / f"{file_id}{Path(name).suffix or '.jsonl'}"
        atomic_write_bytes(target, data)
        try:
            self.files.add(filename=name, purpose=meta.purpose, size=len(data), path=str(target), file_id=file_id)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self.summary.files.new += 1
        self.progress("files", self.summary.files.new)

    # stored chat completions

    def _completion(self, completion: Any) -> None:
        if self.objects.exists(completion.id):
            self.summary.completions.unchanged += 1
            return
        messages = [{"role": m.role, "content": m.content or ""}
                    for m in self.client.chat.completions.messages.list(completion.id, limit=self.page, order="asc")]
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content or "") if choice else ""
        usage = completion.usage
        reply = NewMessage("assistant", text, model=completion.model,
                           tokens_in=usage.prompt_tokens if usage else None,
                           tokens_out=usage.completion_tokens if usage else None,
                           finish_reason=choice.finish_reason if choice else None)
        body = completion.model_dump(mode="json", exclude_unset=True)
        self.completions.keep(body, messages, reply, created_at=_when(completion.created))
        self.summary.completions.new += 1
