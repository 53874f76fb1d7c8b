"""The FastAPI application behind ``tuneloop serve``: OpenAI's routes over tuneloop's library."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime
from tuneloop.server import _errors, chat, completions, conversations, files, jobs, logs, responses, tasks
from tuneloop.serving import APIError, key_matches, new_app, served_models, state_of

log = logging.getLogger("tuneloop.server")


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


def install(app: FastAPI) -> FastAPI:
    """OpenAI's routes and error answers on ``app`` (one of :func:`tuneloop.serving.new_app`), guarded by its key."""
    _errors.install(app)
    guarded = [Depends(_authorize)]
    for router in (models_router, chat.router, completions.router, responses.router, conversations.router,
                   files.router, jobs.router, logs.router, tasks.router):
        app.include_router(router, dependencies=guarded)
    return app


def create_app(runtime: Runtime | None = None, *, api_key: str | None = None, max_file_mb: float | None = None,
               vision_model: Path | VisionProvider | None = None) -> FastAPI:
    """The API alone as an ASGI app (``tuneloop.asgi.create_app`` adds the dashboard). ``api_key`` (default:
    ``server_api_key`` in the settings) is required as a Bearer token when set; uploads larger than ``max_file_mb``
    (default ``server_max_file_mb``) are refused; ``vision_model`` (a folder, or a loaded provider) is served under
    the folder's name and accepts images."""
    return install(new_app(runtime, api_key=api_key, max_file_mb=max_file_mb, vision_model=vision_model))
