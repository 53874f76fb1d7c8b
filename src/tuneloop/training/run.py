"""The training process of one claimed job: ``python -m tuneloop.training.run JOB_ID WORKER``.

A worker (:mod:`tuneloop.training.worker`) starts it (under ``accelerate launch`` when it trains on several
GPUs: then every rank runs this and rank 0 reports). It reads the job and its file from the store, trains, writes
per-step metrics as job events, the adapter (and the last epochs' checkpoints) into the job's temporary folder,
the result files, and ``outcome.json`` (trained tokens, speed, memory) for the worker, which registers the model.
It never changes the job's status: the worker does. SIGTERM stops it at the next step (exit code 3); it also
stops when its worker is gone (its parent process changed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from tuneloop.config import load_settings
from tuneloop.datasets import token_counter, validate_examples
from tuneloop.engine.inspection import check_fits, count_parameters
from tuneloop.errors import TuneloopError
from tuneloop.evals import read_validation
from tuneloop.export.recipes import safe_name
from tuneloop.models.registry import ModelRegistry, fine_tuned_id
from tuneloop.store import DialogueStore
from tuneloop.store.files import FileStore
from tuneloop.store.jobs import JobStore
from tuneloop.training import local
from tuneloop.training.worker import STOPPED
from tuneloop.util.hardware import choose
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
    job_id, worker = args
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which decides
    parent = os.getppid()
    _end_with_parent()
    rank = int(os.environ.get("RANK", "0"))
    settings = load_settings()
    store = DialogueStore(settings.resolved_database_url, busy_timeout=max(30.0, settings.db_busy_timeout))
    jobs = JobStore(store)
    files = FileStore(store)
    job = jobs.get_job(job_id)
    temp = temp_model_dir(settings, job.id)

    def should_stop() -> bool:
        return stop.is_set() or os.getppid() != parent

    try:
        plan = choose(job.device)
        checkpoint = ModelRegistry(settings, store).checkpoint(job.model)
        check_fits(job.model, count_parameters(checkpoint), plan, quantize=job.quantize)
        examples = local.read_examples(Path(files.get(job.training_file).path))
        validation, eval_items = [], []
        if job.validation_file:
            stored = files.get(job.validation_file)
            validation, eval_items = read_validation(Path(stored.path), stored.filename)
        if rank == 0:
            jobs.add_event(job.id, f"Training on {plan.describe()}"
                           + (f", {os.environ['WORLD_SIZE']} processes (DDP)" if "WORLD_SIZE" in os.environ else "")
                           + (", 4-bit QLoRA" if job.quantize else ""), data={"device": plan.device,
                                                                          "precision": plan.precision})
        final = model_dir(settings, job.id)
        model_id = fine_tuned_id(job.model, job.suffix, job.id)

        def progress(p: local.Progress) -> None:
            eta = p.eta
            data = {"step": p.step, "total_steps": p.total_steps, "train_loss": p.loss,
                    "learning_rate": p.learning_rate, "epoch": round(p.epoch, 3)}
            state = {**data, "elapsed": round(p.elapsed, 1), "eta_seconds": round(eta, 1) if eta else None,
                     "estimated_finish": int(time.time() + eta) if eta else None}
            jobs.add_event(job.id, f"Step {p.step}/{p.total_steps}: training loss={p.loss:.4f}", type_="metrics",
                           data=data, progress=state)

        def checkpointed(record: local.EpochResult) -> None:
            # Recorded where the folder will be once the job succeeds; served only after that.
            assert record.folder is not None
            jobs.add_checkpoint(job.id, step=record.step, metrics=epoch_metrics(record),
                                model=f"{model_id}:ckpt-step-{record.step}",
                                path=str(final / record.folder.relative_to(temp / "adapter")))

        def epoch_done(record: local.EpochResult) -> None:
            if record.valid_loss is None and record.valid_score is None:
                return
            jobs.add_event(job.id, f"Epoch {record.epoch}/{job.hyperparameters['n_epochs']}: " + describe(record),
                           type_="metrics", data=epoch_metrics(record))

        counted: dict[str, int] = {}

        def count_tokens() -> None:
            counter = token_counter(job.model, checkpoint=checkpoint)
            counted["tokens"] = validate_examples(examples, counter).tokens["total"]
            import matplotlib.pyplot  # noqa: F401 - for write_results

        # While the first steps run (torch computes without the GIL), count the trained tokens and load the plotting
        # library: neither then waits at the end.
        side = threading.Thread(target=count_tokens, daemon=True)
        result = local.train(checkpoint=checkpoint, examples=examples, method=job.method,
                             hyperparameters=job.hyperparameters, seed=job.seed, output_dir=temp / "adapter",
                             work_dir=temp, on_progress=progress, should_stop=should_stop,
                             on_checkpoint=checkpointed, plan=plan, quantize=job.quantize,
                             on_start=side.start if rank == 0 else None, validation=validation,
                             eval_items=eval_items, on_epoch=epoch_done,
                             replay_cache=replay_cache(settings.resolved_models_dir, job.model, checkpoint))
        if rank != 0:
            return 0
        side.join()
        if "tokens" not in counted:  # it failed off to the side: again here, where the error reaches the job
            count_tokens()
        files = local.write_results(result, job_dir(settings, job.id), f"{job.id} · {job.method} · {job.model}")
        tokens = counted["tokens"] * int(job.hyperparameters["n_epochs"])
        outcome = {"trained_tokens": tokens, "seconds": round(result.seconds, 1),
                   "tokens_per_second": round(tokens / result.seconds, 1) if result.seconds else None,
                   "peak_memory_mb": round(result.peak_memory_bytes / 2**20), "device": plan.describe(),
                   "lora_targets": result.targets, "result_files": [str(f) for f in files],
                   "replayed": result.replayed,
                   "best_epoch": epoch_metrics(result.best) if result.best is not None else None}
        (temp / "outcome.json").write_text(json.dumps(outcome))
        return 0
    except local.Cancelled:
        return STOPPED
    except BaseException as exc:  # noqa: BLE001 - the worker reads the reason and fails the job with it
        traceback.print_exc()
        if should_stop():
            return STOPPED
        temp.mkdir(parents=True, exist_ok=True)
        reason = str(exc) if isinstance(exc, TuneloopError) else f"{type(exc).__name__}: {exc}"
        (temp / "error.txt").write_text(reason[:2000])
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
