"""The ``fine_tune`` kind of task: one local fine-tuning job, run by a worker (:mod:`tuneloop.tasks`).

The worker runs the training in a child process (``python -m tuneloop.training.run JOB_ID WORKER``; under
``accelerate launch`` on several GPUs), stops it when the job is cancelled or the worker stops, and registers what
it made: the result files, the adapter moved to its final folder, the model id, in one transaction guarded so that a
job cancelled at the last moment registers nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneloop.errors import TaskFailed
from tuneloop.models.registry import fine_tuned_id
from tuneloop.store.jobs import Job
from tuneloop.store.schema import utcnow
from tuneloop.tasks import TaskContext, TaskStopped, child_environment, task_log
from tuneloop.util.fileio import open_private
from tuneloop.util.home import model_dir, temp_model_dir

STOPPED = 3  # the exit code of a training process stopped by SIGTERM (tuneloop.training.run)


def run(context: TaskContext) -> dict[str, Any] | None:
    """Train the job, then register its model; raises TaskStopped or TaskFailed when it does not get there."""
    job = context.store.jobs.get_job(context.task.id)
    temp = temp_model_dir(context.settings, job.id)
    shutil.rmtree(temp, ignore_errors=True)
    try:
        code = _train(context, job)
        if context.stopped:
            raise TaskStopped()
        if code == STOPPED:
            raise TaskFailed("the training process was stopped (SIGTERM) before it finished", "training_stopped",
                             event="Training failed: the training process was stopped (SIGTERM) before it finished")
        _register(context, job, code, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return None


def _command(context: TaskContext, job: Job) -> list[str]:
    """The training process: alone, or one per GPU (or ``--processes`` on the CPU) under ``accelerate launch``,
    which runs them data parallel (DDP)."""
    train = ["-m", "tuneloop.training.run", job.id, context.worker]
    gpus = context.options.get("gpus") or []
    on_gpus = bool(gpus) and job.device in (None, "auto", "cuda")
    processes = context.options.get("processes") or (len(gpus) if on_gpus else 1)
    if on_gpus:
        processes = min(processes, len(gpus))
    if processes <= 1:
        return [sys.executable, *train]
    # accelerate's multi-process launcher (torch.distributed.run underneath) also runs CPU processes with gloo;
    # its --cpu flag would start only one.
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *train]


def _train(context: TaskContext, job: Job) -> int:
    """Run the training process to its end, stopping it (SIGTERM, then SIGKILL) once the task must stop."""
    with open_private(task_log(context.settings, context.task)) as out:
        child = subprocess.Popen(_command(context, job), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=child_environment(context.settings),
                                 start_new_session=True, umask=0o077)
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return child.wait(timeout=0.5)
        if context.stopped:
            _stop(child)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _register(context: TaskContext, job: Job, code: int, temp: Path) -> None:
    """The model the training made, registered with its files; the job succeeds in the same transaction."""
    outcome_file = temp / "outcome.json"
    if code != 0 or not outcome_file.is_file():
        error = temp / "error.txt"
        reason = error.read_text() if error.is_file() else f"the training process ended with code {code}"
        raise TaskFailed(reason[:2000], "training_failed", event=f"Training failed: {reason[:2000]}")
    outcome = json.loads(outcome_file.read_text())
    store = context.store
    result_ids = [store.files.add(filename=Path(f).name, purpose="fine-tune-results", size=Path(f).stat().st_size,
                                  path=f).id for f in outcome["result_files"]]
    final = model_dir(context.settings, job.id)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp / "adapter", final)
    model_id = fine_tuned_id(job.model, job.suffix, job.id)
    done = store.jobs.update_job(
        job.id, status="succeeded", fine_tuned_model=model_id, model_path=str(final),
        trained_tokens=outcome["trained_tokens"], result_files=result_ids, finished_at=utcnow(),
        only_if_status=("running",), only_if_worker=context.worker,
        event=("info", f"New fine-tuned model created: {model_id}"),
    )
    if done is None:  # cancelled at the last moment: do not register the model
        shutil.rmtree(final, ignore_errors=True)
        raise TaskStopped()
    _announce(context, job, outcome)


def _announce(context: TaskContext, job: Job, outcome: dict[str, Any]) -> None:
    jobs = context.store.jobs
    best = outcome.get("best_epoch")
    if best is not None:
        score = f", validation score {best['valid_score']:.0%}" if best.get("valid_score") is not None else ""
        loss = f", validation loss {best['valid_loss']:.4f}" if best.get("valid_loss") is not None else ""
        jobs.add_event(job.id, f"Registered the best epoch, {best['epoch']} (step {best['step']}){score}{loss}; "
                       "the other epochs are checkpoints", data={"best_epoch": best})
    numbers = {k: outcome.get(k) for k in ("seconds", "tokens_per_second", "peak_memory_mb", "device",
                                           "lora_targets", "replayed")}
    jobs.add_event(job.id, f"The job has successfully completed in {outcome['seconds']:.0f} s on "
                   f"{outcome['device']}: {outcome['tokens_per_second']} trained tokens/s, peak memory "
                   f"{outcome['peak_memory_mb']} MiB", data=numbers)

