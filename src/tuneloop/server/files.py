"""``/v1/files``: training files, stored under ``$TUNELOOP_HOME/files/`` (the same store as the CLI's)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from tuneloop.server._paging import page_after
from tuneloop.serving import APIError, state_of
from tuneloop.util.fileio import safe_filename

router = APIRouter()
log = logging.getLogger("tuneloop.server")

PURPOSES = ("fine-tune",)


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"the file is {size:,} bytes, more than this server's limit of {limit:,} bytes; "
                    "split it, or start the server with a larger --max-file-mb", param="file", code="file_too_large")


@router.post("/v1/files")
async def upload_file(request: Request) -> dict[str, Any]:
    state = state_of(request)
    limit = state.max_file_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:  # refuse before reading the body
        raise _too_large(int(declared), limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(400, "upload the file as multipart/form-data with the fields file and purpose", param="file")
    try:
        form = await request.form(max_files=1, max_fields=16)
    except Exception as exc:  # noqa: BLE001 - starlette/python-multipart raise several types for a broken body
        raise APIError(400, f"the multipart body cannot be read: {exc}", param="file") from None
    try:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "file is required: send the file's contents in the multipart field file",
                           param="file")
        if not isinstance(purpose, str) or not purpose:
            raise APIError(400, "purpose is required; this server stores files with purpose fine-tune",
                           param="purpose")
        if purpose not in PURPOSES:
            raise APIError(400, f"purpose {purpose!r} is not supported; this server stores files with purpose "
                           "fine-tune", param="purpose")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise _too_large(len(data), limit)
        if not data:
            raise APIError(400, f"the file {upload.filename or ''!s} is empty", param="file")
        filename = safe_filename(upload.filename)
    finally:
        await form.close()  # removes the spooled temporary file
    stored = await run_in_threadpool(state.fine_tuning.add_file, data, filename=filename, purpose=purpose)
    return stored.to_openai()


@router.get("/v1/files")
def list_files(
    request: Request,
    purpose: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    files = state_of(request).fine_tuning.files.list(purpose=purpose)
    if order == "asc":
        files.reverse()
    page, more = page_after(files, after, limit, f"after: no file {after!r} in this list")
    # OpenAI's document makes first_id and last_id required strings, so an empty page has empty ones.
    return {"object": "list", "data": [f.to_openai() for f in page], "has_more": more,
            "first_id": page[0].id if page else "", "last_id": page[-1].id if page else ""}


@router.get("/v1/files/{file_id}")
def retrieve_file(file_id: str, request: Request) -> dict[str, Any]:
    return state_of(request).fine_tuning.files.get(file_id).to_openai()


@router.get("/v1/files/{file_id}/content", response_model=None)
def file_content(file_id: str, request: Request) -> FileResponse:
    stored = state_of(request).fine_tuning.files.get(file_id)
    path = Path(stored.path)
    if not path.is_file():  # the record outlived its contents; where they were is the server's business
        log.error("the contents of file %s are missing from %s", file_id, path.parent)
        raise APIError(404, f"The contents of file {file_id!r} are missing on this server; upload the file again",
                       param="file_id", code="file_not_found")
    return FileResponse(path, media_type="application/octet-stream", filename=stored.filename)


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    removed = state_of(request).fine_tuning.delete_file(file_id)
    return {"id": removed.id, "object": "file", "deleted": True}
