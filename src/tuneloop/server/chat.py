"""``POST /v1/chat/completions``: OpenAI's request and response shapes, streaming as server-sent events."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneloop.conversation.responses import check_metadata
from tuneloop.conversation.stored_completions import NewMessage
from tuneloop.curation import ratings
from tuneloop.generation import GenerationOptions, options_from
from tuneloop.providers.base import GenerationResult, Provider
from tuneloop.serving import APIError, ClientGone, ServerState, collect_text, state_of, unless_gone
from tuneloop.structured import OutputSpec, check_tool_history, response_format_spec, tools_spec

router = APIRouter()

Strict = ConfigDict(strict=True, extra="allow")


class Message(BaseModel):
    model_config = Strict
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = Strict
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The parameters this server acts on. Hints that change nothing in what comes back (service_tier,
    reasoning_effort, verbosity, prompt_cache_key, …) are accepted and ignored; parameters that would
    (``UNSUPPORTED``) are a 400 naming them.

    Logging follows the ``server_log`` setting (see :func:`logged`). ``store: true`` also keeps the completion
    object; ``metadata`` and the end user (``safety_identifier``, else the older ``user``) are kept with the log."""

    model_config = Strict
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, le=16)
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)


def logged(server_log: str, store: bool | None) -> bool:
    """Whether a chat completion goes to the dialogue log. all: unless the request sent store=false; stored: only
    with store=true; none: never, store=true included (nothing is kept)."""
    if server_log == "all":
        return store is not False
    return server_log == "stored" and store is True


def _content_of(message: Message, index: int, images: bool) -> str | list[dict[str, Any]]:
    """Text, or (for a model that sees) the text and image_url parts as they came."""
    if images and isinstance(message.content, list) and any(p.get("type") == "image_url" for p in message.content):
        for j, part in enumerate(message.content):
            if part.get("type") not in ("text", "image_url"):
                where = f"messages[{index}].content[{j}]"
                raise APIError(400, f"{where} has type {part.get('type')!r}; send text and image_url parts",
                               param=where)
        return message.content
    return _text_of(message, index)


def _text_of(message: Message, index: int) -> str:
    content = message.content
    if content is None:
        if message.role == "assistant" and message.tool_calls:
            return ""
        raise APIError(400, f"messages[{index}].content is required", param=f"messages[{index}].content")
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        where = f"messages[{index}].content[{j}]"
        if kind in ("text", "refusal"):
            value = part.get(kind)
            if not isinstance(value, str):
                raise APIError(400, f"{where}.{kind} must be a string", param=f"{where}.{kind}")
            texts.append(value)
        elif kind == "image_url":
            raise APIError(400, f"{where} is an image, but the models this server serves read text only",
                           param=where, code="image_not_supported")
        else:
            raise APIError(400, f"{where} has type {kind!r}; this server accepts text parts only", param=where)
    return "\n".join(texts)


def to_messages(body: ChatCompletionRequest, images: bool = False) -> list[dict[str, Any]]:
    """The conversation as the providers take it: tool calls and tool results kept; each ``tool`` message must
    answer a call an earlier assistant message made."""
    messages = []
    for i, message in enumerate(body.messages):
        if message.role == "function":
            raise APIError(400, f"messages[{i}] has the legacy role 'function'; send the result as a 'tool' message "
                           "answering the call's id", param=f"messages[{i}].role")
        if message.role == "tool" and not message.tool_call_id:
            raise APIError(400, f"messages[{i}].tool_call_id is required for a tool message",
                           param=f"messages[{i}].tool_call_id")
        role = "system" if message.role == "developer" else message.role
        entry: dict[str, Any] = {"role": role, "content": _content_of(message, i, images)}
        if message.tool_calls:
            entry["tool_calls"] = message.tool_calls
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        messages.append(entry)
    check_tool_history(messages)
    return messages


def _check_size(body: ChatCompletionRequest, max_messages: int, max_chars: int) -> None:
    """Refuse, before any work, more messages or longer text than this server takes (server_max_messages,
    server_max_message_chars)."""
    if len(body.messages) > max_messages:
        raise APIError(400, f"messages has {len(body.messages):,} messages; this server takes up to {max_messages:,} "
                       "(TUNELOOP_SERVER_MAX_MESSAGES)", param="messages", code="too_many_messages")
    for i, message in enumerate(body.messages):
        parts = [message.content] if isinstance(message.content, str) else [
            p.get("text") for p in message.content or [] if isinstance(p, dict)]
        size = sum(len(p) for p in parts if isinstance(p, str))
        if size > max_chars:
            raise APIError(400, f"messages[{i}] has {size:,} characters of text; this server takes up to "
                           f"{max_chars:,} per message (TUNELOOP_SERVER_MAX_MESSAGE_CHARS)",
                           param=f"messages[{i}].content", code="message_too_long")


# Parameters that would change what comes back and that this server does not do: a 400 rather than ignored.
UNSUPPORTED = {
    "logit_bias": "logit_bias is not supported",
    "audio": "audio output is not supported: the models this server serves write text",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "the legacy 'functions' parameter is not supported; send 'tools'",
    "function_call": "the legacy 'function_call' parameter is not supported; send 'tool_choice'",
}


def _check_supported(body: ChatCompletionRequest) -> OutputSpec | None:
    """Refuse what this server does not do, naming the parameter; the output spec of what it does."""
    extra = body.model_extra or {}
    for name, why in UNSUPPORTED.items():
        if extra.get(name) not in (None, {}, []):
            raise APIError(400, why, param=name)
    modalities = extra.get("modalities")
    if modalities not in (None, ["text"]):
        raise APIError(400, "modalities: only ['text'] is supported", param="modalities")
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    return tools_spec(body.tools, body.tool_choice, body.parallel_tool_calls,
                      base=response_format_spec(body.response_format))


def _usage(results: list[GenerationResult]) -> dict[str, int]:
    prompt = results[0].tokens_in if results else 0
    completion = sum(r.tokens_out for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(result: GenerationResult) -> str:
    if result.tool_calls:
        return "tool_calls"
    return "length" if result.finish_reason == "length" else "stop"


def _logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """A choice's ``logprobs``: its tokens' entries, or None when they were not asked for."""
    return None if entries is None else {"content": entries, "refusal": None}


def _chunk(ident: str, created: int, model: str, index: int, delta: dict[str, Any], finish: str | None,
           logprobs: list[dict[str, Any]] | None = None, with_usage: bool = False) -> str:
    chunk: dict[str, Any] = {
        "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": index, "delta": delta,
                     "logprobs": _logprobs(logprobs),
                     "finish_reason": finish}],
    }
    if with_usage:
        chunk["usage"] = None
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def request_options(body: ChatCompletionRequest, output: OutputSpec | None, default_max_tokens: int
                    ) -> GenerationOptions:
    """The request's generation options, read once: what travels to the engine or the remote provider."""
    return options_from(max_tokens=body.max_completion_tokens or body.max_tokens,
                        default_max_tokens=default_max_tokens, stop=body.stop, temperature=body.temperature,
                        top_p=body.top_p, seed=body.seed, presence_penalty=body.presence_penalty,
                        frequency_penalty=body.frequency_penalty,
                        logprobs=(body.top_logprobs or 0) if body.logprobs else None, output=output)


@dataclass
class Completion:
    """One chat completion under way: its id, what it logs and keeps, and its choices being generated."""

    body: ChatCompletionRequest
    model: str
    messages: list[dict[str, Any]]
    output: OutputSpec | None
    metadata: dict[str, str] | None
    log: bool
    stored: bool
    ident: str = field(default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}")
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.monotonic)

    def keep(self, state: ServerState, results: list[GenerationResult]) -> None:
        """Log the messages and the first choice (after the reply, in one transaction); store=true also keeps the
        completion."""
        if not self.log:
            return
        result = results[0]
        reply = NewMessage("assistant", result.text, model=self.model, tokens_in=result.tokens_in,
                           tokens_out=result.tokens_out, finish_reason=_finish(result),
                           latency_ms=int((time.monotonic() - self.started) * 1000), tool_calls=result.tool_calls,
                           output_spec=self.output.wire if self.output is not None else None)
        state.stored_completions().keep(_completion(self.ident, self.created, self.model, results, self.metadata),
                                        self.messages, reply, stored=self.stored,
                                        end_user=self.body.safety_identifier or self.body.user)


async def _provider_of(state: ServerState, body: ChatCompletionRequest) -> tuple[Provider, str, list[dict[str, Any]]]:
    """Who answers the request's model, and the conversation as it takes it (images only for a model that sees)."""
    if state.vision is not None and body.model == state.vision.model_id:
        return state.vision, body.model, to_messages(body, images=True)
    messages = to_messages(body)
    provider, model = await run_in_threadpool(state.runtime.resolve, body.model)
    return provider, model, messages


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = state_of(request)
    output = _check_supported(body)
    settings = state.settings
    _check_size(body, settings.server_max_messages, settings.server_max_message_chars)
    log = logged(settings.server_log, body.store)
    metadata = check_metadata(body.metadata)
    if log:
        ratings.rating_of(metadata)
    provider, model, messages = await _provider_of(state, body)
    options = request_options(body, output, settings.max_tokens)
    completion = Completion(body, model, messages, output, metadata, log, stored=log and body.store is True)
    # n choices are n replies decoded together; with a seed, choice i samples with seed + i.
    generations = [state.queue.submit(
        lambda should_stop, i=i: provider.stream(messages, options.for_choice(i), model=model,
                                                 should_stop=should_stop))
        for i in range(body.n or 1)]
    try:
        for generation in generations:
            await unless_gone(request, generation.started(), generation)
    except ClientGone:
        for generation in generations:
            generation.cancel()
        return Response(status_code=499)
    except BaseException:
        for generation in generations:
            generation.cancel()
        raise
    state.stats["chat.completions"] += 1
    if body.stream:
        with_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(generations, completion, with_usage, state),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return await _whole(request, state, generations, completion)


async def _whole(request: Request, state: ServerState, generations: list[Any], completion: Completion) -> Response:
    """The completion in one answer, once every choice is generated (and logged)."""
    results = []
    try:
        for generation in generations:
            text = await collect_text(request, generation)
            if text is None:
                for other in generations:
                    other.cancel()
                return Response(status_code=499)
            assert generation.result is not None
            results.append(generation.result)
    except BaseException:
        for generation in generations:  # one choice failed: the others stop too
            generation.cancel()
        raise
    await run_in_threadpool(completion.keep, state, results)
    return JSONResponse(_completion(completion.ident, completion.created, completion.model, results,
                                    completion.metadata if completion.stored else None))


def _message(result: GenerationResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text if result.text or not result.tool_calls
                               else None, "refusal": None, "annotations": []}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    return message


def _completion(ident: str, created: int, model: str, results: list[GenerationResult],
                metadata: dict[str, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ident, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": i, "finish_reason": _finish(result),
                     "logprobs": _logprobs(result.logprobs),
                     "message": _message(result)} for i, result in enumerate(results)],
        "usage": _usage(results),
    }
    if metadata is not None:
        body["metadata"] = metadata
    return body


async def _choice_events(generation: Any, index: int, ident: str, created: int, model: str,
                         with_usage: bool) -> AsyncIterator[str]:
    """One choice's chunks: its role, its text as it comes (with the log-probabilities of the tokens so far), its
    tool calls whole once the reply ends (the SDK's helpers put them together the same), its finish reason."""
    yield _chunk(ident, created, model, index, {"role": "assistant", "content": ""}, None, with_usage=with_usage)
    sent = 0
    async for piece in generation.pieces():
        result = generation.result_so_far()
        fresh = None
        if result is not None and result.logprobs is not None:
            fresh, sent = result.logprobs[sent:result.tokens_out], max(sent, result.tokens_out)
        yield _chunk(ident, created, model, index, {"content": piece}, None, fresh, with_usage=with_usage)
    result = generation.result
    if result.logprobs is not None and sent < len(result.logprobs):
        yield _chunk(ident, created, model, index, {}, None, result.logprobs[sent:], with_usage=with_usage)
    if result.tool_calls:
        calls = [{"index": i, **call} for i, call in enumerate(result.tool_calls)]
        yield _chunk(ident, created, model, index, {"tool_calls": calls}, None, with_usage=with_usage)
    yield _chunk(ident, created, model, index, {}, _finish(result), with_usage=with_usage)


async def _events(generations: list[Any], completion: Completion, with_usage: bool,
                  state: ServerState) -> AsyncIterator[str]:
    ident, created, model = completion.ident, completion.created, completion.model
    try:
        try:
            for index, generation in enumerate(generations):
                async for event in _choice_events(generation, index, ident, created, model, with_usage):
                    yield event
            results = [g.result for g in generations]
            await run_in_threadpool(completion.keep, state, results)
        except Exception as exc:  # noqa: BLE001 - headers are sent: the error goes in the stream, as OpenAI does
            error = {"error": {"message": f"generation failed: {exc}", "type": "server_error", "param": None,
                               "code": None}}
            yield f"data: {json.dumps(error)}\n\n"
            return
        if with_usage:
            usage_chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": _usage(results)}
            yield f"data: {json.dumps(usage_chunk)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        for generation in generations:
            generation.cancel()  # the client left mid-stream: stop between two tokens
