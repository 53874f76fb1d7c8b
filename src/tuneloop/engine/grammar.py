"""Constrained decoding: the grammar a reply must follow (``structured.OutputSpec``), enforced token by token.

llguidance (Microsoft's grammar engine behind Guidance, also used by llama.cpp and vLLM) compiles a JSON Schema, or
a Lark grammar embedding JSON Schemas, against the model's tokenizer, and tells before each token which tokens keep
the reply inside the grammar. It was chosen over xgrammar by measurement (``bench/grammar_choice.py``): no
dependencies (xgrammar pulls torch, triton and transformers into the fast engine's path), and wider coverage of
the JSON Schema subset OpenAI documents.

``Grammars`` belongs to one engine (one tokenizer): it builds llguidance's view of the tokenizer once (a quarter of
a second for a 49k vocabulary), compiles each distinct spec once, and hands each reply a fresh ``Constraint``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tuneloop.structured import CALL_CLOSE, CALL_OPEN, OutputSpec, StructuredOutputError, strictly

_COMPILED = 64  # distinct specs kept compiled per engine


class Constraint:
    """One reply's grammar state: ``apply`` masks the logits of the next token, ``advance`` moves past the token
    chosen. A reply that has met its grammar can only end (the end-of-turn token is all that is allowed).

    Small models loop inside JSON (an array that never closes, a string that never ends) until the token limit cuts
    the reply, which then does not parse. So a JSON reply ``closes`` near its limit: once only ``reserve`` tokens
    are left, a token that closes a string, an array or an object (or ends the reply) is taken whenever the grammar
    allows one; otherwise the model goes on choosing among what the grammar allows (a required key, a value)."""

    def __init__(self, matcher: Any, vocab: int, closers: np.ndarray | None, eos: Sequence[int]) -> None:
        self._matcher = matcher
        self._vocab = vocab
        self._words = (vocab + 31) // 32
        self._mask = np.full(self._words, -1, dtype=np.int32)
        self._closers = closers  # None: the reply may be free text, which never closes this way
        self._eos = list(eos)

    def apply(self, logits: np.ndarray, closing: bool = False) -> None:
        """Set the logits of every token the grammar forbids now to -inf (in place). With ``closing``, narrow what
        is allowed to the first kind of token that is: the end of the reply (once the JSON is whole), a quote that
        ends a string (with any brackets after it), brackets that end arrays and objects, a comma (the next required
        key, which the grammar then writes); else leave the model its choice."""
        if self._matcher.is_error():
            return
        self._matcher.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little").view(bool)
        width = logits.shape[-1]
        if allowed.size < width:
            logits[allowed.size:] = -np.inf
        allowed = allowed[:width]
        if closing and self._closers is not None:
            if self._matcher.is_accepting():
                ends = np.zeros_like(allowed)
                ends[[e for e in self._eos if e < allowed.size]] = True
                tiers = [ends]
            else:
                tiers = list(self._closers[:, :allowed.size])
            for tier in tiers:
                narrowed = allowed & tier
                if narrowed.any():
                    allowed = narrowed
                    break
        logits[:allowed.size][~allowed] = -np.inf

    def allows(self, token: int) -> bool:
        """Whether the grammar allows ``token`` next (a fraction of the cost of a whole mask)."""
        if token >= self._vocab:  # a padding id past the tokenizer's vocabulary: never allowed
            return False
        return self._matcher.is_error() or self._matcher.validate_tokens([token]) == 1

    def advance(self, token: int) -> None:
        if not self._matcher.is_error():
            self._matcher.consume_token(token)


class Grammars:
    """The grammars of one tokenizer: ``constraint(spec)`` for each reply that must follow one."""

    def __init__(self, tokenizer_json: Callable[[], str], eos_token_ids: Sequence[int]) -> None:
        self._tokenizer_json = tokenizer_json  # called once, when the first reply needs the grammar tokenizer
        self._eos = sorted(eos_token_ids)
        self._llt: Any = None
        self._closers: np.ndarray | None = None
        self._compiled: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def tokenizer(self) -> Any:
        with self._lock:
            if self._llt is None:
                import llguidance

                self._llt = llguidance.LLTokenizer(self._tokenizer_json(), eos_token=self._eos or None)
            return self._llt

    def closers(self) -> np.ndarray:
        """The tokens that bring JSON to its end, by preference (rows): a quote that ends a string, then brackets
        and braces (``"``, ``"}``, ``"]}``; ``}``, ``]}``), then a comma, then the shortest values (``null``,
        ``0``, ``[]``, ``{}``: a nullable object is best left null)."""
        tokenizer = self.tokenizer()
        with self._lock:
            if self._closers is None:
                closers = np.zeros((4, tokenizer.vocab_size), dtype=bool)
                for token in range(tokenizer.vocab_size):
                    text = bytes(tokenizer.decode_bytes([token]))
                    if text and all(c in b'"]}' for c in text):
                        closers[0 if text.startswith(b'"') else 1, token] = True
                    elif text.strip() == b",":
                        closers[2, token] = True
                    elif text.strip() in (b"null", b"0", b"false", b"[]", b"{}"):
                        closers[3, token] = True
                self._closers = closers
            return self._closers

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for (logprobs' ``bytes``)."""
        return bytes(self.tokenizer().decode_bytes([token]))

    def constraint(self, spec: OutputSpec) -> Constraint:
        """A fresh grammar state for one reply; ``StructuredOutputError`` if llguidance cannot compile the spec."""
        import llguidance

        tokenizer = self.tokenizer()
        key = spec.key()
        with self._lock:
            grammar = self._compiled.get(key)
            if grammar is not None:
                self._compiled.move_to_end(key)
        if grammar is None:
            grammar = grammar_of(spec)
            problem = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
            if problem and not problem.startswith("WARNING"):
                raise StructuredOutputError(f"the schema cannot be enforced: {problem}", param=_param(spec))
            with self._lock:
                self._compiled[key] = grammar
                while len(self._compiled) > _COMPILED:
                    self._compiled.popitem(last=False)
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise StructuredOutputError(f"the schema cannot be enforced: {matcher.get_error()}", param=_param(spec))
        free_text = spec.calls_tools and spec.tool_choice == "auto"
        return Constraint(matcher, tokenizer.vocab_size, None if free_text else self.closers(), self._eos)


def _param(spec: OutputSpec) -> str:
    return "tools" if spec.calls_tools else "response_format"


# JSON on one line, as json.dumps writes it: white space between tokens is where small models loop ("\n\n\n ...")
# until the limit cuts the reply.
LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def grammar_of(spec: OutputSpec) -> str:
    """llguidance's grammar for a spec: the JSON Schema alone, or a Lark grammar of text-or-calls embedding the
    functions' parameter schemas (``%json``); JSON laid out on one line (``LAYOUT``)."""
    import llguidance

    # Keys a schema does not name are not generated unless additionalProperties asks for them (still valid JSON for
    # the schema; a small model otherwise invents keys).
    reply_schema = strictly(spec.schema) if spec.schema is not None else {"type": "object"} if spec.json_object \
        else None
    if reply_schema is not None:
        reply_schema = {**reply_schema, "x-guidance": LAYOUT}
    if not spec.calls_tools:
        assert reply_schema is not None
        return llguidance.LLMatcher.grammar_from_json_schema(reply_schema)
    calls = [{"type": "object", "properties": {"name": {"const": tool.name}, "arguments": strictly(tool.parameters)},
              "required": ["name", "arguments"], "additionalProperties": False}
             for tool in spec.callable_tools()]
    call_schema = {**(calls[0] if len(calls) == 1 else {"anyOf": calls}), "x-guidance": LAYOUT}
    rules = [
        f'call: {json.dumps(CALL_OPEN + chr(10))} %json {json.dumps(call_schema)} {json.dumps(chr(10) + CALL_CLOSE)}',
        'calls: call ("\\n" call)*' if spec.parallel else "calls: call",
    ]
    if spec.tool_choice in ("required", "function"):
        rules.insert(0, "start: calls")
    elif reply_schema is not None:
        rules.insert(0, "start: reply | calls")
        rules.append(f"reply: %json {json.dumps(reply_schema)}")
    else:
        # Text that does not open with "<" (a call always does), or calls.
        rules.insert(0, "start: TEXT | calls")
        rules.append("TEXT: /[^<](.|\\n)*/")
    return llguidance.LLMatcher.grammar_from_lark("\n".join(rules))
