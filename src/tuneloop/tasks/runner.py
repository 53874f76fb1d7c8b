"""Workers: processes that take queued tasks from the shared store and run them, one at a time.

``tuneloop worker`` runs on any machine that shares the store (PostgreSQL for a team) and the storage root
(``$TUNELOOP_HOME``). It takes one queued task at a time, atomically (no task runs twice), runs its kind's code with a
heartbeat beside it, records how it ended, and takes the next. SIGTERM or Ctrl-C stops it cleanly: the task in hand
goes back to the queue, uncharged. SIGUSR1 makes it look at once whether its task was cancelled.

On a laptop nobody starts one: each new task spawns a one-task worker (``python -m tuneloop.worker --task ID``); a
kind that needs the machine to itself (training) waits for the machine-wide lock, oldest task first.

A worker that dies (SIGKILL, out of memory, machine lost) is noticed by anyone who looks at its task
(:meth:`tuneloop.tasks.Tasks.refresh`): the task is queued again, up to ``job_max_attempts`` starts, then failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from tuneloop.config import Settings, load_settings
from tuneloop.errors import TaskFailed, TuneloopError
from tuneloop.store import Store
from tuneloop.store.schema import utcnow
from tuneloop.store.tasks import ACTIVE, Task
from tuneloop.tasks.context import Kind, TaskContext, TaskStopped
from tuneloop.tasks.processes import on_this_machine, pid_alive, worker_name
from tuneloop.tasks.service import Tasks
from tuneloop.util.home import lock_path

log = logging.getLogger("tuneloop.tasks")


class Worker:
    """Takes tasks of ``kinds`` (the kind table: name → :class:`Kind`) from the store and runs them."""

    def __init__(self, kinds: Mapping[str, Kind], settings: Settings | None = None, *, task_id: str | None = None,
                 models: list[str] | None = None, devices: tuple[str, ...] = ("cpu",), quantize: bool = False,
                 max_tasks: int | None = None, poll: float = 2.0, options: dict[str, Any] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.settings = settings or load_settings()
        self.store = Store(self.settings.resolved_database_url,
                           busy_timeout=max(30.0, self.settings.db_busy_timeout))
        self.tasks = Tasks(self.store, self.settings)
        self.kinds = dict(kinds)
        self.name = worker_name()
        self.task_id = task_id
        self.models = models
        self.devices = devices
        self.quantize = quantize
        self.max_tasks = 1 if task_id else max_tasks
        self.poll = poll
        self.options = dict(options or {})
        self.stopping = threading.Event()
        self.wake = threading.Event()  # SIGUSR1: look at the store now (a cancel on this machine)
        self.log = log or (lambda message: print(message, flush=True))

    def stop(self, *_: object) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> int:
        """Take and run tasks until stopped, or until ``max_tasks`` (one, for a one-task worker) are done."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGUSR1, lambda *_: self.wake.set())
        done = 0
        with contextlib.ExitStack() as held:
            if self.task_id is not None and not self._take_turn(held):
                return 0
            while not self.stopping.is_set():
                self.tasks.recover(spawn=False)
                task = self.store.tasks.claim(self.name, pid=os.getpid(), kinds=list(self.kinds), task_id=self.task_id,
                                              models=self.models, devices=self.devices, quantize=self.quantize)
                if task is None:
                    if self.task_id is not None:
                        return 0  # taken by another worker, or cancelled
                    self.stopping.wait(self.poll)
                    continue
                self.run_task(task)
                done += 1
                if self.max_tasks is not None and done >= self.max_tasks:
                    break
        return 0

    # one task

    def run_task(self, task: Task) -> Task:
        """Run one claimed task to its end (or back to the queue), with a heartbeat beside it."""
        kind = self.kinds[task.kind]
        self.store.tasks.add_event(task.id, f"{kind.label} started by worker {self.name} (attempt {task.attempts})")
        self.log(f"{self.name}: running {task.id} ({task.kind}, attempt {task.attempts})")
        context = TaskContext(task, self.store, self.settings, self.name, self.options, stopping=self.stopping)
        finished = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(context, finished), name=f"tuneloop-beat-{task.id}",
                                daemon=True)
        beat.start()
        try:
            self._end(kind, context, self._outcome(kind, context))
        finally:
            finished.set()
            self.wake.set()
            beat.join(timeout=5)
            self.wake.clear()
        ended = self.store.tasks.get(task.id)
        self.log(f"{self.name}: {task.id} {ended.status}"
                 + (f": {(ended.error or {}).get('message')}" if ended.status == "failed" else ""))
        return ended

    def _outcome(self, kind: Kind, context: TaskContext) -> tuple[str, Any]:
        """How the kind's code ended: ("done", result), ("stopped", None) or ("failed", TaskFailed)."""
        try:
            result = kind.run(context)
        except TaskStopped:
            return "stopped", None
        except TaskFailed as exc:
            return "failed", exc
        except TuneloopError as exc:
            return ("stopped", None) if context.stopped else ("failed", TaskFailed(str(exc)))
        except Exception as exc:  # noqa: BLE001 - every failure must reach the task's record
            if context.stopped:
                return "stopped", None
            log.error("task %s failed:\n%s", context.task.id, traceback.format_exc())
            return "failed", TaskFailed(f"{type(exc).__name__}: {exc}")
        return ("stopped", None) if context.stopped else ("done", result)

    def _end(self, kind: Kind, context: TaskContext, outcome: tuple[str, Any]) -> None:
        task, how, value = context.task, *outcome
        mine = {"only_if_status": ("running",), "only_if_worker": self.name}
        if how == "done":
            self.store.tasks.update(task.id, status="succeeded", result=value, finished_at=utcnow(),
                                    event=("info", f"The {kind.noun} has succeeded"), **mine)
        elif how == "failed":
            message = str(value)[:2000]
            self.store.tasks.update(task.id, status="failed", finished_at=utcnow(),
                                    error={"code": value.code, "message": message, "param": None},
                                    event=("error", value.event or f"The {kind.noun} failed: {message}"), **mine)
        elif context.lost.is_set():
            return  # taken from this worker, or ended by whoever cancelled it: they recorded it
        elif self.store.tasks.get(task.id).cancel_requested:
            self.store.tasks.update(task.id, status="cancelled", finished_at=utcnow(), only_if_status=ACTIVE,
                                    event=("info", f"The {kind.noun} was cancelled"))
        elif self.stopping.is_set():
            self.store.tasks.requeue(task.id, worker=self.name, charge=False, noun=kind.noun,
                                     max_attempts=self.settings.job_max_attempts,
                                     reason=f"worker {self.name} was stopped")

    def _heartbeat(self, context: TaskContext, finished: threading.Event) -> None:
        """Beat every ``worker_heartbeat`` seconds (or at once when woken): keep the task this worker's, notice a
        cancel, notice that it was taken away; and watch the other workers' tasks too."""
        while not finished.is_set():
            self.wake.wait(self.settings.worker_heartbeat)
            self.wake.clear()
            if finished.is_set():
                return
            try:
                current = self.store.tasks.update(context.task.id, heartbeat_at=utcnow(), only_if_status=("running",),
                                                  only_if_worker=self.name)
                self.tasks.recover(spawn=False)
            except TuneloopError as exc:  # a busy store now must not stop the task
                self.log(f"{self.name}: heartbeat failed: {exc}")
                continue
            if current is None:
                context.lost.set()
            elif current.cancel_requested:
                context.cancelled.set()

    # the machine-wide lock of exclusive kinds

    def _take_turn(self, held: contextlib.ExitStack) -> bool:
        """A one-task worker of a kind that needs the machine to itself holds its lock while it runs (oldest task
        first); it stays queued meanwhile. False: the task is no longer queued (cancelled, or taken)."""
        assert self.task_id is not None
        task = self.store.tasks.get(self.task_id)
        kind = self.kinds.get(task.kind)
        if kind is None:  # spawned for it, yet no code here runs it: say so once, rather than be spawned again
            message = f"no worker here runs tasks of kind {task.kind!r} (this one runs {', '.join(self.kinds)})"
            self.store.tasks.update(task.id, status="failed", finished_at=utcnow(), only_if_status=("queued",),
                                    error={"code": "unknown_kind", "message": message, "param": None},
                                    event=("error", message))
            return False
        if kind.exclusive is None:
            return task.status == "queued"
        handle = self._lock_file(held)
        announced = False
        while not self.stopping.is_set():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not self._older_task_waiting(task, kind):
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)  # first come, first served: let the older task's worker in
                raise BlockingIOError
            except BlockingIOError:
                if self.store.tasks.get(self.task_id).status != "queued":
                    return False
                if not announced:
                    self.store.tasks.add_event(self.task_id, f"Waiting for another local {kind.noun} to finish")
                    announced = True
                self.stopping.wait(1.0)
        return False

    def _lock_file(self, held: contextlib.ExitStack) -> TextIO:
        path = lock_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        return held.enter_context(path.open("a"))

    def _older_task_waiting(self, mine: Task, kind: Kind) -> bool:
        """Whether a task that needs the same lock, queued before this one, has its own one-task worker waiting on
        this machine (the lock is not fair: without this, two tasks created together could run in either order)."""
        same = [k.name for k in self.kinds.values() if k.exclusive == kind.exclusive]
        return any(t.created_at < mine.created_at or (t.created_at == mine.created_at and t.id < mine.id)
                   for t in self.store.tasks.unfinished(same, ("queued",))
                   if t.id != mine.id and on_this_machine(t.worker) and pid_alive(t.pid))
