"""What a reply's generation gives back, whoever generates it (a local engine, a remote provider): the shared
contract of the engines and the providers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationResult:
    """What one generation produced, filled in while it streams."""

    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None  # "stop", "length", "tool_calls" or "interrupted"
    first_token_seconds: float | None = None
    seconds: float = 0.0
    dropped_messages: int = 0  # oldest turns left out to fit the context window
    # Each token's log-probability in OpenAI's shape ({"token", "logprob", "bytes", "top_logprobs"}), when asked for.
    logprobs: list[dict[str, Any]] | None = None
    # The functions the reply calls (chat completions' tool_calls entries); its text is then what came before them.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TextStream:
    """Iterate to get text pieces as they are generated; ``result`` is complete once exhausted."""

    _pieces: Iterator[str]
    result: GenerationResult = field(default_factory=GenerationResult)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close:
            close()

    def read(self) -> GenerationResult:
        for _ in self._pieces:
            pass
        return self.result


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in ``text``, or None."""
    positions = [text.find(s) for s in stop if s]
    positions = [p for p in positions if p >= 0]
    return min(positions) if positions else None
