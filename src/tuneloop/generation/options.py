"""What a reply is asked for, in one object: a request is read into :class:`GenerationOptions` once (by the server,
the chat session, an eval, a judge), and the object travels unchanged to a local engine or a remote provider, as
vLLM's ``SamplingParams`` does. Every default lives here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tuneloop.errors import InputError

if TYPE_CHECKING:
    from tuneloop.structured import OutputSpec

DEFAULT_MAX_TOKENS = 512
MAX_TOP_LOGPROBS = 20
MAX_STOPS = 4


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InputError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}", param=name)
    return float(value)


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate one reply.

    ``max_tokens``: the most tokens it may have (then it ends with ``length``). ``temperature``: 0 is greedy, above
    samples. ``top_p``: nucleus sampling when sampling (None: 1, no cut). ``stop``: up to four strings that end the
    reply before them. ``seed``: the same seed and options give the same sampled reply. ``presence_penalty`` and
    ``frequency_penalty``: -2 to 2 (None: 0), as OpenAI applies them. ``logprobs``: None for no log-probabilities,
    else how many alternatives each token lists (0 to 20). ``output``: JSON or tool calls the reply must be
    (:mod:`tuneloop.structured`). ``retries``: how often a remote provider tries again after a failure (None: the
    configured retry policy); a local engine has nothing to retry.

    A remote provider is sent only what was given (a None stays unsent), so a server that lacks a parameter never
    sees it unless the caller asked for it."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = field(default=())
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: int | None = None
    output: OutputSpec | None = None
    retries: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InputError(f"max_tokens must be a whole number of at least 1, not {self.max_tokens!r}",
                             param="max_tokens")
        _number("temperature", self.temperature, 0.0, 2.0)
        if self.top_p is not None:
            _number("top_p", self.top_p, 0.0, 1.0)
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name), -2.0, 2.0)
        if self.logprobs is not None and (isinstance(self.logprobs, bool) or not isinstance(self.logprobs, int)
                                          or not 0 <= self.logprobs <= MAX_TOP_LOGPROBS):
            raise InputError(f"top_logprobs must be a whole number from 0 to {MAX_TOP_LOGPROBS}", param="top_logprobs")
        stops = tuple(s for s in ([self.stop] if isinstance(self.stop, str) else self.stop or ()) if s)
        if len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
            raise InputError(f"stop: give up to {MAX_STOPS} strings", param="stop")
        object.__setattr__(self, "stop", stops)

    @property
    def sampled(self) -> bool:
        """Whether tokens are drawn at random (temperature above 0) rather than the likeliest taken."""
        return self.temperature > 0

    @property
    def nucleus(self) -> float:
        """top_p as a local engine applies it (1: no cut)."""
        return 1.0 if self.top_p is None else self.top_p

    @property
    def penalties(self) -> tuple[float, float]:
        """(presence, frequency) as a local engine applies them (0: none)."""
        return self.presence_penalty or 0.0, self.frequency_penalty or 0.0

    def but(self, **changes: Any) -> GenerationOptions:
        """These options with ``changes`` (checked again)."""
        return replace(self, **changes)

    def for_choice(self, index: int) -> GenerationOptions:
        """The options of choice ``index`` of ``n``: with a seed, choice i samples with seed + i."""
        return self if self.seed is None or index == 0 else replace(self, seed=self.seed + index)

    def wire(self) -> dict[str, Any]:
        """The options as OpenAI's chat completions request fields, the given ones only (the token limit is the
        provider's to name: ``max_tokens`` or ``max_completion_tokens``)."""
        found: dict[str, Any] = {"temperature": self.temperature}
        for name in ("top_p", "seed", "presence_penalty", "frequency_penalty"):
            if getattr(self, name) is not None:
                found[name] = getattr(self, name)
        if self.stop:
            found["stop"] = list(self.stop)
        if self.logprobs is not None:
            found["logprobs"] = True
            if self.logprobs:
                found["top_logprobs"] = self.logprobs
        if self.output is not None:
            found.update(self.output.wire)
        return found


def options_from(*, max_tokens: int | None = None, default_max_tokens: int = DEFAULT_MAX_TOKENS,
                 stop: str | Sequence[str] | None = None, **given: Any) -> GenerationOptions:
    """Options from a request's loose fields (None: not given, so the default), ``max_tokens`` falling back to
    ``default_max_tokens`` (a setting)."""
    kept = {k: v for k, v in given.items() if v is not None}
    return GenerationOptions(max_tokens=max_tokens or default_max_tokens,
                             stop=tuple([stop] if isinstance(stop, str) else stop or ()), **kept)
