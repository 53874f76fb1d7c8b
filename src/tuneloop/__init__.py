"""tuneloop: chat → log with sentiment → fine-tune → chat with the tuned model, offline or remote."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneloop.config import Settings, load_settings
    from tuneloop.conversation.assistants import Assistant
    from tuneloop.conversation.chat import ChatSession, Reply
    from tuneloop.errors import TuneloopError
    from tuneloop.openai_model import OpenAIModel
    from tuneloop.runtime import Runtime

__version__ = "0.1.0"

# Imported when first used, so that processes needing one part (a training process, a worker) load only that.
_EXPORTS = {
    "Assistant": "tuneloop.conversation.assistants",
    "ChatSession": "tuneloop.conversation.chat",
    "Reply": "tuneloop.conversation.chat",
    "Settings": "tuneloop.config",
    "load_settings": "tuneloop.config",
    "TuneloopError": "tuneloop.errors",
    "OpenAIModel": "tuneloop.openai_model",
    "Runtime": "tuneloop.runtime",
}

__all__ = [
    "Assistant",
    "ChatSession",
    "OpenAIModel",
    "Reply",
    "Runtime",
    "Settings",
    "TuneloopError",
    "__version__",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuneloop' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
