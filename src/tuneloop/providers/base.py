"""What every provider offers: list its models and stream a chat reply."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.generation import GenerationResult, TextStream
from tuneloop.structured import OutputSpec

__all__ = ["GenerationResult", "ModelInfo", "Provider", "TextStream"]


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
    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        retries: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        logprobs: int | None = None,
        output: OutputSpec | None = None,
    ) -> TextStream:
        """Start a reply; iterate the stream for text pieces, then read ``stream.result``. ``top_p`` (nucleus
        sampling) applies when ``temperature`` is above 0. ``logprobs``: how many alternatives each token's
        log-probability lists (None: none); ``output``: JSON or tool calls the reply must be (tool calls come back
        in ``result.tool_calls``)."""

    def complete(self, messages: Sequence[dict[str, Any]], *, model: str, **options: Any) -> GenerationResult:
        return self.stream(messages, model=model, **options).read()
