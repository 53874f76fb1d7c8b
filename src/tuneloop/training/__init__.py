"""Fine-tuning jobs: one job system for the CLI, ``OpenAIModel`` and the server.

Local jobs are queued in the store and run by workers; see :mod:`tuneloop.training.jobs` (lifecycle),
:mod:`tuneloop.training.task` (a job as a task that workers run), :mod:`tuneloop.training.run` (the training
process) and :mod:`tuneloop.training.local` (the trainer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneloop.store.jobs import Checkpoint, Job, JobEvent
    from tuneloop.training.jobs import FineTuning

__all__ = ["Checkpoint", "FineTuning", "Job", "JobEvent"]


def __getattr__(name: str) -> Any:
    if name == "FineTuning":
        # Lazy, so that a worker or a training process does not import the whole job system (and all of tuneloop).
        from tuneloop.training.jobs import FineTuning

        return FineTuning
    if name in ("Job", "JobEvent", "Checkpoint"):
        # Lazy as well: the records a job's callers show, from where they are kept.
        from tuneloop.store import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module 'tuneloop.training' has no attribute {name!r}")
