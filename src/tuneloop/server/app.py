"""The FastAPI application behind ``tuneloop serve``: OpenAI's routes over tuneloop's library."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from tuneloop.config import Settings, load_settings
from tuneloop.engine.weights import BASE_MODEL_ID
from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime
from tuneloop.server import _errors, chat, completions, conversations, files, jobs, logs, responses
from tuneloop.server._errors import APIError
from tuneloop.server._generation import GenerationQueue
from tuneloop.server._state import ServerState, state_of
from tuneloop.server.limits import BodyLimit
from tuneloop.store.jobs import JobStore

log = logging.getLogger("tuneloop.server")

# SmolLM2-135M-Instruct's release (2024-11-01), the base model's "created" time.
BASE_CREATED = 1730419200
# A job whose worker died is noticed when it is read; the server reads them this often (or every half
# worker_timeout, if shorter) even when nobody asks.
REFRESH_SECONDS = 30.0


def server_settings(**overrides: Any) -> Settings:
    """The server's settings: it serves the local models (never proxies to OPENAI_BASE_URL, which may be itself)."""
    return load_settings(provider="local", **overrides)


def key_matches(given: str, key: str) -> bool:
    """Whether ``given`` is the server's ``key``. Digests have one length, so the comparison takes the same time
    whatever was sent."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(key.encode()).digest())


def _authorize(request: Request) -> None:
    key = state_of(request).api_key
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise APIError(401, "You didn't provide an API key. Send it as the header 'Authorization: Bearer KEY' "
                       "(the openai SDK's api_key does this)", code="missing_api_key")
    if not key_matches(given.strip(), key):
        raise APIError(401, "Incorrect API key provided; use the key the server was started with",
                       code="invalid_api_key")


models_router = APIRouter()


def _model(model_id: str, created: int, owned_by: str, images: bool = False) -> dict[str, Any]:
    # input_modalities (beyond OpenAI's fields, which allow more): what the model takes, so that a client knows
    # before it sends an image; tuneloop's own openai provider reads it.
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by,
            "input_modalities": ["text", "image"] if images else ["text"]}


def _ts(when: datetime | None) -> int:
    return int(when.timestamp()) if when else BASE_CREATED


def served_models(runtime: Runtime, vision: VisionProvider | None = None) -> list[dict[str, Any]]:
    """The base models (bundled, then registered), the vision model if any, then every fine-tuned model (and
    checkpoint) whose job succeeded, oldest first."""
    store = JobStore(runtime.store)
    servable = runtime.fine_tuned_models()
    out = [_model(BASE_MODEL_ID, BASE_CREATED, "HuggingFaceTB")]
    out.extend(_model(m.id, _ts(m.added_at), "user") for m in runtime.registry.all() if not m.bundled)
    if vision is not None:
        out.append(_model(vision.model_id, vision.created, "user", images=True))
    for job in store.succeeded_models("local"):
        if job.fine_tuned_model in servable:
            out.append(_model(job.fine_tuned_model, _ts(job.finished_at or job.created_at), "user"))
        out.extend(_model(c.fine_tuned_model_checkpoint, _ts(c.created_at), "user")
                   for c in reversed(store.checkpoints(job.id)) if c.fine_tuned_model_checkpoint in servable)
    return out


@models_router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    state = state_of(request)
    return {"object": "list", "data": served_models(state.runtime, state.vision)}


@models_router.get("/v1/models/{model_id}")
def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    state = state_of(request)
    for model in served_models(state.runtime, state.vision):
        if model["id"] == model_id:
            return model
    raise APIError(404, f"The model {model_id!r} does not exist on this server; GET /v1/models lists those it "
                   "serves", param="model", code="model_not_found")


async def _watch_jobs(state: ServerState) -> None:
    every = min(REFRESH_SECONDS, state.settings.worker_timeout / 2)
    while True:  # at start-up first: jobs left running or queued by a server that died are taken up again
        try:
            await run_in_threadpool(state.fine_tuning.recover)
        except Exception:  # noqa: BLE001 - a busy store now must not stop the next look
            log.warning("could not refresh the fine-tuning jobs", exc_info=True)
        await asyncio.sleep(every)


def create_app(runtime: Runtime | None = None, *, api_key: str | None = None, max_file_mb: float | None = None,
               vision_model: Path | VisionProvider | None = None) -> FastAPI:
    """The server as an ASGI app. ``api_key`` (default: ``server_api_key`` in the settings) is required as a
    Bearer token when set; uploads larger than ``max_file_mb`` (default ``server_max_file_mb``) are refused;
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
    runtime.store  # noqa: B018 - open (and migrate) the store before the first request, not in several at once
    state.fine_tuning  # noqa: B018

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(_watch_jobs(state))
        try:
            yield
        finally:
            watcher.cancel()
            state.queue.shutdown()

    app = FastAPI(title="tuneloop", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.tuneloop = state
    _errors.install(app)
    app.add_middleware(BodyLimit, limit=int(settings.server_max_body_mb * 1024 * 1024))
    guarded = [Depends(_authorize)]
    for router in (models_router, chat.router, completions.router, responses.router, conversations.router,
                   files.router, jobs.router, logs.router):
        app.include_router(router, dependencies=guarded)
    return app
