"""How much one request may carry: a body limit for every route but uploads (which have their own, in files.py).

A body over ``server_max_body_mb`` is answered 413 in OpenAI's error shape before the application sees it:
at once when its Content-Length says so, otherwise as soon as the bytes read pass the limit. Limits on what a
chat request holds (messages, characters) are checked in chat.py; on images, in tuneloop.providers.images.
"""

from __future__ import annotations

import json
from typing import Any

from tuneloop.serving.errors import error_body

Scope = dict[str, Any]


class BodyLimit:
    """Pure ASGI middleware: reads a request's body (up to ``limit`` bytes), then hands it to the app whole."""

    def __init__(self, app: Any, limit: int, exempt: tuple[str, ...] = ("/v1/files",)) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(send, size)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, size: int) -> None:
        data = json.dumps(error_body(
            f"the request body is {'at least ' if size else ''}{size:,} bytes, more than this server's limit of "
            f"{self.limit:,} bytes (TUNELOOP_SERVER_MAX_BODY_MB)", "invalid_request_error",
            code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
