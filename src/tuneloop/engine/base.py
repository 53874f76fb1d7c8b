"""What the local engines share: a conversation fitted to the context window, then the engine's decode loop
streamed as text pieces that end at an end-of-turn token, a stop string or the token limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tuneloop.engine.grammar import Grammars
from tuneloop.engine.sampling import Sampler, make_sampler
from tuneloop.errors import ContextLengthError
from tuneloop.generation import GenerationOptions, GenerationResult, TextStream, first_stop
from tuneloop.structured import OutputSpec, Tool, hold_back, parse_reply, repeats_a_call

Message = dict[str, Any]


class ChatEngine:
    """What the local engines share: a conversation is fitted to the context window (the oldest turns left out
    first), then the engine's ``_decode`` streams the reply to its prompt."""

    context_window: int
    grammars: Grammars  # the engine's tokenizer's grammars (constrained decoding)

    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> list[int]:
        """The prompt's token ids: the conversation (tool calls and results included) and the tools offered, with
        the model's chat template where it renders tools, else with ``structured.fallback_messages``."""
        raise NotImplementedError

    def _decode(self, prompt_ids: list[int], result: GenerationResult, sampler: Sampler,
                should_stop: Callable[[], bool] | None) -> Iterator[str]:
        """The reply's text pieces, its tokens chosen by ``sampler`` (which holds the options: limit, stops)."""
        raise NotImplementedError

    def fit_to_context(self, messages: Sequence[Message], max_tokens: int,
                       tools: Sequence[Tool] = ()) -> tuple[list[int], int]:
        """Token ids of the prompt, leaving out the oldest turns if the whole would not fit."""
        return fit_to_context(lambda m: self.encode_chat(m, tools), messages, self.context_window, max_tokens)

    def stream(self, messages: Sequence[Message], options: GenerationOptions = GenerationOptions(), *,
               should_stop: Callable[[], bool] | None = None) -> TextStream:
        """Generate a reply to chat ``messages`` as ``options`` ask (greedy at temperature 0; a reply that calls
        tools gets ``result.tool_calls``); ``should_stop`` is asked between tokens (then the reply ends
        ``interrupted``)."""
        output = options.output
        tools = output.tools if output is not None and output.calls_tools else ()
        # Made now, not at the first token: a schema llguidance refuses is refused before the reply starts (a 400
        # over HTTP, never an error in the middle of a stream).
        sampler = make_sampler(options, self.grammars)
        prompt_ids, dropped = self.fit_to_context(messages, options.max_tokens, tools)
        result = GenerationResult(tokens_in=len(prompt_ids), dropped_messages=dropped)
        pieces = self._decode(prompt_ids, result, sampler, should_stop)
        if options.logprobs is not None:
            result.logprobs = sampler.logprobs  # filled in as the tokens come
            pieces = _reply_logprobs(pieces, result, sampler)
        if output is None or not output.calls_tools:
            return TextStream(pieces, result)
        return TextStream(_with_calls(pieces, result, output), result)


def _reply_logprobs(pieces: Iterator[str], result: GenerationResult, sampler: Sampler) -> Iterator[str]:
    """The reply's pieces; once it ends, ``result.logprobs`` keeps the reply's tokens only (not its end of turn, nor
    a token past a stop string)."""
    try:
        yield from pieces
    finally:
        result.logprobs = sampler.logprobs[:result.tokens_out]


def _with_calls(pieces: Iterator[str], result: GenerationResult, output: OutputSpec) -> Iterator[str]:
    """The text of a reply that may call tools, held back once a call starts; at the end the calls are read into
    ``result.tool_calls`` and ``result.text`` keeps the text before them (the rest of which comes out then). A call
    repeated word for word ends the reply (small models, allowed several calls, repeat the first until the limit)."""

    def until_repeated() -> Iterator[str]:
        for piece in pieces:
            yield piece
            if repeats_a_call(result.text):
                result.finish_reason = "stop"
                return

    shown = ""
    try:
        for piece in hold_back(until_repeated(), output):
            shown += piece
            yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # leaves the batch at once when a repeated call ended the reply
    content, calls = parse_reply(result.text, output)
    if calls:
        result.tool_calls = calls
        result.text = content or ""
        if result.finish_reason == "stop":
            result.finish_reason = "tool_calls"
    if result.text.startswith(shown) and len(result.text) > len(shown):
        yield result.text[len(shown):]


def emit_pieces(tokens: Iterator[int], decode: Callable[[list[int]], str], eos_token_ids: set[int], stop: list[str],
                result: GenerationResult, started: float, max_tokens: int) -> Iterator[str]:
    """Text pieces from an engine's tokens, filling ``result``: the reply ends at an end-of-turn token ("stop"), at
    a stop string (cut before it, "stop"), after ``max_tokens`` ("length"), or when the tokens end early because
    the engine was asked to stop ("interrupted"). An incomplete multi-byte character waits for its next token."""
    generated: list[int] = []
    emitted = ""
    result.finish_reason = "interrupted"
    for token in tokens:
        if result.first_token_seconds is None:
            result.first_token_seconds = time.perf_counter() - started
        if token in eos_token_ids:
            result.finish_reason = "stop"
            return
        generated.append(token)
        result.tokens_out = len(generated)
        text = decode(generated)
        if not text.endswith("\ufffd"):
            hit = first_stop(text, stop)
            if hit is not None:
                text = text[:hit]
            if len(text) > len(emitted) and text.startswith(emitted):
                piece = text[len(emitted):]
                emitted = text
                result.text = emitted
                yield piece
            if hit is not None:
                result.finish_reason = "stop"
                return
    if len(generated) >= max_tokens:
        result.finish_reason = "length"


def fit_to_context(encode_chat: Callable[[Sequence[Message]], list[int]], messages: Sequence[Message],
                   context_window: int, max_tokens: int) -> tuple[list[int], int]:
    """Token ids of the prompt and how many messages were left out: the oldest turns go (a user turn takes its reply
    with it, the system message stays) until the prompt and ``max_tokens`` fit in ``context_window``."""
    messages = list(messages)
    budget = context_window - max_tokens
    dropped = 0
    while True:
        ids = encode_chat(messages)
        if len(ids) <= budget:
            return ids, dropped
        system = [m for m in messages[:1] if m.get("role") == "system"]
        rest = messages[len(system):]
        if len(rest) <= 1:
            raise ContextLengthError(
                f"the message is {len(ids)} tokens, more than the {budget} that fit in "
                f"{context_window}-token context with max_tokens={max_tokens}; shorten it or lower max_tokens"
            )
        cut = 2 if len(rest) > 2 and rest[0].get("role") == "user" else 1
        messages = system + rest[cut:]
        dropped += cut
