"""tuneloop: chat → log with sentiment → fine-tune → chat with the tuned model, offline or remote."""

from tuneloop.assistants import Assistant
from tuneloop.chat import ChatSession, Reply
from tuneloop.config import Settings, load_settings
from tuneloop.errors import TuneloopError
from tuneloop.model import OpenAIModel
from tuneloop.runtime import Runtime

__version__ = "0.1.0"

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
