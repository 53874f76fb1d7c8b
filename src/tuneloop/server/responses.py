"""``/v1/responses``: create (streaming OpenAI's event sequence), retrieve, delete, input items; kept in the dialogue
store (see tuneloop.responses). ``POST /v1/responses/{id}`` (tuneloop's own: OpenAI's responses cannot be changed)
replaces a stored response's metadata, so that a client can rate its reply (see tuneloop.ratings)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneloop import ratings
from tuneloop.errors import InputError
from tuneloop.responses import (
    Invalid,
    ResponseLog,
    ResponseRequest,
    check_metadata,
    message_item,
    new_response_id,
    read_items,
    response_object,
)
from tuneloop.server._errors import APIError
from tuneloop.server._generation import ClientGone, collect_text, unless_gone
from tuneloop.server._paging import page
from tuneloop.server._state import state_of
from tuneloop.store.conversations import NewMessage, new_item_id

router = APIRouter()


class CreateResponse(BaseModel):
    """The parameters this server acts on; others OpenAI defines (user, service_tier, …) are accepted and
    ignored, and those it cannot honour (tools, reasoning, background, file inputs…) are a 400 naming them."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[Any]
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    store: bool | None = True
    metadata: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = False
    tools: list[Any] | None = None
    tool_choice: Any = None
    reasoning: Any = None
    background: bool | None = None
    text: dict[str, Any] | None = None
    prompt: Any = None
    include: list[Any] | None = None
    max_tool_calls: int | None = None


class UpdateResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any] | None = None


def _check(body: CreateResponse) -> ResponseRequest:
    if body.tools:
        raise APIError(400, "tools are not supported: this server's models do not call tools", param="tools")
    if body.tool_choice not in (None, "none", "auto"):
        raise APIError(400, "tool_choice: this server's models do not call tools", param="tool_choice")
    if body.reasoning not in (None, {}) and body.reasoning != {"effort": None}:
        raise APIError(400, "reasoning is not supported: this server's models do not reason", param="reasoning")
    if body.background:
        raise APIError(400, "background responses are not supported; use stream: true to see progress",
                       param="background")
    if body.prompt is not None:
        raise APIError(400, "prompt templates are not supported; send input and instructions", param="prompt")
    if body.include:
        raise APIError(400, "include is not supported by this server", param="include")
    fmt = (body.text or {}).get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") != "text":
        raise APIError(400, "text.format: only {'type': 'text'} is supported; the local model cannot be constrained "
                       "to JSON", param="text.format")
    if body.previous_response_id and body.conversation:
        raise APIError(400, "give previous_response_id or conversation, not both", param="previous_response_id")
    conversation = body.conversation.get("id") if isinstance(body.conversation, dict) else body.conversation
    if body.conversation is not None and not isinstance(conversation, str):
        raise APIError(400, "conversation must be a conversation id or {'id': …}", param="conversation")
    metadata = check_metadata(body.metadata)
    try:
        ratings.rating_of(metadata)
    except InputError as exc:
        raise APIError(400, str(exc), param="metadata") from None
    return ResponseRequest(model=body.model, items=read_items(body.input), instructions=body.instructions,
                           previous_response_id=body.previous_response_id, conversation=conversation,
                           store=body.store is not False, metadata=metadata,
                           max_output_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p)


def _log(request: Request) -> ResponseLog:
    return state_of(request).response_log()


def _size_check(request: Request, messages: list[dict[str, Any]]) -> None:
    settings = state_of(request).settings
    if len(messages) > settings.server_max_messages:
        raise APIError(400, f"input and history hold {len(messages):,} messages; this server takes up to "
                       f"{settings.server_max_messages:,} (TUNELOOP_SERVER_MAX_MESSAGES)", param="input",
                       code="too_many_messages")
    for i, message in enumerate(messages):
        if len(message["content"]) > settings.server_max_message_chars:
            raise APIError(400, f"message {i} has {len(message['content']):,} characters; this server takes up to "
                           f"{settings.server_max_message_chars:,} (TUNELOOP_SERVER_MAX_MESSAGE_CHARS)",
                           param="input", code="message_too_long")


@router.post("/v1/responses", response_model=None)
async def create_response(body: CreateResponse, request: Request) -> Response:
    state = state_of(request)
    try:
        wanted = _check(body)
        log = _log(request)
        history = await run_in_threadpool(log.history, wanted)
    except Invalid as exc:
        raise APIError(400, str(exc), param=exc.param) from None
    messages = ([{"role": "system", "content": wanted.instructions}] if wanted.instructions else []) + history + [
        {"role": m.role if m.role != "developer" else "system", "content": m.content} for m in wanted.items]
    _size_check(request, messages)
    provider, model = await run_in_threadpool(state.runtime.resolve, wanted.model)
    options = {"temperature": wanted.temperature or 0.0, "top_p": wanted.top_p,
               "max_tokens": wanted.max_output_tokens or state.settings.max_tokens}
    started = time.monotonic()
    generation = state.queue.submit(
        lambda should_stop: provider.stream(messages, model=model, should_stop=should_stop, **options))
    ident, created, item_id = new_response_id(), int(time.time()), new_item_id()
    try:
        await unless_gone(request, generation.started(), generation)
    except ClientGone:
        return Response(status_code=499)
    state.stats["responses"] += 1

    def finish(text: str) -> dict[str, Any]:
        result = generation.result
        incomplete = result.finish_reason == "length"
        item = {"type": "message", "id": item_id, "status": "incomplete" if incomplete else "completed",
                "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": [],
                                                  "logprobs": []}]}
        done = response_object(wanted, ident, created, status="incomplete" if incomplete else "completed",
                               output=[item], tokens=(result.tokens_in, result.tokens_out),
                               incomplete="max_output_tokens" if incomplete else None)
        reply = NewMessage("assistant", text, item_id=item_id, model=model, tokens_in=result.tokens_in,
                           tokens_out=result.tokens_out, finish_reason=result.finish_reason,
                           latency_ms=int((time.monotonic() - started) * 1000), metadata=wanted.metadata)
        log.record(wanted, done, reply)
        return done

    if body.stream:
        return StreamingResponse(_events(generation, wanted, ident, created, item_id, finish),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    text = await collect_text(request, generation)
    if text is None:
        return Response(status_code=499)
    return JSONResponse(await run_in_threadpool(finish, text))


def _event(kind: str, sequence: int, **fields: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': sequence, **fields})}\n\n"


async def _events(generation: Any, wanted: ResponseRequest, ident: str, created: int, item_id: str,
                  finish: Any) -> AsyncIterator[str]:
    """OpenAI's event sequence for one text reply, numbered from 0."""
    sequence = iter(range(1_000_000_000))
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    try:
        pending = response_object(wanted, ident, created, status="in_progress", output=[])
        yield _event("response.created", next(sequence), response=pending)
        yield _event("response.in_progress", next(sequence), response=pending)
        item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
        yield _event("response.output_item.added", next(sequence), output_index=0, item=item)
        part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield _event("response.content_part.added", next(sequence), **at, part=part)
        pieces = []
        try:
            async for piece in generation.pieces():
                pieces.append(piece)
                yield _event("response.output_text.delta", next(sequence), **at, delta=piece, logprobs=[])
            text = "".join(pieces)
            done = await run_in_threadpool(finish, text)
        except Exception as exc:  # noqa: BLE001 - headers are sent: the failure is the last event, as OpenAI does
            failed = response_object(wanted, ident, created, status="failed", output=[])
            failed["error"] = {"code": "server_error", "message": f"generation failed: {exc}"}
            yield _event("response.failed", next(sequence), response=failed)
            return
        yield _event("response.output_text.done", next(sequence), **at, text=text, logprobs=[])
        yield _event("response.content_part.done", next(sequence), **at, part={**part, "text": text})
        yield _event("response.output_item.done", next(sequence), output_index=0, item=done["output"][0])
        kind = "response.completed" if done["status"] == "completed" else "response.incomplete"
        yield _event(kind, next(sequence), response=done)
    finally:
        generation.cancel()  # the client left mid-stream: stop between two tokens


@router.get("/v1/responses/{response_id}")
def retrieve_response(response_id: str, request: Request) -> dict[str, Any]:
    return _log(request).response(response_id).body


@router.post("/v1/responses/{response_id}")
def update_response(response_id: str, body: UpdateResponse, request: Request) -> dict[str, Any]:
    try:
        return _log(request).rate(response_id, check_metadata(body.metadata))
    except Invalid as exc:
        raise APIError(400, str(exc), param=exc.param) from None


@router.delete("/v1/responses/{response_id}")
def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    _log(request).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
def list_input_items(response_id: str, request: Request, after: str | None = None,
                     limit: int = Query(default=20, ge=1, le=100),
                     order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    items = [message_item(m) for m in _log(request).input_items(response_id)]
    return page(items, after, limit, order)
