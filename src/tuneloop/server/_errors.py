"""OpenAI's error shape for every failure of the API: library errors through the one mapping
(:mod:`tuneloop.serving.errors`), request validation errors, unknown URLs and methods. Anything unexpected is logged
with its traceback and answered with a 500 that says where to look; it never leaks a traceback (or a key) to the
client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.errors import TuneloopError
from tuneloop.serving.errors import APIError, error_body, from_library

log = logging.getLogger("tuneloop.server")


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "is-instance", "model-fields"}


def _is_union_tag(part: Any) -> bool:
    """pydantic names the member of a union it tried (``str``, ``list[dict[str,any]]``); the client never wrote it."""
    return isinstance(part, str) and (part in _TYPE_TAGS or not part.isidentifier())


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if _is_union_tag(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(exc: RequestValidationError) -> APIError:
    problems: dict[str, str] = {}
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            problems.setdefault("", "the body is not valid JSON")
            continue
        loc = tuple(error.get("loc", ()))
        where = _loc(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
        if error.get("type") == "missing":
            problems.setdefault(where, f"{where} is required")
        else:
            problems.setdefault(where, f"{where or 'body'}: {error.get('msg')}")
    if not problems:
        return APIError(400, "Invalid request body")
    param = next((where for where in problems if where), None)
    return APIError(400, "Invalid request: " + "; ".join(list(problems.values())[:5]), param=param)


def served(app: FastAPI) -> str:
    """The API roots the app serves (``/v1/chat/completions``, ``/v1/conversations``…), read from its own routes
    so that the unknown-URL answer cannot go stale: each ``/v1/`` path up to its first parameter, less those below
    another root (``/v1/chat/completions/{completion_id}/messages`` is under ``/v1/chat/completions``). The routes
    come from the app's OpenAPI description (built once, then kept by FastAPI), its public list of every route."""
    paths = app.openapi().get("paths", {})
    roots = {path.split("/{", 1)[0].rstrip("/") for path in paths if path.startswith("/v1/")}
    kept = sorted(r for r in roots if not any(r.startswith(other + "/") for other in roots))
    if not kept:
        return "no /v1 routes"
    return ", ".join(kept[:-1]) + " and " + kept[-1] if len(kept) > 1 else kept[0]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status,
                            headers=headers)

    @app.exception_handler(TuneloopError)
    async def _library_error(request: Request, exc: TuneloopError) -> JSONResponse:
        answer = from_library(exc)
        if answer.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return await _api_error(request, answer)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await _api_error(request, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown request URL: {request.method} {request.url.path}; this server serves " \
                      f"{served(request.app)}"
            return JSONResponse(error_body(message, "invalid_request_error", code="unknown_url"), status_code=404)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            return JSONResponse(error_body(message, "invalid_request_error", code="method_not_allowed"),
                                status_code=405)
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        message = "The server had an error while processing your request; the server's log has the details"
        return JSONResponse(error_body(message, "server_error"), status_code=500)
