"""``POST /v1/chat/completions``: OpenAI's request and response shapes, streaming as server-sent events."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneloop import ratings
from tuneloop.errors import InputError
from tuneloop.providers.base import GenerationResult
from tuneloop.responses import check_metadata
from tuneloop.server._errors import APIError
from tuneloop.server._generation import ClientGone, collect_text, unless_gone
from tuneloop.server._state import state_of
from tuneloop.store.conversations import NewMessage

router = APIRouter()

Strict = ConfigDict(strict=True, extra="allow")


class Message(BaseModel):
    model_config = Strict
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = Strict
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The parameters this server acts on; others OpenAI defines (service_tier, …) are accepted and ignored.

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
    n: int | None = Field(default=None, ge=1, le=128)
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
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
        if message.role == "assistant":
            raise APIError(400, f"messages[{index}] has no content; tool calls are not supported by this server",
                           param=f"messages[{index}].content")
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
    messages = []
    for i, message in enumerate(body.messages):
        if message.role in ("tool", "function"):
            raise APIError(400, f"messages[{i}] has role {message.role!r}; this server's models do not call tools",
                           param=f"messages[{i}].role")
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": _content_of(message, i, images)})
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


def _check_supported(body: ChatCompletionRequest) -> None:
    if body.n not in (None, 1):
        raise APIError(400, "n must be 1: this server generates one choice per request", param="n")
    if body.tools:
        raise APIError(400, "tools are not supported: this server's models do not call tools", param="tools")
    if body.logprobs:
        raise APIError(400, "logprobs are not supported by this server", param="logprobs")
    if body.response_format is not None and body.response_format.get("type") not in (None, "text"):
        raise APIError(400, "response_format: only {'type': 'text'} is supported; the local model cannot be "
                       "constrained to JSON", param="response_format")
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    if len(stops) > 4:
        raise APIError(400, "stop: give up to 4 sequences", param="stop")


def _usage(result: GenerationResult) -> dict[str, int]:
    return {"prompt_tokens": result.tokens_in, "completion_tokens": result.tokens_out,
            "total_tokens": result.tokens_in + result.tokens_out}


def _finish(result: GenerationResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _chunk(ident: str, created: int, model: str, delta: dict[str, Any], finish: str | None,
           usage: Any = None, with_usage: bool = False) -> str:
    chunk: dict[str, Any] = {
        "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        chunk["usage"] = usage
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = state_of(request)
    _check_supported(body)
    settings = state_of(request).settings
    _check_size(body, settings.server_max_messages, settings.server_max_message_chars)
    log = logged(settings.server_log, body.store)
    stored = log and body.store is True
    try:
        metadata = check_metadata(body.metadata)
        if log:
            ratings.rating_of(metadata)
    except InputError as exc:
        raise APIError(400, str(exc), param="metadata") from None
    if state.vision is not None and body.model == state.vision.model_id:
        messages = to_messages(body, images=True)
        provider, model = state.vision, body.model
    else:
        messages = to_messages(body)
        provider, model = await run_in_threadpool(state.runtime.resolve, body.model)
    stop = [body.stop] if isinstance(body.stop, str) else [s for s in body.stop or [] if s]
    options = {
        "temperature": body.temperature if body.temperature is not None else 0.0,
        "top_p": body.top_p,
        "max_tokens": body.max_completion_tokens or body.max_tokens or state.settings.max_tokens,
        "stop": stop or None,
    }
    generation = state.queue.submit(
        lambda should_stop: provider.stream(messages, model=model, should_stop=should_stop, **options)
    )
    ident = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    started = time.monotonic()

    def keep(text: str) -> None:
        """Log the messages and the reply (after the reply, in one transaction); store=true also keeps the
        completion."""
        if not log:
            return
        result = generation.result
        reply = NewMessage("assistant", text, model=model, tokens_in=result.tokens_in, tokens_out=result.tokens_out,
                           finish_reason=result.finish_reason, latency_ms=int((time.monotonic() - started) * 1000))
        state.stored_completions().keep(_completion(ident, created, model, text, result, metadata), messages, reply,
                                        stored=stored, end_user=body.safety_identifier or body.user)

    try:
        await unless_gone(request, generation.started(), generation)
    except ClientGone:
        return Response(status_code=499)
    state.stats["chat.completions"] += 1
    if body.stream:
        with_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(generation, ident, created, model, with_usage, keep),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    text = await collect_text(request, generation)
    if text is None:
        return Response(status_code=499)
    result = generation.result
    assert result is not None
    await run_in_threadpool(keep, text)
    return JSONResponse(_completion(ident, created, model, text, result, metadata if stored else None))


def _completion(ident: str, created: int, model: str, text: str, result: GenerationResult,
                metadata: dict[str, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ident, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "finish_reason": _finish(result), "logprobs": None,
                     "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []}}],
        "usage": _usage(result),
    }
    if metadata is not None:
        body["metadata"] = metadata
    return body


async def _events(generation: Any, ident: str, created: int, model: str, with_usage: bool,
                  keep: Any) -> AsyncIterator[str]:
    try:
        yield _chunk(ident, created, model, {"role": "assistant", "content": ""}, None, with_usage=with_usage)
        pieces = []
        try:
            async for piece in generation.pieces():
                pieces.append(piece)
                yield _chunk(ident, created, model, {"content": piece}, None, with_usage=with_usage)
            await run_in_threadpool(keep, "".join(pieces))
        except Exception as exc:  # noqa: BLE001 - headers are sent: the error goes in the stream, as OpenAI does
            error = {"error": {"message": f"generation failed: {exc}", "type": "server_error", "param": None,
                               "code": None}}
            yield f"data: {json.dumps(error)}\n\n"
            return
        result = generation.result
        yield _chunk(ident, created, model, {}, _finish(result), with_usage=with_usage)
        if with_usage:
            usage_chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": _usage(result)}
            yield f"data: {json.dumps(usage_chunk)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        generation.cancel()  # the client left mid-stream: stop between two tokens
