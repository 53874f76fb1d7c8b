"""The playground: chat with a served model, or two side by side, each exchange logged as any chat is (a thread per
conversation and model, through ``ChatSession``) and rated from the page.

The form posts to ``/ui/playground`` and answers with the page and the whole reply (no script needed); the page's
script posts the same form to ``/ui/playground/send`` instead and reads the replies as server-sent events, one JSON
object per event: ``{"side": 0, "type": "piece", "text": …}``, then ``done`` (the logged message and thread) or
``error`` (one line), and at the end ``{"type": "end"}``. Generation goes through the server's queue; a client that
goes away (the Stop button aborts its fetch) cancels it between two tokens, and what was said so far is logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response, StreamingResponse

from tuneloop.conversation.chat import ChatSession, Reply, ReplyStream
from tuneloop.curation.log import Message
from tuneloop.errors import TuneloopError
from tuneloop.serving import ClientGone, Generation, ServerState, collect_text, served_models, state_of, unless_gone
from tuneloop.web._pages import PageError, posted, render, whole_number

log = logging.getLogger("tuneloop.web")
router = APIRouter()
ROUTERS = [router]
MAX_REPLY_TOKENS = 4096
MAX_MESSAGE_CHARS = 20_000


@dataclass
class Side:
    """One column of the playground: a model and its thread (None until the first exchange)."""

    model: str
    thread_id: str | None
    messages: list[Message] = field(default_factory=list)
    message_id: int | None = None
    error: str | None = None


@dataclass
class Ask:
    text: str
    system: str | None
    max_tokens: int
    sides: list[Side]


def _models(state: ServerState) -> list[str]:
    return [m["id"] for m in served_models(state.runtime)]


def _thread_of(store: Any, thread_id: str | None, model: str) -> str | None:
    """``thread_id`` when it is a chat thread of ``model`` (a model changed in the page starts a new one; an app's
    conversations, response chains, stored completions and server traffic are never continued from here)."""
    if not thread_id:
        return None
    try:
        thread = store.get_thread(thread_id)
    except TuneloopError:
        return None
    return thread.id if thread.model == model and thread.kind is None else None


def _number(value: str, default: int) -> int:
    value = value.strip()
    if not value:
        return default
    return whole_number(value, "max tokens", 1, MAX_REPLY_TOKENS)


def _read(state: ServerState, form: FormData, need_text: bool) -> Ask:
    """The form's question; a PageError names what cannot be used."""
    get = lambda name: str(form.get(name) or "")  # noqa: E731
    offered = _models(state)
    sides = []
    for name, thread in (("model", "thread_a"), ("compare", "thread_b")):
        model = get(name).strip()
        if not model:
            if name == "model":
                raise PageError("choose a model to chat with")
            continue
        if model not in offered:
            raise PageError(f"the model {model!r} is not served here; choose one from the list")
        sides.append(Side(model, _thread_of(state.runtime.db.dialogue, get(thread).strip(), model)))
    text = get("message")
    if need_text and not text.strip():
        raise PageError("the message is empty; type something to send")
    if len(text) > MAX_MESSAGE_CHARS:
        raise PageError(f"the message has {len(text):,} characters; keep it under {MAX_MESSAGE_CHARS:,}")
    return Ask(text, get("system").strip() or None, _number(get("max_tokens"), min(256, state.settings.max_tokens)),
               sides)


class _Logged:
    """A ChatSession's reply stream in the shape the server's queue runs (pieces, ``result``, ``close``); the
    exchange is logged when it ends or is stopped."""

    def __init__(self, stream: ReplyStream) -> None:
        self.stream = stream
        self._pieces: Iterator[str] = iter(stream)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    @property
    def result(self) -> Any:
        return self.stream.reply.result if self.stream.reply is not None else None

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    @property
    def reply(self) -> Reply | None:
        return self.stream.reply


def _submit(state: ServerState, ask: Ask, side: Side) -> tuple[Generation, list[_Logged]]:
    opened: list[_Logged] = []

    def open_stream(should_stop: Any) -> _Logged:
        session = ChatSession(state.runtime, model=side.model, thread_id=side.thread_id)
        opened.append(_Logged(session.stream(ask.text, system_instruction=ask.system, max_tokens=ask.max_tokens,
                                             should_stop=should_stop)))
        return opened[0]

    return state.queue.submit(open_stream), opened


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, TuneloopError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.warning("playground generation failed", exc_info=exc)
    return f"generation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _page(request: Request, ask: Ask | None, *, error: str | None = None, status: int = 200) -> Response:
    state = state_of(request)
    store = state.runtime.db.dialogue
    sides = ask.sides if ask else []
    for side in sides:
        if side.thread_id:
            side.messages = [m for m in store.messages(side.thread_id) if m.role in ("user", "assistant")]
    models = _models(state)
    return render(request, "playground.html", status=status, models=models, ask=ask, sides=sides, error=error,
                  chosen=sides[0].model if sides else models[0] if models else "",
                  compare=sides[1].model if len(sides) > 1 else "",
                  default_tokens=min(256, state.settings.max_tokens), max_reply_tokens=MAX_REPLY_TOKENS)


@router.get("/playground")
def playground(request: Request) -> Response:
    state = state_of(request)
    params = request.query_params
    offered = _models(state)
    sides = []
    for name, thread in (("model", "thread_a"), ("compare", "thread_b")):
        model = params.get(name, "")
        if model in offered:
            sides.append(Side(model, _thread_of(state.runtime.db.dialogue, params.get(thread), model)))
    return _page(request, Ask("", None, 0, sides) if sides else None)


@router.post("/playground")
async def send_form(request: Request) -> Response:
    """The page without a script: the whole replies, then the page with the conversations."""
    form = await posted(request)
    state = state_of(request)
    try:
        ask = await run_in_threadpool(_read, state, form, True)
    except PageError as exc:
        return await run_in_threadpool(_page, request, None, error=str(exc), status=exc.status)
    running = [_submit(state, ask, side) for side in ask.sides]
    try:
        for side, (generation, opened) in zip(ask.sides, running, strict=True):
            try:
                await unless_gone(request, generation.started(), generation)
                if await collect_text(request, generation) is None:
                    raise ClientGone
            except ClientGone:
                raise
            except Exception as exc:  # noqa: BLE001 - one line on the page
                side.error = _one_line(exc)
                continue
            reply = opened[0].reply if opened else None
            if reply is not None:
                side.thread_id, side.message_id = reply.thread_id, reply.exchange.assistant.id
    except ClientGone:
        return Response(status_code=499)
    finally:
        for generation, _ in running:
            generation.cancel()
    return await run_in_threadpool(_page, request, ask)


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _side_events(index: int, side: Side, generation: Generation, opened: list[_Logged],
                       out: asyncio.Queue[dict[str, Any] | None]) -> None:
    try:
        await generation.started()
        await out.put({"side": index, "type": "start", "model": side.model})
        async for piece in generation.pieces():
            await out.put({"side": index, "type": "piece", "text": piece})
        reply = opened[0].reply if opened else None
        if reply is None:
            await out.put({"side": index, "type": "error", "message": "the reply was not logged"})
        else:
            await out.put({"side": index, "type": "done", "thread_id": reply.thread_id,
                           "message_id": reply.exchange.assistant.id, "finish_reason": reply.result.finish_reason,
                           "model": side.model})
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the headers are sent: the error goes in the stream, one line
        await out.put({"side": index, "type": "error", "message": _one_line(exc)})
    finally:
        await out.put(None)


async def _stream(ask: Ask, running: list[tuple[Generation, list[_Logged]]]) -> AsyncIterator[str]:
    out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    tasks = [asyncio.ensure_future(_side_events(i, side, generation, opened, out))
             for i, (side, (generation, opened)) in enumerate(zip(ask.sides, running, strict=True))]
    try:
        left = len(tasks)
        while left:
            event = await out.get()
            if event is None:
                left -= 1
                continue
            yield _event(event)
        yield _event({"type": "end"})
    finally:
        # The client went away (Stop) or the stream ended: any reply still going stops between two tokens.
        for generation, _ in running:
            generation.cancel()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@router.post("/playground/send")
async def send_stream(request: Request) -> Response:
    """The page's script: the replies as they are generated (server-sent events)."""
    form = await posted(request)
    state = state_of(request)
    try:
        ask = await run_in_threadpool(_read, state, form, True)
    except PageError as exc:
        return StreamingResponse(iter([_event({"type": "error", "message": str(exc)}), _event({"type": "end"})]),
                                 status_code=exc.status, media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})
    running = [_submit(state, ask, side) for side in ask.sides]
    return StreamingResponse(_stream(ask, running), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
