"""Long work as the library's callers see it: submit a task, follow it, cancel it, list them. Whoever looks at a task
also checks its worker (:meth:`Tasks.refresh`), so a task whose worker died is queued again without anyone watching,
and a queued task on a machine that spawns its own workers always has one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from tuneloop.config import Settings
from tuneloop.errors import JobStateError, TaskStateError
from tuneloop.store import Store
from tuneloop.store.schema import utcnow
from tuneloop.store.tasks import ACTIVE, Task, TaskEvent
from tuneloop.tasks.processes import on_this_machine, pid_alive, reap, spawned, worker_environment, worker_name
from tuneloop.util.fileio import open_private
from tuneloop.util.home import worker_log

# How messages name a task of each kind ("the job is queued again"); any other kind is "the task".
NOUNS = {"fine_tune": "job", "remote_fine_tune": "job", "judge_run": "run", "eval_run": "run"}
# The kinds that run elsewhere (a remote platform): no worker here takes them.
REMOTE = ("remote_fine_tune",)


def task_log(settings: Settings, task: Task) -> Path:
    """Where a task's worker writes its output: a job's beside its results, any other task's under tasks/."""
    if task.kind == "fine_tune":
        return worker_log(settings, task.id)
    return settings.home / "tasks" / task.id / "worker.log"


class Tasks:
    """The tasks of one store, on this machine's settings (``spawn_worker``, ``worker_timeout``…)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def submit(self, kind: str, *, params: dict[str, Any] | None = None, title: str | None = None,
               model: str | None = None, first_event: str | None = None) -> Task:
        """Queue a task of ``kind``; here, a one-task worker starts for it at once (unless ``spawn_worker`` is off:
        then ``tuneloop worker`` processes take it)."""
        task = self.store.tasks.create(kind, params=params, title=title, model=model, first_event=first_event)
        return self.spawn(task) if self.settings.spawn_worker else task

    def spawn(self, task: Task) -> Task:
        """Start a one-task worker for queued ``task`` on this machine; its pid is recorded while the task waits."""
        log = task_log(self.settings, task)
        with open_private(log) as out:
            # umask 077: what the task writes (adapters, checkpoints, logs) is readable by its owner only.
            child = subprocess.Popen(
                [sys.executable, "-m", "tuneloop.worker", "--task", task.id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=worker_environment(self.settings), start_new_session=True, umask=0o077,
            )
        spawned[child.pid] = child
        updated = self.store.tasks.spawned(task.id, worker=worker_name(child.pid), pid=child.pid)
        return updated or self.store.tasks.get(task.id)

    def _fail_unstarted(self, task: Task) -> Task:
        """Fail queued ``task`` when every one-task worker started for it (``job_max_attempts`` of them) ended before
        taking it: something stops a worker from starting here, and starting more would only repeat it."""
        noun = NOUNS.get(task.kind, "task")
        message = (f"{task.spawns} workers started for the {noun} ended before taking it; the last one's output is in "
                   f"{task_log(self.settings, task)}")
        done = self.store.tasks.update(task.id, status="failed", finished_at=utcnow(), only_if_status=("queued",),
                                       error={"code": "worker_failed", "message": message, "param": None},
                                       event=("error", message))
        return done or self.store.tasks.get(task.id)

    # looking at tasks

    def check_worker(self, task: Task) -> Task:
        """``task`` once its worker has been checked: a running task whose worker is gone (its process, on this
        machine; its heartbeat, older than ``worker_timeout``, anywhere) is queued again or failed."""
        if task.status != "running":
            return task
        reason = None
        if on_this_machine(task.worker) and not pid_alive(task.pid):
            reason = f"worker {task.worker} ended without finishing the {NOUNS.get(task.kind, 'task')}"
        elif task.heartbeat_at is not None and utcnow() - task.heartbeat_at > timedelta(
                seconds=self.settings.worker_timeout):
            reason = f"worker {task.worker} sent no heartbeat for {self.settings.worker_timeout:g} s"
        if reason is None:
            return task
        found = self.store.tasks.requeue(task.id, worker=task.worker, noun=NOUNS.get(task.kind, "task"),
                                         reason=f"{reason} (its output is in {task_log(self.settings, task)})",
                                         max_attempts=self.settings.job_max_attempts)
        return found or self.store.tasks.get(task.id)

    def refresh(self, task: Task, *, spawn: bool = True) -> Task:
        """``task`` with its worker checked; a queued one on a machine that spawns workers gets one if it has none."""
        if not task.active or task.kind in REMOTE:
            return task
        current = self.check_worker(task)
        if (spawn and current.status == "queued" and self.settings.spawn_worker
                and not _spawned_alive(current)):
            if current.spawns >= self.settings.job_max_attempts:
                return self._fail_unstarted(current)
            current = self.spawn(current)
        return current

    def recover(self, kinds: Sequence[str] | None = None, *, spawn: bool = True) -> list[Task]:
        """Every unfinished task, each once its worker has been checked: what a (re)started server does, so that
        none stays running without a worker and every queued one has a worker to take it."""
        reap()
        return [self.refresh(t, spawn=spawn) for t in self.store.tasks.unfinished(kinds)]

    def get(self, task_id: str) -> Task:
        return self.refresh(self.store.tasks.get(task_id))

    def list(self, *, kinds: Sequence[str] | None = None, limit: int = 20, after: str | None = None) -> list[Task]:
        return [self.refresh(t) for t in self.store.tasks.list(kinds=kinds, limit=limit, after=after)]

    def events(self, task_id: str, *, after: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[TaskEvent]:
        return self.store.tasks.events(task_id, after=after, limit=limit, newest_first=newest_first)

    # changing them

    def cancel(self, task_id: str, *, timeout: float = 20.0) -> Task:
        """Stop a task within seconds and mark it cancelled; a finished task cannot be cancelled."""
        task = self.refresh(self.store.tasks.get(task_id), spawn=False)  # no worker started only to be stopped
        noun = NOUNS.get(task.kind, "task")
        if task.kind in REMOTE:
            raise TaskStateError(f"{task_id} is a fine-tuning job a remote platform runs: cancel it as a fine-tuning "
                                 "job, which tells the platform")
        if not task.active:
            error = JobStateError if task.kind == "fine_tune" else TaskStateError
            raise error(f"{noun} {task_id} has already {task.status}; only queued or running {noun}s can be cancelled")
        self.store.tasks.update(task_id, cancel_requested=True, only_if_status=ACTIVE)
        done = self.store.tasks.update(task_id, status="cancelled", finished_at=utcnow(),
                                       only_if_status=("validating_files", "queued"),
                                       event=("info", f"The {noun} was cancelled"))
        if done is not None:  # not started: its one-task worker sees that and leaves
            return done
        # Running: its worker reads the request at its next heartbeat; one on this machine is told at once.
        if on_this_machine(task.worker) and task.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(task.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.store.tasks.get(task_id).active:
            time.sleep(0.2)
        done = self.store.tasks.update(task_id, status="cancelled", finished_at=utcnow(), only_if_status=ACTIVE,
                                       event=("info", f"The {noun} was cancelled"))
        if task.pid in spawned:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spawned[task.pid].wait(timeout=10)
        return done or self.store.tasks.get(task_id)

    def wait(self, task_id: str, *, on_update: Callable[[Task], None] | None = None, poll: float = 1.0,
             timeout: float | None = None) -> Task:
        """Block until the task finishes (``on_update`` is called with each new state). A remote platform's job
        is followed by asking the platform (``tuneloop jobs wait``), not here."""
        if (first := self.store.tasks.get(task_id)).kind in REMOTE:
            raise TaskStateError(f"{task_id} is a fine-tuning job a remote platform runs: its state is the platform's"
                                 ).with_hint(f"`tuneloop jobs wait {first.id}` follows it")
        started = time.monotonic()
        while True:
            task = self.get(task_id)
            if on_update is not None:
                on_update(task)
            if not task.active:
                return task
            if timeout is not None and time.monotonic() - started > timeout:
                return task
            time.sleep(poll)


def _spawned_alive(task: Task) -> bool:
    """Whether the one-task worker spawned for a queued task is still there (one spawned elsewhere counts as there)."""
    if task.worker is None:
        return False
    return not on_this_machine(task.worker) or pid_alive(task.pid)
