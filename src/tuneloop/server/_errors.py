"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, for every failure.

Library errors map to the status codes OpenAI uses: unknown ids are 404, unusable input is 400, a
missing or wrong key is 401. Anything unexpected is logged with its traceback and answered with a
500 that says where to look; it never leaks a traceback (or a key) to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.errors import (
    ContextLengthError,
    InputError,
    JobStateError,
    ModelError,
    ModelTooLargeError,
    ModelUnusableError,
    NotFoundError,
    ProviderError,
    StoreLockedError,
    TuneloopError,
    UnknownModelError,
)

log = logging.getLogger("tuneloop.server")


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# What a client is told when nothing of a kind has the id it asked for ({ident}; {within}: what should hold it).
NOT_FOUND_MESSAGES = {
    "conversation": "No conversation found with id {ident!r}",
    "item": "No item {ident!r} in conversation {within!r}",
    "response": "No response found with id {ident!r} (never stored, deleted, or created with store: false)",
    "chat.completion": "No stored chat completion found with id {ident!r} (create it with store: true)",
    "fine_tuning.job": "No fine-tuning job found with id {ident!r}; GET /v1/fine_tuning/jobs lists them",
    "file": "No file found with id {ident!r}; GET /v1/files lists them",
    "message": "No logged message {ident!r}; `tuneloop logs show` lists a thread's messages with their numbers",
    "judge": "No judge named {ident!r}; `tuneloop judge list` lists them",
}


def not_found(exc: NotFoundError) -> APIError:
    """404 ``<kind>_not_found`` (``chat_completion_not_found``…) with the parameter that named the id. An id that
    is not the object asked for, a page's anchor (``after``) or a file a new job reads, is a 400 naming its
    parameter instead, as OpenAI answers. Messages name the id only: the store's location is the server's business.
    """
    if exc.param == "after":
        noun = {"chat.completion": "stored chat completion", "response": "stored response"}.get(
            exc.kind, exc.kind.replace("_", "-").replace(".", " "))
        return APIError(400, f"after: no {noun} {exc.ident!r} on this server", param="after")
    if exc.param in ("training_file", "validation_file"):
        return APIError(400, f"invalid {exc.param}: no file {exc.ident!r} on this server; upload it with POST "
                        "/v1/files (purpose fine-tune)", param=exc.param, code=f"invalid_{exc.param}")
    template = NOT_FOUND_MESSAGES.get(exc.kind, "No {kind} found with id {ident!r}")
    message = template.format(kind=exc.kind.replace("_", " ").replace(".", " "), ident=exc.ident, within=exc.within)
    return APIError(404, message, param=exc.param, code=exc.kind.replace(".", "_") + "_not_found")


def from_library(exc: TuneloopError) -> APIError:
    """The HTTP answer for an error the library raised on purpose."""
    message = str(exc)
    if isinstance(exc, UnknownModelError):
        return APIError(404, f"The model {exc.model!r} does not exist on this server; GET /v1/models lists those "
                        "it serves", param="model", code="model_not_found")
    if isinstance(exc, NotFoundError):
        return not_found(exc)
    if isinstance(exc, ModelTooLargeError | ModelUnusableError):
        return APIError(400, message, param="model", code="model_not_available")
    if isinstance(exc, ContextLengthError):
        return APIError(400, message, param="messages", code="context_length_exceeded")
    if isinstance(exc, JobStateError):
        return APIError(400, message, code="invalid_job_state")
    if isinstance(exc, InputError):
        return APIError(400, message, param=getattr(exc, "param", None))
    if isinstance(exc, StoreLockedError):
        return APIError(503, message, type="server_error", code="store_busy")
    if isinstance(exc, ModelError | ProviderError):
        return APIError(500, message, type="server_error", code="model_error")
    return APIError(500, message, type="server_error")


def http_status(exc: TuneloopError) -> int:
    """The status the server answers a library error with (the dashboard's pages use the same)."""
    return from_library(exc).status


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
