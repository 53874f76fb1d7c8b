"""Generation off the event loop: up to ``max_batch`` replies at once, the rest first come first served.

Each reply being generated has a worker thread that moves its text pieces to the event loop; the fast local
engine decodes all of them together (``tuneloop.engine.batching``), the reference engine one after the other
in arrival order, a remote provider in parallel. Requests beyond ``max_batch`` wait in a FIFO queue, so they
are served in the order they arrived and none is dropped. The event loop only moves text pieces, so
``GET /v1/models`` and the job routes answer at once while replies are being generated. A request whose client
has gone is skipped (still waiting) or stopped between two tokens (already generating).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import Request

from tuneloop.providers.base import GenerationResult, TextStream

OpenStream = Callable[[Callable[[], bool]], TextStream]


class ClientGone(Exception):
    """The client disconnected before its reply was ready."""


class Generation:
    """One queued or running reply; its events cross from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.result: GenerationResult | None = None
        self._live: GenerationResult | None = None  # filled in while it streams (set once the stream is open)

    def cancel(self) -> None:
        self._cancelled.set()

    def result_so_far(self) -> GenerationResult | None:
        """What the reply has produced so far (its log-probabilities, its token count); None before it starts."""
        return self._live

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _put(self, kind: str, value: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is shutting down
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))

    def _run(self, open_stream: OpenStream) -> None:
        if self.cancelled:
            self._put("error", ClientGone())
            return
        try:
            stream = open_stream(self._cancelled.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the request, which answers it
            self._put("error", exc)
            return
        self._live = stream.result
        self._put("started")
        try:
            for piece in stream:
                self._put("piece", piece)
            self._put("done", stream.result)
        except BaseException as exc:  # noqa: BLE001
            self._put("error", exc)
        finally:
            stream.close()

    async def started(self) -> None:
        """Wait for this reply's turn; raises what opening the stream raised (unknown model, too long…)."""
        kind, value = await self._events.get()
        if kind == "error":
            raise value
        assert kind == "started", kind

    async def pieces(self) -> AsyncIterator[str]:
        while True:
            kind, value = await self._events.get()
            if kind == "piece":
                yield value
            elif kind == "done":
                self.result = value
                return
            else:
                raise value


class GenerationQueue:
    """Up to ``workers`` replies generated at once, the others waiting first come first served. ``submitted`` and
    ``finished`` count them and ``last`` is the last one finished (what it generated, stopped or not), for health
    checks and tests."""

    def __init__(self, workers: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tuneloop-generate")
        self._count = threading.Lock()
        self.submitted = 0
        self.finished = 0
        self.last: GenerationResult | None = None

    def submit(self, open_stream: OpenStream) -> Generation:
        generation = Generation(asyncio.get_running_loop())
        self.submitted += 1  # on the event loop's thread only
        self._executor.submit(self._run, generation, open_stream)
        return generation

    def _run(self, generation: Generation, open_stream: OpenStream) -> None:
        opened: list[TextStream] = []  # the stream, once opening it succeeded

        def tracked(should_stop: Callable[[], bool]) -> TextStream:
            opened.append(open_stream(should_stop))
            return opened[0]

        try:
            generation._run(tracked)
        finally:
            with self._count:
                self.last = opened[0].result if opened else None
                self.finished += 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def unless_gone(request: Request, awaitable: Any, generation: Generation, every: float = 0.25) -> Any:
    """Await ``awaitable``, but give up (and cancel the generation) if the client disconnects meanwhile."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            if await request.is_disconnected():
                generation.cancel()
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def collect_text(request: Request, generation: Generation) -> str | None:
    """The whole reply, or None when the client disconnected first (the generation is then cancelled)."""

    async def collect() -> str:
        return "".join([piece async for piece in generation.pieces()])

    try:
        return await unless_gone(request, collect(), generation)
    except ClientGone:
        return None
