"""`tuneloop worker`: take queued fine-tuning jobs from the shared store and run them on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from tuneloop.cli._output import error_console
from tuneloop.config import load_settings


def worker(
    models: Annotated[str | None, typer.Option(
        "--models", help="Only jobs on these base models (comma-separated ids).")] = None,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="GPUs to train on: indices like 0,1 (several: data parallel with accelerate), all (default) "
                       "or none (CPU only; jobs that need CUDA are left for others).")] = None,
    max_jobs: Annotated[int | None, typer.Option("--max-jobs", min=1, help="Exit after this many jobs.")] = None,
    processes: Annotated[int | None, typer.Option(
        "--processes", min=1, help="Data-parallel training processes under accelerate launch (default: one per GPU "
                                   "of this worker; on a CPU-only machine, N processes share the cores).")] = None,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at the queue when it is empty.")] = 2.0,
) -> None:
    """Run queued fine-tuning jobs from the store, one at a time, until stopped (Ctrl-C or SIGTERM).

    Start one on every machine that should train: it needs the same store (TUNELOOP_DATABASE_URL, PostgreSQL for
    a team) and the same storage root (TUNELOOP_HOME, a shared mount: training files and adapters live there).
    Jobs are claimed atomically (never run twice) and heartbeat while they run; a worker that dies has its job
    queued again for another (up to job_max_attempts starts). Stopping a worker puts its job back in the queue.

    On a laptop you need none: each new job starts its own one-job worker. Set spawn_worker = false (or
    TUNELOOP_SPAWN_WORKER=0) where workers take the jobs.
    """
    # Lazy (cold start): the worker's modules load only for worker.
    from tuneloop.training.worker import Worker

    settings = load_settings()
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
    runner = Worker(settings, models=chosen, gpus=gpus, max_jobs=max_jobs, poll=poll, processes=processes,
                    log=lambda message: error_console.print(message, highlight=False, markup=False))
    where = ", ".join(f"cuda:{g}" for g in runner.gpus) or "CPU"
    error_console.print(f"tuneloop worker {runner.name}: store {runner.jobs.location}, training on {where}"
                        + (f", models {', '.join(chosen)}" if chosen else "") + "; Ctrl-C stops it",
                        highlight=False, markup=False)
    code = runner.run()
    error_console.print(f"tuneloop worker {runner.name}: stopped", highlight=False, markup=False)
    raise typer.Exit(code)
