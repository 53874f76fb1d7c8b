"""How the next token is chosen from a model's logits, the same in both local engines: repetition penalties, the
grammar of a structured reply, log-probabilities, then greedy or sampled (temperature, top_p, a seed), as a reply's
:class:`~tuneloop.generation.GenerationOptions` ask."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneloop.generation import GenerationOptions
from tuneloop.generation.options import MAX_TOP_LOGPROBS

if TYPE_CHECKING:
    from tuneloop.engine.grammar import Constraint, Grammars



class Sampler:
    """Chooses one reply's tokens. ``constraint`` is the reply's grammar state, if it has one; when log-probabilities
    were asked for, each choice is appended to ``logprobs`` in OpenAI's shape (``{"token", "logprob", "bytes",
    "top_logprobs"}``), its text from ``token_bytes``."""

    def __init__(self, options: GenerationOptions, constraint: Constraint | None = None,
                 token_bytes: Callable[[int], bytes] | None = None) -> None:
        self.options = options
        self.presence, self.frequency = options.penalties
        # A structured reply closes its JSON once this few tokens are left (see grammar.Constraint).
        self.closing_from = options.max_tokens - closing_reserve(options.max_tokens)
        self.produced = 0
        self.constraint = constraint
        self.token_bytes = token_bytes or (lambda token: str(token).encode())
        # Any integer seeds (OpenAI's seed may be negative); numpy takes non-negative ones.
        seed = None if options.seed is None else options.seed % 2**64
        self.rng = np.random.default_rng(seed) if options.sampled else None
        self.counts: dict[int, int] = {}
        self.logprobs: list[dict[str, Any]] = []
        self._penalised = bool(self.presence or self.frequency)

    def pick(self, logits: np.ndarray) -> int:
        """The next token from one row of logits (1-D; copied before any change: a batch's logits are shared)."""
        copied = False
        if self._penalised and self.counts:
            logits, copied = np.array(logits, dtype=np.float32), True
            ids = np.fromiter(self.counts, dtype=np.int64, count=len(self.counts))
            counts = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
            logits[ids] -= self.frequency * counts + self.presence
        token = None
        if self.constraint is not None:
            closing = self.produced >= self.closing_from
            if self.rng is None and self.options.logprobs is None and not closing:
                # Greedy: the model's own first choice is most often allowed; the whole mask only when it is not.
                first = int(np.argmax(logits))
                token = first if self.constraint.allows(first) else None
            if token is None:
                if not copied:
                    logits = np.array(logits, dtype=np.float32)
                self.constraint.apply(logits, closing)
        if token is None:
            token = self._choose(logits)
        self.produced += 1
        if self.options.logprobs is not None:
            self._record(logits, token)
        if self._penalised:
            self.counts[token] = self.counts.get(token, 0) + 1
        if self.constraint is not None:
            self.constraint.advance(token)
        return token

    def _choose(self, logits: np.ndarray) -> int:
        if self.rng is None:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / self.options.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        if not np.isfinite(p).all():  # a temperature so low that the sum overflows: the likeliest token
            return int(np.argmax(logits))
        if self.options.nucleus < 1.0:
            order = np.argsort(-p, kind="stable")
            sorted_p = p[order]
            keep = order[np.cumsum(sorted_p) - sorted_p < self.options.nucleus]
            if keep.size == 0:  # top_p 0: only the likeliest token is left
                return int(order[0])
            return int(self.rng.choice(keep, p=p[keep] / p[keep].sum()))
        return int(self.rng.choice(p.size, p=p))

    def _record(self, logits: np.ndarray, token: int) -> None:
        z = logits.astype(np.float64)
        finite = np.isfinite(z)
        top = z.max()
        log_total = top + np.log(np.exp(z[finite] - top).sum())
        entry = self._entry(token, float(z[token] - log_total))
        top = []
        k = min(self.options.logprobs or 0, MAX_TOP_LOGPROBS)
        if k:
            best = np.argpartition(-z, k)[:k] if z.size > k else np.arange(z.size)
            best = best[np.argsort(-z[best], kind="stable")]
            top = [self._entry(int(i), float(z[i] - log_total)) for i in best if np.isfinite(z[i])]
        entry["top_logprobs"] = top
        self.logprobs.append(entry)

    def _entry(self, token: int, logprob: float) -> dict[str, Any]:
        raw = self.token_bytes(token)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": max(logprob, -9999.0),
                "bytes": list(raw)}


def closing_reserve(max_tokens: int) -> int:
    """How many tokens before its limit a JSON reply starts closing: a third of the limit, at least 32 (a few
    required keys still to write), at most half."""
    return min(max(32, max_tokens // 3), max_tokens // 2)


def make_sampler(options: GenerationOptions, grammars: Grammars) -> Sampler:
    """A sampler with a fresh grammar state when the reply must follow one (``grammars``: the engine's)."""
    constraint = None
    if options.output is not None and options.output.constrained:
        constraint = grammars.constraint(options.output)
    token_bytes = grammars.token_bytes if options.logprobs is not None else None
    return Sampler(options, constraint, token_bytes)
