"""What every provider offers: list its models and stream a chat reply."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.generation import GenerationOptions, GenerationResult, TextStream

__all__ = ["GenerationOptions", "GenerationResult", "ModelInfo", "Provider", "StopCheck", "TextStream"]

StopCheck = Callable[[], bool]  # asked between pieces: True ends the reply ("interrupted")


@dataclass(frozen=True)
class ModelInfo:
    id: str
    provider: str
    kind: str  # "base", "fine-tuned" or "remote"
    note: str = ""
    vision: bool | None = False  # accepts images; None: not known (a remote model tuneloop knows nothing about)
    architecture: str = ""  # local models: "LlamaForCausalLM", …
    parameters: int | None = None
    path: str = ""  # where a local model lives


class Provider(ABC):
    """A source of chat completions. Messages are OpenAI chat messages (role, content)."""

    name: str

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """The models this provider serves now."""

    @abstractmethod
    def stream(self, messages: Sequence[dict[str, Any]], options: GenerationOptions = GenerationOptions(), *,
               model: str, should_stop: StopCheck | None = None) -> TextStream:
        """Start a reply of ``model`` to chat ``messages``, as ``options`` ask; iterate the stream for text pieces,
        then read ``stream.result`` (tool calls come back in ``result.tool_calls``)."""

    def complete(self, messages: Sequence[dict[str, Any]], options: GenerationOptions = GenerationOptions(), *,
                 model: str) -> GenerationResult:
        """The whole reply at once."""
        return self.stream(messages, options, model=model).read()
