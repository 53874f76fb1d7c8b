"""`tuneloop worker`: take queued tasks (fine-tuning jobs, judge runs, eval runs) from the shared store and run them
on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from tuneloop.cli._output import error_console
from tuneloop.config import load_settings


def worker(
    models: Annotated[str | None, typer.Option(
        "--models", help="Only tasks on these models (comma-separated ids), besides those that name none.")] = None,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="GPUs to train on: indices like 0,1 (several: data parallel with accelerate), all (default) "
                       "or none (CPU only; jobs that need CUDA are left for others).")] = None,
    kinds: Annotated[str | None, typer.Option(
        "--kinds", help="Only these kinds of task (comma-separated): fine_tune, judge_run, eval_run (default: "
                        "all).")] = None,
    max_tasks: Annotated[int | None, typer.Option("--max-tasks", "--max-jobs", min=1,
                                                  help="Exit after this many tasks.")] = None,
    processes: Annotated[int | None, typer.Option(
        "--processes", min=1, help="Data-parallel training processes under accelerate launch (default: one per GPU "
                                   "of this worker; on a CPU-only machine, N processes share the cores).")] = None,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at the queue when it is empty.")] = 2.0,
) -> None:
    """Run queued tasks from the store, one at a time, until stopped (Ctrl-C or SIGTERM).

    A task is long work: a fine-tuning job, a judge run, an eval run. Start a worker on every machine that should
    run them: it needs the same store (TUNELOOP_DATABASE_URL, PostgreSQL for a team) and the same storage root
    (TUNELOOP_HOME, a shared mount: training files and adapters live there). Tasks are claimed atomically (never
    run twice) and heartbeat while they run; a worker that dies has its task queued again for another (up to
    job_max_attempts starts). Stopping a worker puts its task back in the queue.

    On a laptop you need none: each new task starts its own one-task worker. Set spawn_worker = false (or
    TUNELOOP_SPAWN_WORKER=0) where workers take the tasks.
    """
    # Lazy (cold start): the worker's modules load only for worker.
    from tuneloop.worker import KINDS, make_worker

    settings = load_settings()
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
    names = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else tuple(KINDS)
    runner = make_worker(settings, models=chosen, gpus=gpus, max_tasks=max_tasks, poll=poll, processes=processes,
                         kinds=names, log=lambda message: error_console.print(message, highlight=False, markup=False))
    gpus_used = runner.options.get("gpus") or []
    where = ", ".join(f"cuda:{g}" for g in gpus_used) or "CPU"
    error_console.print(f"tuneloop worker {runner.name}: store {runner.store.location}, {', '.join(names)} on {where}"
                        + (f", models {', '.join(chosen)}" if chosen else "") + "; Ctrl-C stops it",
                        highlight=False, markup=False)
    code = runner.run()
    error_console.print(f"tuneloop worker {runner.name}: stopped", highlight=False, markup=False)
    raise typer.Exit(code)
