"""The app ``tuneloop serve`` and ``tuneloop ui`` run: OpenAI's API (:mod:`tuneloop.server`) and the dashboard
(:mod:`tuneloop.web`) on one :func:`tuneloop.serving.new_app`, one process, one store, one key.

>>> from tuneloop.asgi import create_app
>>> app = create_app(runtime, api_key="KEY")   # /v1/… and /ui/
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from tuneloop import server, web
from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime
from tuneloop.serving import new_app


def create_app(runtime: Runtime | None = None, *, api_key: str | None = None, max_file_mb: float | None = None,
               vision_model: Path | VisionProvider | None = None) -> FastAPI:
    """The API and the dashboard (``tuneloop.serving.new_app``'s arguments)."""
    app = new_app(runtime, api_key=api_key, max_file_mb=max_file_mb, vision_model=vision_model)
    server.install(app)
    return web.mount(app)
