"""What a task's code is handed while it runs (:class:`TaskContext`), and how it says it stopped or failed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tuneloop.config import Settings
from tuneloop.store import Store
from tuneloop.store.tasks import Task

if TYPE_CHECKING:
    from tuneloop.runtime import Runtime


class TaskStopped(Exception):  # noqa: N818 - not an error: the task was asked to stop
    """Raised by :meth:`TaskContext.check` once the task must stop: cancelled, its worker stopping, or taken away."""


@dataclass(frozen=True)
class Kind:
    """A kind of long work: its name, the function that runs one task of it (given the context, it returns the
    result to keep, or None), what it is called in messages, and the machine-wide lock it needs, if any (one local
    training at a time: ``exclusive="train"``)."""

    name: str
    run: Callable[[TaskContext], dict[str, Any] | None]
    label: str = "Task"  # "Fine-tuning job": how an event names it
    noun: str = "task"  # "job": "the job is queued again"
    exclusive: str | None = None


@dataclass
class TaskContext:
    """One running task, as its code sees it: what it was asked (``task.params``), where it left off (``state``),
    the store and settings, and the ways to report progress and to notice that it must stop."""

    task: Task
    store: Store
    settings: Settings
    worker: str
    options: dict[str, Any] = field(default_factory=dict)  # the worker's own (gpus, processes)
    cancelled: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)  # taken from this worker meanwhile

    @property
    def state(self) -> dict[str, Any]:
        """Where a resumed task takes up again (what :meth:`save_state` last kept); empty on a first start."""
        return dict(self.task.state or {})

    @property
    def stopped(self) -> bool:
        return self.cancelled.is_set() or self.stopping.is_set() or self.lost.is_set()

    def check(self) -> None:
        """Raise :class:`TaskStopped` if the task must stop now: call it between steps."""
        if self.stopped:
            raise TaskStopped()

    @cached_property
    def runtime(self) -> Runtime:
        """The models and providers, over this task's store (built on first use)."""
        from tuneloop.runtime import Runtime  # lazy: a fine-tuning task's worker never needs the engines

        return Runtime(self.settings, db=self.store)

    def event(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None,
              type_: str = "message") -> None:
        self.store.tasks.add_event(self.task.id, message, level=level, data=data, type_=type_)

    def progress(self, done: int, total: int | None, message: str | None = None, **data: Any) -> None:
        """``done`` of ``total`` (None: not known yet), as the task's progress and an event pages stream."""
        shown = message or (f"{done} of {total} done" if total is not None else f"{done} done")
        state = {"done": done, "total": total, "message": shown, **data}
        self.store.tasks.add_event(self.task.id, shown, type_="progress", data=state, progress=state)

    def save_state(self, state: dict[str, Any]) -> None:
        """Keep where the task is, so that a worker that takes it up after a crash goes on from there."""
        self.store.tasks.update(self.task.id, state=state, only_if_status=("running",), only_if_worker=self.worker)
