"""Fine-tuning jobs: create (validate first), follow, cancel; local jobs run in their own worker process.

>>> from tuneloop.training import FineTuning
>>> ft = FineTuning()                                     # or FineTuning(runtime)
>>> file = ft.add_file("train.jsonl")
>>> job = ft.create(file.id, suffix="facts")             # validates, then starts the worker; returns at once
>>> job = ft.wait(job.id)                                 # or ft.get(job.id) now and then
>>> job.status, job.fine_tuned_model                      # "succeeded", "ft:smollm2-135m-instruct:facts:ftjob-…"

A local job is a task of kind ``fine_tune`` (:mod:`tuneloop.tasks`): queued in the store and run by a worker, a
one-task worker spawned here (the default), or ``tuneloop worker`` processes when ``spawn_worker`` is false.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneloop.datasets import Dataset, token_counter, validate_examples, validate_file
from tuneloop.datasets.validate import ValidationReport
from tuneloop.engine.inspection import check_fits, count_parameters
from tuneloop.engine.weights import BASE_MODEL_ID
from tuneloop.errors import DatasetInvalidError, FileNotFoundInStoreError, InputError, JobStateError, StoreError
from tuneloop.evals import read_validation
from tuneloop.providers import DEFAULT_OPENAI_MODEL
from tuneloop.runtime import Runtime
from tuneloop.store.files import StoredFile
from tuneloop.store.jobs import Job, JobEvent
from tuneloop.tasks import Tasks
from tuneloop.training import hyper
from tuneloop.training.remote import RemoteTrainer
from tuneloop.util.fileio import atomic_write_bytes, safe_filename
from tuneloop.util.hardware import DEVICES, choose
from tuneloop.util.home import files_dir, job_dir, model_dir, temp_model_dir, worker_log

QUANTIZE = ("4bit",)


class FineTuning:
    """The one job system: used by the CLI, ``OpenAIModel.train`` and the server."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        self.runtime = runtime or Runtime()
        self.settings = self.runtime.settings
        self.jobs = self.runtime.db.jobs
        self.files = self.runtime.db.files
        self.tasks = Tasks(self.runtime.db, self.settings)

    @property
    def default_backend(self) -> str:
        """``openai`` when the OpenAI-compatible provider is the default (OPENAI_BASE_URL/KEY set), else ``local``."""
        return "openai" if self.settings.default_provider == "openai" else "local"

    # files

    def add_file(self, source: str | Path | bytes, *, filename: str | None = None,
                 purpose: str = "fine-tune") -> StoredFile:
        """Copy a training file into ``$TUNELOOP_HOME/files/`` and record it; returns its ``file-…`` id."""
        if isinstance(source, bytes):
            data, name = source, safe_filename(filename)
        else:
            path = Path(source)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
            name = safe_filename(filename or path.name)
        file_id = f"file-{secrets.token_hex(12)}"
        target = files_dir(self.settings) / f"{file_id}.jsonl"
        atomic_write_bytes(target, data)
        try:
            return self.files.add(filename=name, purpose=purpose, size=len(data), path=str(target), file_id=file_id)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def delete_file(self, file_id: str) -> StoredFile:
        """Forget a stored file and remove it from disk; refused while a queued or running job needs it."""
        stored = self.files.get(file_id)
        users = [job.id for job in self.jobs.list_jobs(limit=1000, backend="local")
                 if job.active and stored.id in (job.training_file, job.validation_file)]
        if users:
            raise JobStateError(f"file {file_id} is the training file of active job {', '.join(users)}; "
                                "cancel the job or wait for it to finish before deleting the file")
        removed = self.files.delete(file_id)
        Path(removed.path).unlink(missing_ok=True)
        return removed

    def add_dataset(self, dataset: Dataset, *, method: str = "auto",
                    filename: str = "train.jsonl") -> tuple[StoredFile, str, int]:
        """Store a dataset in one format as a training file: (file, format, examples)."""
        chosen, count, data = dataset.to_jsonl(method)
        return self.add_file(data, filename=filename), chosen, count

    # jobs

    def validate(self, path: Path, model: str, epochs: int | None = None) -> ValidationReport:
        local = self.runtime.local.serves(model) and self.settings.provider != "openai"
        checkpoint = self.runtime.local_checkpoint(model) if local else None
        counter = token_counter(model, models_dir=self.settings.resolved_models_dir, progress=self.runtime.progress,
                                checkpoint=checkpoint)
        return validate_file(path, counter, epochs=epochs)

    def create(
        self,
        training_file: str,
        *,
        model: str | None = None,
        method: str = "auto",
        hyperparameters: dict[str, Any] | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        backend: str = "local",
        device: str | None = None,
        quantize: str | None = None,
        validation_file: str | None = None,
    ) -> Job:
        """Validate the file, record the job and start it. Errors in the data refuse the job.

        A ``validation_file`` (supervised jobs) gives a validation loss at each epoch from its chat examples and,
        from lines with an ``expected`` answer (as in :mod:`tuneloop.evals`), the share of its questions
        answered right; the best epoch is the model registered, the others stay as checkpoints.

        ``backend="local"`` queues the job for a worker (here: one is spawned; or ``tuneloop worker`` processes)
        that fine-tunes ``model`` (any registered base model) on ``device`` (auto, cuda, mps, cpu), as QLoRA with
        ``quantize="4bit"``; ``"openai"`` uploads the file to the configured OpenAI-compatible platform and
        creates the job there (tracked in the same table).
        """
        if backend == "openai":
            return self._create_remote(training_file, model=model, method=method, hyperparameters=hyperparameters,
                                       suffix=suffix, seed=seed, description=description, metadata=metadata,
                                       validation_file=validation_file)
        if backend != "local":
            raise InputError(f"backend {backend!r}: use local or openai", param="backend")
        model = model or BASE_MODEL_ID
        if model.startswith("ft:") or not self.runtime.registry.has(model):
            raise InputError(
                f"the local trainer fine-tunes base models registered here ({', '.join(self.runtime.registry.ids())}), "
                f"not {model!r}; register the model's folder here, or train a remote model on its platform",
                param="model").with_hint("`tuneloop models add ID PATH` registers one; --backend openai trains "
                                         "remotely")
        if suffix is not None and (len(suffix) > 64 or ":" in suffix or not suffix.strip()):
            raise InputError(f"suffix {suffix!r}: use up to 64 characters, without ':'", param="suffix")
        device = (device or self.settings.device or "auto").lower()
        quantize = quantize or None
        self._check_hardware(model, device, quantize)
        stored, report, method = self._checked(training_file, model, method)
        validation = self._checked_validation(validation_file, model, method) if validation_file else None
        values = hyper.resolve(method, report.examples, hyperparameters)
        job = self.jobs.create_job(
            backend="local", model=model, method=method, status="validating_files", training_file=stored.id,
            validation_file=validation, suffix=suffix, hyperparameters=values,
            seed=seed if seed is not None else secrets.randbelow(2**31), description=description,
            metadata=metadata, first_event=f"Validating training file: {stored.id}",
            device=None if device == "auto" else device, quantize=quantize,
        )
        job = self.jobs.update_job(job.id, status="queued", event=("info", (
            f"Files validated ({report.examples} examples, {report.tokens['total']} tokens), moving job to queued state"
        )))
        assert job is not None
        if self.settings.spawn_worker:
            self.tasks.spawn(self.runtime.db.tasks.get(job.id))
        return self.jobs.get_job(job.id)

    def create_like(self, job_id: str, *, model: str | None = None, hyperparameters: dict[str, Any] | None = None,
                    suffix: str | None = None, seed: int | None = None, device: str | None = None) -> Job:
        """A local job with the training data, method, hyperparameters, seed and suffix of ``job_id`` (a job
        imported from OpenAI, or any other): on ``model`` (default: that job's base model when it is registered
        here, else the bundled one). ``hyperparameters`` given here win over the old job's."""
        old = self.jobs.get_job(job_id)
        if old.method not in ("supervised", "dpo"):
            raise InputError(f"job {job_id} used method {old.method!r}; the local trainer runs supervised and dpo")
        try:
            self.files.get(old.training_file)
        except StoreError:
            raise InputError(f"job {job_id}'s training file {old.training_file} is not in this store; import it with "
                             "the job").with_hint("`tuneloop import openai` copies jobs with their files") from None
        validation = old.validation_file
        if validation:
            try:
                self.files.get(validation)
            except StoreError:
                validation = None
        if model is None:
            model = old.model if self.runtime.registry.has(old.model) else BASE_MODEL_ID
        kept = {k: v for k, v in old.hyperparameters.items() if k in hyper.LIMITS and v not in (None, "auto")}
        if old.method != "dpo":
            kept.pop("beta", None)
        return self.create(old.training_file, model=model, method=old.method,
                           hyperparameters={**kept, **(hyperparameters or {})}, suffix=suffix or old.suffix,
                           seed=seed if seed is not None else old.seed, description=f"like {old.id} ({old.model})",
                           metadata={"like": old.id}, device=device, validation_file=validation)

    def _check_hardware(self, model: str, device: str, quantize: str | None) -> None:
        """Refuse now what cannot run: an unknown device or quantization, QLoRA without CUDA, weights too large.

        The hardware checks apply when this machine trains (a spawned worker); with ``spawn_worker`` false the
        worker that claims the job checks its own hardware."""

        if device not in DEVICES:
            raise InputError(f"device {device!r}: use one of {', '.join(DEVICES)}", param="device")
        if quantize is not None and quantize not in QUANTIZE:
            raise InputError(f"quantize {quantize!r}: use 4bit (QLoRA, CUDA only), or leave it out", param="quantize")
        if quantize is not None and device not in ("auto", "cuda"):
            raise InputError(f"quantize {quantize} needs CUDA (bitsandbytes), not device {device}; choose one or the "
                             "other", param="quantize")
        if not self.settings.spawn_worker:
            return

        plan = choose(device)
        if quantize is not None:
            if plan.device != "cuda":
                raise InputError(f"quantize {quantize} (QLoRA) needs a CUDA GPU and this machine has none; train "
                                 "without it, or on a machine with a GPU", param="quantize").with_hint(
                    "a `tuneloop worker` on a machine with a GPU takes the job")
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise InputError("quantize 4bit needs bitsandbytes: pip install 'tuneloop[gpu]'",
                                 param="quantize") from None
        checkpoint = self.runtime.local_checkpoint(model)
        check_fits(model, count_parameters(checkpoint), plan, quantize=quantize)

    def _checked_validation(self, validation_file: str, model: str, method: str) -> str:
        """Refuse a validation file the trainer could not use; returns its id."""

        if method != "supervised":
            raise InputError(f"validation_file applies to supervised jobs, not {method}; leave it out",
                             param="validation_file")
        stored = self._file(validation_file, "validation_file")
        name = f"validation file {stored.filename} ({stored.id})"
        try:
            examples, items = read_validation(Path(stored.path), name)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{name}: cannot be read as JSONL ({exc}); give chat examples, one JSON object per "
                             "line", param="validation_file") from None
        if not examples and not items:
            raise InputError(f"{name} has no chat examples with an assistant answer and no questions with an "
                             "\"expected\" answer; give one or the other (one JSON object per line)",
                             param="validation_file")
        if examples:
            counter = token_counter(model, models_dir=self.settings.resolved_models_dir,
                                    progress=self.runtime.progress, checkpoint=self.runtime.local_checkpoint(model))
            report = validate_examples(examples, counter, source=name)
            report.errors.pop("too_few_examples", None)  # a few validation examples are enough
            report.first_errors = [i for i in report.first_errors if i.error != "too_few_examples"]
            if not report.ok:
                raise InputError(report.summary(name), param="validation_file")
        return stored.id

    def _file(self, file_id: str, param: str) -> StoredFile:
        """The stored file a new job names in ``param`` (training_file, validation_file)."""
        try:
            return self.files.get(file_id)
        except FileNotFoundInStoreError as exc:
            raise exc.named_by(param) from None

    def _checked(self, training_file: str, model: str, method: str) -> tuple[StoredFile, ValidationReport, str]:
        stored = self._file(training_file, "training_file")
        report = self.validate(Path(stored.path), model)
        if not report.ok:
            raise DatasetInvalidError(f"training file {stored.filename} ({stored.id}): {report.summary()}", report,
                                      source=stored.filename, file_id=stored.id)
        method = report.format if method == "auto" else method
        if method not in ("supervised", "dpo"):
            raise InputError(f"method {method!r}: use supervised, dpo or auto", param="method")
        if method != report.format:
            raise InputError(f"method {method} needs a {method} file, but {stored.filename} holds {report.format} "
                             f"examples; build the file in the {method} format", param="method").with_hint(
                f"`tuneloop data build --method {method}` builds one")
        return stored, report, method

    def remote(self) -> RemoteTrainer:
        return RemoteTrainer(self.runtime.openai, self.jobs)

    def _create_remote(self, training_file: str, *, model: str | None, method: str,
                       hyperparameters: dict[str, Any] | None, suffix: str | None, seed: int | None,
                       description: str | None, metadata: dict[str, str] | None,
                       validation_file: str | None = None) -> Job:
        configured = self.settings.model
        # A configured model is the remote base unless it names a local model and the provider is not forced to
        # openai (TUNELOOP_PROVIDER=openai with a tuneloop server: its local model is the remote base).
        if configured and (self.settings.provider == "openai" or not self.runtime.local.serves(configured)):
            model = model or configured
        model = model or DEFAULT_OPENAI_MODEL
        trainer = self.remote()  # fails clearly when no remote platform is configured
        stored, _report, method = self._checked(training_file, model, method)
        validation = None
        if validation_file:
            valid = self._file(validation_file, "validation_file")
            validation = (Path(valid.path), valid.filename)
        return trainer.create(Path(stored.path), filename=stored.filename, model=model, method=method,
                              hyperparameters=dict(hyperparameters or {}), suffix=suffix, seed=seed,
                              description=description, metadata=metadata, validation=validation)

    def refresh(self, job: Job) -> Job:
        """A local job whose worker is gone goes back to the queue (or fails once it was started too often); an
        unfinished remote job is read again from its platform."""
        if not job.active:
            return job
        if job.backend == "openai":
            return self.remote().refresh(job)
        if job.backend != "local":
            return job
        self.tasks.refresh(self.runtime.db.tasks.get(job.id))
        current = self.jobs.get_job(job.id)
        if current.status == "failed":
            self._clean_partial(current)
        return current

    def _clean_partial(self, job: Job) -> None:
        shutil.rmtree(temp_model_dir(self.settings, job.id), ignore_errors=True)
        final = model_dir(self.settings, job.id)
        if final.exists() and self.jobs.get_job(job.id).status != "succeeded":
            shutil.rmtree(final, ignore_errors=True)

    def get(self, job_id: str) -> Job:
        return self.refresh(self.jobs.get_job(job_id))

    def recover(self) -> list[Job]:
        """Every unfinished local job, each once its worker has been checked: what a (re)started server does, so
        that none stays running without a worker and every queued one has a worker to take it."""
        return [self.refresh(j) for j in self.jobs.running_jobs("local", ("validating_files", "queued", "running"))]

    def list(self, *, limit: int = 20, after: str | None = None, backend: str | None = None) -> list[Job]:
        return [self.refresh(j) for j in self.jobs.list_jobs(limit=limit, after=after, backend=backend)]

    def events(self, job_id: str, *, after: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[JobEvent]:
        job = self.get(job_id)
        # An imported job's events were copied here, to outlive the vendor.
        if job.backend == "openai" and job.origin != "import":
            found = self.remote().events(job, limit=limit)
            return found[::-1] if newest_first else found
        return self.jobs.events(job_id, after=after, limit=limit, newest_first=newest_first)

    def cancel(self, job_id: str, *, timeout: float = 20.0) -> Job:
        """Stop a job within seconds and mark it cancelled; a finished job cannot be cancelled."""
        job = self.get(job_id)
        if not job.active:
            raise JobStateError(f"job {job_id} has already {job.status}; only queued or running jobs can be cancelled")
        if job.backend == "openai":
            return self.remote().cancel(job)
        self.tasks.cancel(job_id, timeout=timeout)
        current = self.jobs.get_job(job_id)
        self._clean_partial(current)
        return current

    def wait(self, job_id: str, *, on_update: Callable[[Job], None] | None = None, poll: float = 1.0,
             timeout: float | None = None) -> Job:
        """Block until the job finishes (``on_update`` is called with each new state)."""
        started = time.monotonic()
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if not job.active:
                return job
            if timeout is not None and time.monotonic() - started > timeout:
                return job
            time.sleep(poll)

    def registered_models(self) -> dict[str, Path]:
        """Fine-tuned local models (and their checkpoints) ready to use: model id → adapter folder."""
        return self.runtime.fine_tuned_models()

    def log_path(self, job_id: str) -> Path:
        return worker_log(self.settings, job_id)

    def results_dir(self, job_id: str) -> Path:
        return job_dir(self.settings, job_id)
