"""Fine-tuning jobs: one job system for the CLI, ``OpenAIModel`` and the server.

Local jobs train a LoRA adapter on ``smollm2-135m-instruct`` with TRL in a worker process; see
:mod:`tuneloop.training.jobs` (lifecycle), :mod:`tuneloop.training.local` (the trainer) and
:mod:`tuneloop.training.worker` (the process).
"""

from tuneloop.training.jobs import FineTuning

__all__ = ["FineTuning"]
