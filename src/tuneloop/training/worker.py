"""Workers: processes that claim queued local jobs from the shared store and run them.

``tuneloop worker`` runs on any machine that shares the store (PostgreSQL for a team) and the storage root
(``$TUNELOOP_HOME``: files and adapters, local or a shared mount). It claims one queued job at a time,
atomically (no job runs twice), trains it in a child process (``tuneloop.training.run``; under ``accelerate
launch`` on several GPUs), heartbeats while it runs, registers the model, and takes the next. SIGTERM or Ctrl-C
stops it cleanly: the job in hand goes back to the queue, uncharged.

On a laptop nobody starts one: ``FineTuning.create`` spawns a one-job worker for each new job
(``python -m tuneloop.training.worker --job ID``), which waits for the machine's training lock so that one
local job trains at a time.

A worker that dies (SIGKILL, out of memory, machine lost) is noticed by anyone who looks at its job (other
workers, ``tuneloop jobs``, the server): on its own machine at once (its process is gone), elsewhere once its
heartbeat is older than ``worker_timeout``. The job is queued again, up to ``job_max_attempts`` starts, then
failed with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from tuneloop.config import Settings, load_settings
from tuneloop.errors import TuneloopError
from tuneloop.models.registry import fine_tuned_id
from tuneloop.store import DialogueStore
from tuneloop.store.files import FileStore
from tuneloop.store.jobs import ACTIVE, Job, JobStore
from tuneloop.store.schema import utcnow
from tuneloop.util.fileio import open_private
from tuneloop.util.hardware import cuda_count, mps_available
from tuneloop.util.home import lock_path, model_dir, temp_model_dir, worker_log

STOPPED = 3  # the exit code of a training process stopped by SIGTERM (tuneloop.training.run)


def worker_name(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def on_this_machine(worker: str | None) -> bool:
    return bool(worker) and worker.rsplit(":", 1)[0] == socket.gethostname()


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of a worker's children: this store and home, and no API keys."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TUNELOOP_SERVER_API_KEY")}
    env.update(TUNELOOP_HOME=str(settings.home), TUNELOOP_DATABASE_URL=settings.resolved_database_url,
               TUNELOOP_MODELS_DIR=str(settings.resolved_models_dir), PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    return env


# One-job workers this process started (polled, so they are reaped, not left as zombies).
spawned: dict[int, subprocess.Popen] = {}


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    child = spawned.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def check_worker(jobs: JobStore, settings: Settings, job: Job) -> Job:
    """``job`` as it stands once its worker has been checked: a running job whose worker is gone (its process,
    on this machine; its heartbeat, older than ``worker_timeout``, anywhere) is queued again or failed."""
    if job.status != "running":
        return job
    reason = None
    if on_this_machine(job.worker) and not pid_alive(job.pid):
        reason = f"worker {job.worker} ended without finishing the job"
    elif job.heartbeat_at is not None and utcnow() - job.heartbeat_at > timedelta(seconds=settings.worker_timeout):
        reason = f"worker {job.worker} sent no heartbeat for {settings.worker_timeout:g} s"
    if reason is None:
        return job
    log = worker_log(settings, job.id)
    found = jobs.requeue(job.id, worker=job.worker, reason=f"{reason} (its output is in {log})",
                         max_attempts=settings.job_max_attempts)
    return found or jobs.get_job(job.id)


def reap(jobs: JobStore, settings: Settings) -> list[Job]:
    """Check the workers of every running local job (what each worker does before it claims the next)."""
    return [check_worker(jobs, settings, j) for j in jobs.running_jobs()]


class Worker:
    def __init__(self, settings: Settings | None = None, *, job_id: str | None = None, models: list[str] | None = None,
                 gpus: str | None = None, max_jobs: int | None = None, poll: float = 2.0,
                 processes: int | None = None, log: object = None) -> None:
        self.settings = settings or load_settings()
        self.jobs = JobStore(DialogueStore(self.settings.resolved_database_url,
                                           busy_timeout=max(30.0, self.settings.db_busy_timeout)))
        self.files = FileStore(self.jobs)
        self.name = worker_name()
        self.job_id = job_id
        self.models = models
        self.max_jobs = 1 if job_id else max_jobs
        self.poll = poll
        self.stopping = threading.Event()
        self.cancel_now = threading.Event()
        self.child: subprocess.Popen | None = None
        self.log = log or (lambda message: print(message, flush=True))
        self.gpus = self._gpus(gpus)
        self.processes = processes

    def _gpus(self, gpus: str | None) -> list[str]:
        """The CUDA devices this worker trains on: all visible (default), none, or a list like ``0,1``."""
        if gpus is not None and gpus.strip().lower() in ("none", ""):
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
            return []
        if gpus is not None and gpus.strip().lower() != "all":
            chosen = [g.strip() for g in gpus.split(",") if g.strip()]
            if not all(g.isdigit() for g in chosen):
                raise TuneloopError(f"--gpus {gpus!r}: give GPU indices like 0,1, or all, or none")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)

        count = cuda_count()
        return [str(i) for i in range(count)]

    def devices(self) -> tuple[str, ...]:
        if self.job_id is not None:  # the job this machine just accepted: its hardware was checked then
            return ("cpu", "cuda", "mps")

        return ("cpu",) + (("cuda",) if self.gpus else ()) + (("mps",) if mps_available() else ())

    def stop(self, *_: object) -> None:
        self.stopping.set()

    # the loop

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGUSR1, lambda *_: self.cancel_now.set())  # `jobs cancel` on this machine
        done = 0
        lock = self._wait_for_turn() if self.job_id else None
        if self.job_id and lock is None:
            return 0
        while not self.stopping.is_set():
            reap(self.jobs, self.settings)
            job = self.jobs.claim(self.name, pid=os.getpid(), job_id=self.job_id, models=self.models,
                                  devices=self.devices(), quantize=bool(self.gpus) or self.job_id is not None)
            if job is None:
                if self.job_id:
                    return 0  # taken by another worker, or cancelled
                self.stopping.wait(self.poll)
                continue
            self.log(f"{self.name}: running {job.id} ({job.model}, attempt {job.attempts})")
            self.run_job(job)
            ended = self.jobs.get_job(job.id)
            self.log(f"{self.name}: {job.id} {ended.status}"
                     + (f": {ended.fine_tuned_model}" if ended.fine_tuned_model else "")
                     + (f": {(ended.error or {}).get('message')}" if ended.status == "failed" else ""))
            done += 1
            if self.max_jobs is not None and done >= self.max_jobs:
                break
        return 0

    def _wait_for_turn(self) -> object | None:
        """A one-job worker holds the machine-wide training lock (one local job at a time); stays queued meanwhile."""
        assert self.job_id is not None
        path = lock_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        announced = False
        while not self.stopping.is_set():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not self._older_job_waiting():
                    return handle
                fcntl.flock(handle, fcntl.LOCK_UN)  # first come, first trained: let the older job's worker in
                raise BlockingIOError
            except BlockingIOError:
                job = self.jobs.get_job(self.job_id)
                if job.status != "queued":
                    return None
                if not announced:
                    self.jobs.add_event(self.job_id, "Waiting for another local job to finish")
                    announced = True
                self.stopping.wait(1.0)
        return None

    def _older_job_waiting(self) -> bool:
        """Whether a job queued before this one has its own one-job worker waiting on this machine (the lock is
        not fair: without this, two jobs created together could train in either order)."""
        mine = self.jobs.get_job(self.job_id)
        return any(j.created_at < mine.created_at or (j.created_at == mine.created_at and j.id < mine.id)
                   for j in self.jobs.running_jobs(statuses=("queued",))
                   if j.id != mine.id and on_this_machine(j.worker) and pid_alive(j.pid))

    # one job

    def run_job(self, job: Job) -> None:
        temp = temp_model_dir(self.settings, job.id)
        shutil.rmtree(temp, ignore_errors=True)
        try:
            code = self._train(job)
            self._finish(job, code, temp)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the job record
            self._fail(job, f"{type(exc).__name__}: {exc}", "training_failed")
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _command(self, job: Job) -> list[str]:
        """The training process: alone, or one per GPU (or ``--processes`` on the CPU) under ``accelerate launch``,
        which runs them data parallel (DDP)."""
        run = ["-m", "tuneloop.training.run", job.id, self.name]
        on_gpus = bool(self.gpus) and job.device in (None, "auto", "cuda")
        processes = self.processes or (len(self.gpus) if on_gpus else 1)
        if on_gpus:
            processes = min(processes, len(self.gpus))
        if processes <= 1:
            return [sys.executable, *run]
        # accelerate's multi-process launcher (torch.distributed.run underneath) also runs CPU processes with gloo;
        # its --cpu flag would start only one.
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *run]

    def _train(self, job: Job) -> int:
        log = worker_log(self.settings, job.id)
        with open_private(log) as out:  # umask 077: adapters, checkpoints and logs are their owner's only
            self.child = subprocess.Popen(self._command(job), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, env=child_environment(self.settings),
                                          start_new_session=True, umask=0o077)
        beat = self.settings.worker_heartbeat
        last = time.monotonic()
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return self.child.wait(timeout=min(0.5, beat))
            if self.stopping.is_set():
                self._stop_child()
                continue
            if self.cancel_now.is_set() or time.monotonic() - last >= beat:
                last = time.monotonic()
                self.cancel_now.clear()
                try:
                    current = self.jobs.update_job(job.id, heartbeat_at=utcnow(), only_if_status=("running",),
                                                   only_if_worker=self.name)
                    reap(self.jobs, self.settings)  # busy workers watch each other too
                except TuneloopError as exc:  # a busy store now must not stop the training
                    self.log(f"{self.name}: heartbeat failed: {exc}")
                    continue
                if current is None or current.cancel_requested:  # cancelled, or taken from this worker
                    self._stop_child()

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()

    def _finish(self, job: Job, code: int, temp: Path) -> None:
        current = self.jobs.get_job(job.id)
        if current.status != "running" or current.worker != self.name:
            return  # cancelled or taken meanwhile: whoever did so recorded it
        if current.cancel_requested:
            self.jobs.update_job(job.id, status="cancelled", finished_at=utcnow(), only_if_status=ACTIVE,
                                 event=("info", "The job was cancelled"))
            return
        if self.stopping.is_set() and code != 0:
            self.jobs.requeue(job.id, worker=self.name, charge=False, max_attempts=self.settings.job_max_attempts,
                              reason=f"worker {self.name} was stopped")
            return
        if code == STOPPED:
            self._fail(job, "the training process was stopped (SIGTERM) before it finished", "training_stopped")
            return
        outcome_file = temp / "outcome.json"
        if code != 0 or not outcome_file.is_file():
            error = temp / "error.txt"
            reason = error.read_text() if error.is_file() else f"the training process ended with code {code}"
            self._fail(job, reason, "training_failed")
            return
        outcome = json.loads(outcome_file.read_text())
        result_ids = [self.files.add(filename=Path(f).name, purpose="fine-tune-results",
                                         size=Path(f).stat().st_size, path=f).id for f in outcome["result_files"]]
        final = model_dir(self.settings, job.id)
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp / "adapter", final)
        model_id = fine_tuned_id(job.model, job.suffix, job.id)
        done = self.jobs.update_job(
            job.id, status="succeeded", fine_tuned_model=model_id, model_path=str(final),
            trained_tokens=outcome["trained_tokens"], result_files=result_ids, finished_at=utcnow(),
            only_if_status=("running",), only_if_worker=self.name,
            event=("info", f"New fine-tuned model created: {model_id}"),
        )
        if done is None:  # cancelled at the last moment: do not register the model
            shutil.rmtree(final, ignore_errors=True)
            return
        best = outcome.get("best_epoch")
        if best is not None:
            score = f", validation score {best['valid_score']:.0%}" if best.get("valid_score") is not None else ""
            loss = f", validation loss {best['valid_loss']:.4f}" if best.get("valid_loss") is not None else ""
            self.jobs.add_event(job.id, f"Registered the best epoch, {best['epoch']} (step {best['step']}){score}"
                                f"{loss}; the other epochs are checkpoints", data={"best_epoch": best})
        numbers = {k: outcome.get(k) for k in ("seconds", "tokens_per_second", "peak_memory_mb", "device",
                                               "lora_targets", "replayed")}
        self.jobs.add_event(job.id, f"The job has successfully completed in {outcome['seconds']:.0f} s on "
                            f"{outcome['device']}: {outcome['tokens_per_second']} trained tokens/s, peak memory "
                            f"{outcome['peak_memory_mb']} MiB", data=numbers)

    def _fail(self, job: Job, message: str, code: str) -> None:
        message = message[:2000]
        self.jobs.update_job(job.id, status="failed", finished_at=utcnow(), only_if_status=("running",),
                             only_if_worker=self.name, error={"code": code, "message": message, "param": None},
                             event=("error", f"Training failed: {message}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneloop.training.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--job", help="run this one job, then exit (what FineTuning.create starts)")
    parser.add_argument("--models", help="comma-separated base model ids this worker takes")
    parser.add_argument("--gpus", help="GPU indices to train on (0,1), all, or none")
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    parser.add_argument("--processes", type=int, help="data-parallel training processes (default: one per GPU)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    worker = Worker(job_id=args.job, models=models, gpus=args.gpus, max_jobs=args.max_jobs, processes=args.processes)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
