"""``/v1/responses``: create (streaming OpenAI's event sequence), retrieve, delete, input items; kept in the dialogue
store (see tuneloop.conversation.responses). ``text.format`` (json_schema, json_object) and function ``tools`` are
enforced by the grammar (see tuneloop.structured); a reply's calls are function_call output items.
``POST /v1/responses/{id}`` (tuneloop's own: OpenAI's responses cannot be changed) replaces a stored response's
metadata, so that a client can rate its reply (see tuneloop.curation.ratings)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneloop.conversation.responses import (
    NewMessage,
    ResponseLog,
    ResponseRequest,
    chat_messages,
    check_metadata,
    function_call_item,
    items_of,
    logged_spec,
    new_item_id,
    new_response_id,
    read_input,
    response_object,
)
from tuneloop.curation import ratings
from tuneloop.server._paging import page
from tuneloop.serving import APIError, ClientGone, collect_text, state_of, unless_gone
from tuneloop.structured import OutputSpec, responses_format, tools_spec

router = APIRouter()


class CreateResponse(BaseModel):
    """The parameters this server acts on; others OpenAI defines (user, service_tier, …) are accepted and
    ignored, and those it cannot honour (tools other than functions, reasoning, background, file inputs…) are a 400
    naming them."""

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
    parallel_tool_calls: bool | None = None
    reasoning: Any = None
    background: bool | None = None
    text: dict[str, Any] | None = None
    prompt: Any = None
    include: list[Any] | None = None
    max_tool_calls: int | None = None


class UpdateResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any] | None = None


def _output(body: CreateResponse) -> OutputSpec | None:
    """What the reply must be: JSON (text.format) or calls of the function tools; a 400 naming what cannot be used."""
    return tools_spec(body.tools, body.tool_choice, body.parallel_tool_calls, base=responses_format(body.text),
                      responses=True)


def _echoed_format(text: dict[str, Any] | None) -> dict[str, Any]:
    """text.format as the response echoes it (checked by responses_format before)."""
    fmt = (text or {}).get("format") or {"type": "text"}
    if fmt.get("type") == "json_schema":
        echoed = {"type": "json_schema", "name": fmt["name"], "schema": fmt.get("schema", {"type": "object"})}
        return {**echoed, **{k: fmt[k] for k in ("description", "strict") if fmt.get(k) is not None}}
    return {"type": fmt.get("type", "text")}


def _echoed_tools(tools: list[Any] | None) -> list[dict[str, Any]]:
    return [{"type": "function", "name": t["name"], "description": t.get("description"),
             "parameters": t.get("parameters") or {"type": "object", "properties": {}}, "strict": t.get("strict")}
            for t in tools or []]


def _check(body: CreateResponse) -> ResponseRequest:
    output = _output(body)
    if body.reasoning not in (None, {}) and body.reasoning != {"effort": None}:
        raise APIError(400, "reasoning is not supported: this server's models do not reason", param="reasoning")
    if body.background:
        raise APIError(400, "background responses are not supported; use stream: true to see progress",
                       param="background")
    if body.prompt is not None:
        raise APIError(400, "prompt templates are not supported; send input and instructions", param="prompt")
    if body.include:
        raise APIError(400, "include is not supported by this server", param="include")
    if body.previous_response_id and body.conversation:
        raise APIError(400, "give previous_response_id or conversation, not both", param="previous_response_id")
    conversation = body.conversation.get("id") if isinstance(body.conversation, dict) else body.conversation
    if body.conversation is not None and not isinstance(conversation, str):
        raise APIError(400, "conversation must be a conversation id or {'id': …}", param="conversation")
    metadata = check_metadata(body.metadata)
    ratings.rating_of(metadata)
    read = read_input(body.input)
    return ResponseRequest(model=body.model, items=[m for m, _ in read], instructions=body.instructions,
                           previous_response_id=body.previous_response_id, conversation=conversation,
                           store=body.store is not False, metadata=metadata,
                           max_output_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p,
                           output=output, text={"format": _echoed_format(body.text)}, tools=_echoed_tools(body.tools),
                           tool_choice=body.tool_choice if body.tool_choice is not None else "auto",
                           parallel_tool_calls=body.parallel_tool_calls is not False,
                           sources=[where for _, where in read])


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
    wanted = _check(body)
    log = _log(request)
    history = await run_in_threadpool(log.history, wanted)
    messages = chat_messages(wanted, history)
    _size_check(request, messages)
    provider, model = await run_in_threadpool(state.runtime.resolve, wanted.model)
    options = wanted.options(state.settings.max_tokens)
    started = time.monotonic()
    generation = state.queue.submit(
        lambda should_stop: provider.stream(messages, options, model=model, should_stop=should_stop))
    ident, created, item_id = new_response_id(), int(time.time()), new_item_id()
    try:
        await unless_gone(request, generation.started(), generation)
    except ClientGone:
        return Response(status_code=499)
    state.stats["responses"] += 1

    def finish(text: str) -> dict[str, Any]:
        """The response for the reply whose shown text is ``text`` (kept and logged): a message item when it has
        text (or calls nothing), then a function_call item per call."""
        result = generation.result
        calls = result.tool_calls
        incomplete = result.finish_reason == "length"
        output = []
        if text or not calls:
            output.append({"type": "message", "id": item_id, "status": "incomplete" if incomplete else "completed",
                           "role": "assistant", "content": [{"type": "output_text", "text": result.text if calls
                                                             else text, "annotations": [], "logprobs": []}]})
        output += [function_call_item(call) for call in calls]
        done = response_object(wanted, ident, created, status="incomplete" if incomplete else "completed",
                               output=output, tokens=(result.tokens_in, result.tokens_out),
                               incomplete="max_output_tokens" if incomplete else None)
        reply = NewMessage("assistant", result.text if calls else text, item_id=item_id, model=model,
                           tokens_in=result.tokens_in, tokens_out=result.tokens_out,
                           finish_reason="tool_calls" if calls else result.finish_reason,
                           latency_ms=int((time.monotonic() - started) * 1000), metadata=wanted.metadata,
                           tool_calls=calls or None, output_spec=logged_spec(wanted.output))
        log.record(wanted, done, reply)
        return done

    if body.stream:
        may_call = wanted.output is not None and wanted.output.calls_tools
        return StreamingResponse(_events(generation, wanted, ident, created, item_id, finish, may_call),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    text = await collect_text(request, generation)
    if text is None:
        return Response(status_code=499)
    return JSONResponse(await run_in_threadpool(finish, text))


def _event(kind: str, sequence: int, **fields: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': sequence, **fields})}\n\n"


async def _events(generation: Any, wanted: ResponseRequest, ident: str, created: int, item_id: str,
                  finish: Any, may_call: bool) -> AsyncIterator[str]:
    """OpenAI's event sequence for one reply, numbered from 0: its message item (text deltas), then for each call
    a function_call item (added with empty arguments, the arguments in one delta, done). A reply that may call
    functions opens its message item only when text comes (one that starts with a call has none)."""
    sequence = iter(range(1_000_000_000))
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}

    def opened() -> list[str]:
        item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
        return [_event("response.output_item.added", next(sequence), output_index=0, item=item),
                _event("response.content_part.added", next(sequence), **at, part=part)]

    try:
        pending = response_object(wanted, ident, created, status="in_progress", output=[])
        yield _event("response.created", next(sequence), response=pending)
        yield _event("response.in_progress", next(sequence), response=pending)
        message = not may_call
        if message:
            for event in opened():
                yield event
        pieces = []
        try:
            async for piece in generation.pieces():
                if not message:
                    message = True
                    for event in opened():
                        yield event
                pieces.append(piece)
                yield _event("response.output_text.delta", next(sequence), **at, delta=piece, logprobs=[])
            done = await run_in_threadpool(finish, "".join(pieces))
        except Exception as exc:  # noqa: BLE001 - headers are sent: the failure is the last event, as OpenAI does
            failed = response_object(wanted, ident, created, status="failed", output=[])
            failed["error"] = {"code": "server_error", "message": f"generation failed: {exc}"}
            yield _event("response.failed", next(sequence), response=failed)
            return
        output = done["output"]
        calls_from = 0
        if output and output[0]["type"] == "message":
            if not message:  # a reply that could have called but wrote nothing
                for event in opened():
                    yield event
            text = output[0]["content"][0]["text"]
            yield _event("response.output_text.done", next(sequence), **at, text=text, logprobs=[])
            yield _event("response.content_part.done", next(sequence), **at, part={**part, "text": text})
            yield _event("response.output_item.done", next(sequence), output_index=0, item=output[0])
            calls_from = 1
        for index, item in enumerate(output[calls_from:], start=calls_from):
            call = {"item_id": item["id"], "output_index": index}
            yield _event("response.output_item.added", next(sequence), output_index=index,
                         item={**item, "arguments": "", "status": "in_progress"})
            yield _event("response.function_call_arguments.delta", next(sequence), **call, delta=item["arguments"])
            yield _event("response.function_call_arguments.done", next(sequence), **call, name=item["name"],
                         arguments=item["arguments"])
            yield _event("response.output_item.done", next(sequence), output_index=index, item=item)
        kind = "response.completed" if done["status"] == "completed" else "response.incomplete"
        yield _event(kind, next(sequence), response=done)
    finally:
        generation.cancel()  # the client left mid-stream: stop between two tokens


@router.get("/v1/responses/{response_id}")
def retrieve_response(response_id: str, request: Request) -> dict[str, Any]:
    return _log(request).response(response_id).body


@router.post("/v1/responses/{response_id}")
def update_response(response_id: str, body: UpdateResponse, request: Request) -> dict[str, Any]:
    return _log(request).rate(response_id, check_metadata(body.metadata))


@router.delete("/v1/responses/{response_id}")
def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    _log(request).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
def list_input_items(response_id: str, request: Request, after: str | None = None,
                     limit: int = Query(default=20, ge=1, le=100),
                     order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    items = [item for m in _log(request).input_items(response_id) for item in items_of(m)]
    return page(items, after, limit, order)
