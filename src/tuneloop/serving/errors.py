"""The one place where a library error becomes an HTTP answer: its status, and OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``. The API answers with the shape; the dashboard's pages with the
status and one line. Unknown ids are 404, unusable input is 400, a locked store 503, a model failure 500.
"""

from __future__ import annotations

from typing import Any

from tuneloop.errors import (
    ContextLengthError,
    DatasetInvalidError,
    InputError,
    JobStateError,
    ModelError,
    ModelTooLargeError,
    ModelUnusableError,
    NotFoundError,
    ProviderError,
    StoreLockedError,
    TaskStateError,
    TuneloopError,
    UnknownModelError,
)


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
    "message": "No logged message {ident!r}",
    "judge": "No judge named {ident!r}",
    "task": "No task found with id {ident!r}; GET /v1/tasks lists them",
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
    if isinstance(exc, DatasetInvalidError):
        # The report names the file by the id the client gave, never by where the server keeps it.
        summary = getattr(exc.report, "summary", None)
        name = f"training file {exc.file_id or exc.source or ''}".rstrip()
        told = summary(name) if callable(summary) else f"{name} is not valid"
        return APIError(400, told, param=getattr(exc, "param", None), code="invalid_training_file")
    if isinstance(exc, JobStateError):
        return APIError(400, message, code="invalid_job_state")
    if isinstance(exc, TaskStateError):
        return APIError(409, message, code="invalid_task_state")
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
