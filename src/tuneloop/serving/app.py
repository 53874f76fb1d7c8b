"""The application both HTTP shells are mounted on: its state (runtime, key, limits, generation queue), the body
limit, and the watch over long work that a (re)started server takes up again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from tuneloop.config import Settings, load_settings
from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime
from tuneloop.serving.generation import GenerationQueue
from tuneloop.serving.limits import BodyLimit
from tuneloop.serving.state import ServerState

log = logging.getLogger("tuneloop.server")

# A task whose worker died is noticed when it is read; the server reads them this often (or every half
# worker_timeout, if shorter) even when nobody asks.
REFRESH_SECONDS = 30.0


def server_settings(**overrides: Any) -> Settings:
    """The server's settings: it serves the local models (never proxies to OPENAI_BASE_URL, which may be itself)."""
    return load_settings(provider="local", **overrides)


def _recover(state: ServerState) -> None:
    state.fine_tuning.recover()  # first: a job its worker's death fails has its partial model removed
    state.tasks.recover()  # then every other kind


async def _watch_tasks(state: ServerState) -> None:
    every = min(REFRESH_SECONDS, state.settings.worker_timeout / 2)
    while True:  # at start-up first: tasks left running or queued by a server that died are taken up again
        try:
            await run_in_threadpool(_recover, state)
        except Exception:  # noqa: BLE001 - a busy store now must not stop the next look
            log.warning("could not refresh the tasks", exc_info=True)
        await asyncio.sleep(every)


def new_app(runtime: Runtime | None = None, *, api_key: str | None = None, max_file_mb: float | None = None,
            vision_model: Path | VisionProvider | None = None) -> FastAPI:
    """An app with the server's state and nothing mounted yet. ``api_key`` (default: ``server_api_key`` in the
    settings) guards it when set; uploads larger than ``max_file_mb`` (default ``server_max_file_mb``) are refused;
    ``vision_model`` (a folder, or a loaded provider) is served under the folder's name and accepts images."""
    runtime = runtime or Runtime(server_settings())
    settings = runtime.settings
    if api_key is None and settings.server_api_key is not None:
        api_key = settings.server_api_key.get_secret_value()
    limit_mb = max_file_mb if max_file_mb is not None else settings.server_max_file_mb
    if vision_model is not None and not isinstance(vision_model, VisionProvider):
        vision_model = VisionProvider(Path(vision_model))
    state = ServerState(runtime=runtime, api_key=api_key or None, max_file_bytes=int(limit_mb * 1024 * 1024),
                        queue=GenerationQueue(settings.max_batch), vision=vision_model)
    runtime.db.dialogue  # noqa: B018 - open (and migrate) the store before the first request, not in several at once
    state.fine_tuning  # noqa: B018

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(_watch_tasks(state))
        try:
            yield
        finally:
            watcher.cancel()
            state.queue.shutdown()

    app = FastAPI(title="tuneloop", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.tuneloop = state
    app.add_middleware(BodyLimit, limit=int(settings.server_max_body_mb * 1024 * 1024))
    return app
