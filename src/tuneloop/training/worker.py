"""The process that runs one local fine-tuning job: ``python -m tuneloop.training.worker JOB_ID``.

It is started by :mod:`tuneloop.training.jobs` in its own session (so the CLI can exit and Ctrl-C in the
terminal does not reach it), writes its output to ``$TUNELOOP_HOME/jobs/JOB_ID/worker.log``, and records
everything else in the store: status, heartbeat, events (messages and per-step metrics), result files.

One local job trains at a time (a lock file); the others wait in ``queued``. SIGTERM (``tuneloop jobs
cancel``) stops the job at the next step and marks it ``cancelled``. The adapter is written to a temporary
folder and renamed into place before the job is marked ``succeeded`` with its model id, in one
transaction, so a job that dies never leaves a half-registered model.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from tuneloop.config import load_settings
from tuneloop.datasets import token_counter, validate_examples
from tuneloop.engine.weights import ensure_checkpoint
from tuneloop.store import DialogueStore
from tuneloop.store.jobs import ACTIVE, JobStore
from tuneloop.store.schema import utcnow
from tuneloop.training import local
from tuneloop.training.paths import job_dir, lock_path, model_dir, temp_model_dir

HEARTBEAT_SECONDS = 5.0


class Worker:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.settings = load_settings()
        self.jobs = JobStore(DialogueStore(self.settings.resolved_database_url,
                                           busy_timeout=max(30.0, self.settings.db_busy_timeout)))
        self.cancelled = threading.Event()
        self.training = False

    def on_sigterm(self, _signum: int, _frame: object) -> None:
        self.cancelled.set()
        if not self.training:
            raise local.Cancelled

    def should_stop(self) -> bool:
        return self.cancelled.is_set()

    def heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                job = self.jobs.update_job(self.job_id, heartbeat_at=utcnow(), only_if_status=ACTIVE)
                if job is not None and job.cancel_requested:
                    self.cancelled.set()
            except Exception:  # noqa: BLE001 - a missed heartbeat must not kill the training
                traceback.print_exc()

    def wait_for_turn(self) -> object:
        """Hold the machine-wide training lock (one local job at a time); stays queued meanwhile."""
        path = lock_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if not announced:
                    self.jobs.add_event(self.job_id, "Waiting for another local job to finish")
                    announced = True
                if self.jobs.get_job(self.job_id).cancel_requested:
                    raise local.Cancelled from None
                time.sleep(1.0)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_sigterm)
        stop_heartbeat = threading.Event()
        threading.Thread(target=self.heartbeat, args=(stop_heartbeat,), daemon=True).start()
        job = self.jobs.get_job(self.job_id)
        temp = temp_model_dir(self.settings, job.id)
        try:
            _lock = self.wait_for_turn()
            started = self.jobs.update_job(job.id, status="running", heartbeat_at=utcnow(),
                                           only_if_status=("queued", "validating_files"),
                                           event=("info", "Fine-tuning job started"))
            if started is None:
                return 0  # cancelled while queued
            self.training = True
            examples = local.read_examples(Path(self.jobs.get_file(job.training_file).path))
            checkpoint = ensure_checkpoint(self.settings.resolved_models_dir)

            def progress(p: local.Progress) -> None:
                eta = p.eta
                data = {"step": p.step, "total_steps": p.total_steps, "train_loss": p.loss,
                        "learning_rate": p.learning_rate, "epoch": round(p.epoch, 3)}
                state = {**data, "elapsed": round(p.elapsed, 1), "eta_seconds": round(eta, 1) if eta else None,
                         "estimated_finish": int(time.time() + eta) if eta else None}
                # Cancellation arrives by SIGTERM (and the heartbeat reads the flag): no extra read per step.
                self.jobs.add_event(job.id, f"Step {p.step}/{p.total_steps}: training loss={p.loss:.4f}",
                                    type_="metrics", data=data, progress=state)

            final = model_dir(self.settings, job.id)
            model_id = f"ft:{job.model}:{job.suffix or ''}:{job.id}"

            def checkpointed(step: int, folder: Path, loss: float | None) -> None:
                # Recorded where the folder will be once the job succeeds; served only after that.
                self.jobs.add_checkpoint(job.id, step=step, metrics={"step": step, "train_loss": loss},
                                         model=f"{model_id}:ckpt-step-{step}",
                                         path=str(final / folder.relative_to(temp / "adapter")))

            result = local.train(checkpoint=checkpoint, examples=examples, method=job.method,
                                 hyperparameters=job.hyperparameters, seed=job.seed, output_dir=temp / "adapter",
                                 work_dir=temp, on_progress=progress, should_stop=self.should_stop,
                                 on_checkpoint=checkpointed)
            self.training = False
            results_dir = job_dir(self.settings, job.id)
            files = local.write_results(result, results_dir, f"{job.id} · {job.method} · {job.model}")
            result_ids = [self.jobs.add_file(filename=f.name, purpose="fine-tune-results", size=f.stat().st_size,
                                             path=str(f)).id for f in files]
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp / "adapter", final)
            counter = token_counter(job.model, models_dir=self.settings.resolved_models_dir)
            tokens = validate_examples(examples, counter).tokens["total"] * int(job.hyperparameters["n_epochs"])
            done = self.jobs.update_job(
                job.id, status="succeeded", fine_tuned_model=model_id, model_path=str(final),
                trained_tokens=tokens, result_files=result_ids,
                finished_at=utcnow(), only_if_status=("running",),
                event=("info", f"New fine-tuned model created: {model_id}"),
            )
            if done is None:  # cancelled at the last moment: do not register the model
                shutil.rmtree(final, ignore_errors=True)
                return 0
            self.jobs.add_event(job.id, f"The job has successfully completed in {result.seconds:.0f} s")
            return 0
        except local.Cancelled:
            self.jobs.update_job(job.id, status="cancelled", finished_at=utcnow(), only_if_status=ACTIVE,
                                 event=("info", "The job was cancelled"))
            return 0
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the job record
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"[:2000]
            self.jobs.update_job(job.id, status="failed", finished_at=utcnow(), only_if_status=ACTIVE,
                                 error={"code": "training_failed", "message": message, "param": None},
                                 event=("error", f"Training failed: {message}"))
            return 1
        finally:
            stop_heartbeat.set()
            shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuneloop.training.worker JOB_ID", file=sys.stderr)
        return 2
    return Worker(args[0]).run()


if __name__ == "__main__":
    sys.exit(main())
