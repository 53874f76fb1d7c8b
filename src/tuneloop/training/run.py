"""The training process of one claimed job: ``python -m tuneloop.training.run JOB_ID WORKER``.

A worker running the job's task (:mod:`tuneloop.training.task`) starts it (under ``accelerate launch`` when it trains on
several GPUs: then every rank runs this and rank 0 reports). It reads the job and its file from the store, trains,
writes per-step metrics as job events, the adapter (and the last epochs' checkpoints) into the job's temporary folder,
the result files, and ``outcome.json`` (trained tokens, speed, memory) for the worker, which registers the model. It
never changes the job's status: the worker does. SIGTERM stops it at the next step (exit code 3); it also stops when its
worker is gone (its parent process changed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import Settings, load_settings
from tuneloop.datasets import token_counter, validate_examples
from tuneloop.engine.inspection import check_fits, count_parameters
from tuneloop.errors import TuneloopError
from tuneloop.evals import EvalItem, read_validation
from tuneloop.export.recipes import safe_name
from tuneloop.models.registry import ModelRegistry, fine_tuned_id
from tuneloop.store import DialogueStore
from tuneloop.store.files import FileStore
from tuneloop.store.jobs import Job, JobStore
from tuneloop.training import local
from tuneloop.training.config import TrainCallbacks, TrainConfig
from tuneloop.training.task import STOPPED
from tuneloop.util.hardware import DevicePlan, choose
from tuneloop.util.home import job_dir, model_dir, temp_model_dir


def _end_with_parent() -> None:
    """On Linux, ask the kernel for SIGTERM when the worker dies (SIGKILL included); elsewhere the parent check
    at each step does it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tuneloop.training.run JOB_ID WORKER", file=sys.stderr)
        return 2
    claimed = _claim(args[0], _stop_signal())
    try:
        return _train(claimed)
    except local.Cancelled:
        return STOPPED
    except BaseException as exc:  # noqa: BLE001 - the worker reads the reason and fails the job with it
        return _failed(claimed, exc)


def _stop_signal() -> Callable[[], bool]:
    """Whether to stop: SIGTERM came (from the worker), or the worker is gone (this process's parent changed)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which decides
    parent = os.getppid()
    _end_with_parent()
    return lambda: stop.is_set() or os.getppid() != parent


@dataclass
class Claimed:
    """The claimed job, the store it is in, and this process's place in the run."""

    settings: Settings
    store: DialogueStore
    jobs: JobStore
    files: FileStore
    job: Job
    temp: Path  # the job's temporary folder: the adapter, its checkpoints, outcome.json or error.txt
    rank: int  # 0 reports; the other ranks of a several-GPU run only train
    should_stop: Callable[[], bool]


def _claim(job_id: str, should_stop: Callable[[], bool]) -> Claimed:
    rank = int(os.environ.get("RANK", "0"))
    settings = load_settings()
    store = DialogueStore(settings.resolved_database_url, busy_timeout=max(30.0, settings.db_busy_timeout))
    jobs = JobStore(store)
    job = jobs.get_job(job_id)
    return Claimed(settings, store, jobs, FileStore(store), job, temp_model_dir(settings, job.id), rank, should_stop)


@dataclass
class Inputs:
    """What the job trains on, and where."""

    plan: DevicePlan
    checkpoint: Path
    examples: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    eval_items: list[EvalItem]


def _read_inputs(claimed: Claimed) -> Inputs:
    """The device plan, the base model (refused when it cannot fit), the training and validation files."""
    job = claimed.job
    plan = choose(job.device)
    checkpoint = ModelRegistry(claimed.settings, claimed.store).checkpoint(job.model)
    check_fits(job.model, count_parameters(checkpoint), plan, quantize=job.quantize)
    examples = local.read_examples(Path(claimed.files.get(job.training_file).path))
    validation, eval_items = [], []
    if job.validation_file:
        stored = claimed.files.get(job.validation_file)
        validation, eval_items = read_validation(Path(stored.path), stored.filename)
    return Inputs(plan, checkpoint, examples, validation, eval_items)


def _train(claimed: Claimed) -> int:
    """Train the claimed job; rank 0 then writes the result files and ``outcome.json``."""
    job = claimed.job
    inputs = _read_inputs(claimed)
    if claimed.rank == 0:
        _announce(claimed, inputs.plan)
    reporter = Reporter(claimed)
    counter = TokenCount(job.model, inputs.checkpoint, inputs.examples)
    callbacks = TrainCallbacks(on_progress=reporter.progress, should_stop=claimed.should_stop,
                               on_checkpoint=reporter.checkpointed, on_epoch=reporter.epoch_done,
                               on_start=counter.start if claimed.rank == 0 else None)
    config = TrainConfig.from_job(
        job.hyperparameters, checkpoint=inputs.checkpoint, examples=inputs.examples, method=job.method,
        seed=job.seed, output_dir=claimed.temp / "adapter", work_dir=claimed.temp, plan=inputs.plan,
        quantize=job.quantize, validation=inputs.validation, eval_items=inputs.eval_items, callbacks=callbacks,
        replay_cache=replay_cache(claimed.settings.resolved_models_dir, job.model, inputs.checkpoint))
    result = local.train(config)
    if claimed.rank != 0:
        return 0
    _write_outcome(claimed, inputs.plan, result, counter.total())
    return 0


def _announce(claimed: Claimed, plan: DevicePlan) -> None:
    processes = f", {os.environ['WORLD_SIZE']} processes (DDP)" if "WORLD_SIZE" in os.environ else ""
    claimed.jobs.add_event(claimed.job.id, f"Training on {plan.describe()}" + processes
                           + (", 4-bit QLoRA" if claimed.job.quantize else ""),
                           data={"device": plan.device, "precision": plan.precision})


class Reporter:
    """Writes what the run measures into the job: each step's metrics, each checkpoint, each validated epoch."""

    def __init__(self, claimed: Claimed) -> None:
        self.jobs = claimed.jobs
        self.job = claimed.job
        self.temp = claimed.temp
        self.final = model_dir(claimed.settings, claimed.job.id)
        self.model_id = fine_tuned_id(claimed.job.model, claimed.job.suffix, claimed.job.id)

    def progress(self, p: local.Progress) -> None:
        eta = p.eta
        data = {"step": p.step, "total_steps": p.total_steps, "train_loss": p.loss,
                "learning_rate": p.learning_rate, "epoch": round(p.epoch, 3)}
        state = {**data, "elapsed": round(p.elapsed, 1), "eta_seconds": round(eta, 1) if eta else None,
                 "estimated_finish": int(time.time() + eta) if eta else None}
        self.jobs.add_event(self.job.id, f"Step {p.step}/{p.total_steps}: training loss={p.loss:.4f}",
                            type_="metrics", data=data, progress=state)

    def checkpointed(self, record: local.EpochResult) -> None:
        # Recorded where the folder will be once the job succeeds; served only after that.
        assert record.folder is not None
        self.jobs.add_checkpoint(self.job.id, step=record.step, metrics=epoch_metrics(record),
                                 model=f"{self.model_id}:ckpt-step-{record.step}",
                                 path=str(self.final / record.folder.relative_to(self.temp / "adapter")))

    def epoch_done(self, record: local.EpochResult) -> None:
        if record.valid_loss is None and record.valid_score is None:
            return
        self.jobs.add_event(self.job.id, f"Epoch {record.epoch}/{self.job.hyperparameters['n_epochs']}: "
                            + describe(record), type_="metrics", data=epoch_metrics(record))


class TokenCount:
    """The trained tokens of one epoch, counted off to the side while the first steps run (torch computes without
    the GIL), with the plotting library loaded there too: neither then waits at the end."""

    def __init__(self, model: str, checkpoint: Path, examples: list[dict[str, Any]]) -> None:
        self.model, self.checkpoint, self.examples = model, checkpoint, examples
        self.tokens: int | None = None
        self.thread = threading.Thread(target=self.count, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def count(self) -> None:
        counter = token_counter(self.model, checkpoint=self.checkpoint)
        self.tokens = validate_examples(self.examples, counter).tokens["total"]
        import matplotlib.pyplot  # noqa: F401 - for write_results

    def total(self) -> int:
        if self.thread.ident is not None:
            self.thread.join()
        if self.tokens is None:  # it failed off to the side: again here, where the error reaches the job
            self.count()
        assert self.tokens is not None
        return self.tokens


def _write_outcome(claimed: Claimed, plan: DevicePlan, result: local.TrainResult, tokens_per_epoch: int) -> None:
    """The result files (per-step metrics, loss curve) and ``outcome.json``, which the worker reads."""
    job = claimed.job
    written = local.write_results(result, job_dir(claimed.settings, job.id), f"{job.id} · {job.method} · {job.model}")
    tokens = tokens_per_epoch * int(job.hyperparameters["n_epochs"])
    outcome = {"trained_tokens": tokens, "seconds": round(result.seconds, 1),
               "tokens_per_second": round(tokens / result.seconds, 1) if result.seconds else None,
               "peak_memory_mb": round(result.peak_memory_bytes / 2**20), "device": plan.describe(),
               "lora_targets": result.targets, "result_files": [str(f) for f in written],
               "replayed": result.replayed,
               "best_epoch": epoch_metrics(result.best) if result.best is not None else None}
    (claimed.temp / "outcome.json").write_text(json.dumps(outcome))


def _failed(claimed: Claimed, exc: BaseException) -> int:
    """Exit code 1 with the reason in ``error.txt`` for the worker; 3 (stopped) when the run was asked to stop."""
    traceback.print_exc()
    if claimed.should_stop():
        return STOPPED
    claimed.temp.mkdir(parents=True, exist_ok=True)
    reason = str(exc) if isinstance(exc, TuneloopError) else f"{type(exc).__name__}: {exc}"
    (claimed.temp / "error.txt").write_text(reason[:2000])
    return 1


def epoch_metrics(record: local.EpochResult) -> dict[str, float | int]:
    """What an epoch measured (OpenAI's metric names where it has them); what was not measured is left out."""
    values = {"step": record.step, "epoch": record.epoch, "train_loss": record.train_loss,
              "valid_loss": record.valid_loss, "valid_score": record.valid_score}
    return {k: v for k, v in values.items() if v is not None}


def describe(record: local.EpochResult) -> str:
    parts = []
    if record.valid_loss is not None:
        parts.append(f"validation loss={record.valid_loss:.4f}")
    if record.valid_score is not None:
        parts.append(f"validation score={record.valid_score:.0%}")
    return ", ".join(parts)


def replay_cache(models_dir: Path, model: str, checkpoint: Path) -> Path:
    """Where the base model's replayed answers are kept: one file per base model and version of its weights."""
    import hashlib

    stamp = hashlib.sha256()
    for file in sorted(checkpoint.glob("*.safetensors")) + [checkpoint / "config.json"]:
        with contextlib.suppress(OSError):
            info = file.stat()
            stamp.update(f"{file.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    return models_dir / "replay" / f"{safe_name(model)}-{stamp.hexdigest()[:12]}.json"


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written and closed; skip tearing torch down (up to a second)
