"""The worker process: every kind of long work, and the runner that takes them (``tuneloop worker``, or
``python -m tuneloop.worker --task ID``: the one-task worker a new task spawns on a machine that runs its own).

A kind's code is imported only when a worker needs it, so a worker that trains never loads the evals' graders.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from tuneloop.config import Settings, load_settings
from tuneloop.errors import ConfigError
from tuneloop.tasks import Kind, TaskContext, Worker
from tuneloop.util.hardware import cuda_count, mps_available


# Each kind's code is imported when a task of it runs: a worker that trains never loads the graders.
def _fine_tune(context: TaskContext) -> dict[str, Any] | None:
    from tuneloop.training.task import run  # lazy: each kind's code loads when a task of it runs

    return run(context)


def _judge_run(context: TaskContext) -> dict[str, Any] | None:
    from tuneloop.curation.judge_runs import run_task  # lazy, as above

    return run_task(context)


def _eval_run(context: TaskContext) -> dict[str, Any] | None:
    from tuneloop.evals.runs import run_task  # lazy, as above

    return run_task(context)


KINDS = {
    "fine_tune": Kind("fine_tune", _fine_tune, label="Fine-tuning job", noun="job", exclusive="train"),
    "judge_run": Kind("judge_run", _judge_run, label="Judge run", noun="run"),
    "eval_run": Kind("eval_run", _eval_run, label="Eval run", noun="run"),
}


def gpus_of(gpus: str | None) -> list[str]:
    """The CUDA devices a worker trains on: all visible (default), none, or a list like ``0,1`` (which this process
    and its children then see as CUDA_VISIBLE_DEVICES)."""
    if gpus is not None and gpus.strip().lower() in ("none", ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return []
    if gpus is not None and gpus.strip().lower() != "all":
        chosen = [g.strip() for g in gpus.split(",") if g.strip()]
        if not all(g.isdigit() for g in chosen):
            raise ConfigError(f"--gpus {gpus!r}: give GPU indices like 0,1, or all, or none")
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return [str(i) for i in range(cuda_count())]


def make_worker(settings: Settings | None = None, *, task_id: str | None = None, models: list[str] | None = None,
                gpus: str | None = None, max_tasks: int | None = None, poll: float = 2.0,
                processes: int | None = None, kinds: tuple[str, ...] = tuple(KINDS),
                log: Callable[[str], None] | None = None) -> Worker:
    """A worker for ``kinds`` on this machine's hardware. A one-task worker (``task_id``) takes any device: the
    machine was checked when it accepted the task."""
    chosen = gpus_of(gpus)
    devices = ("cpu", "cuda", "mps") if task_id else (
        ("cpu",) + (("cuda",) if chosen else ()) + (("mps",) if mps_available() else ()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown kind of task {', '.join(unknown)}; a worker runs {', '.join(KINDS)}")
    return Worker({k: KINDS[k] for k in kinds}, settings, task_id=task_id, models=models, devices=devices,
                  quantize=bool(chosen) or task_id is not None, max_tasks=max_tasks, poll=poll,
                  options={"gpus": chosen, "processes": processes}, log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneloop.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--task", help="run this one task, then exit (what a new task starts)")
    parser.add_argument("--models", help="comma-separated model ids this worker takes tasks for")
    parser.add_argument("--gpus", help="GPU indices to train on (0,1), all, or none")
    parser.add_argument("--max-tasks", type=int, help="exit after this many tasks")
    parser.add_argument("--processes", type=int, help="data-parallel training processes (default: one per GPU)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    worker = make_worker(load_settings(), task_id=args.task, models=models, gpus=args.gpus, max_tasks=args.max_tasks,
                         processes=args.processes)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
