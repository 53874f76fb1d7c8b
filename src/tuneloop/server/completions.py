"""Stored chat completions: ``GET /v1/chat/completions`` (by model and metadata, paged, ordered by creation),
retrieve, update (metadata: ``rating`` rates the reply), delete, and ``GET /v1/chat/completions/{id}/messages``."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from tuneloop.conversation.responses import check_metadata
from tuneloop.conversation.stored_completions import StoredCompletions
from tuneloop.server._paging import item_list, page
from tuneloop.serving import state_of

router = APIRouter()
METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


class UpdateCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")
    metadata: dict[str, Any] | None


def _stored(request: Request) -> StoredCompletions:
    return state_of(request).stored_completions()


@router.get("/v1/chat/completions")
def list_completions(request: Request, model: str | None = None, after: str | None = None,
                     limit: int = Query(default=20, ge=1, le=100),
                     order: Literal["asc", "desc"] = "asc") -> dict[str, Any]:
    # The SDK sends metadata={"k": "v"} as metadata[k]=v.
    metadata = {m.group(1): v for k, v in request.query_params.multi_items() if (m := METADATA_PARAM.match(k))}
    found, more = _stored(request).list(model=model, metadata=metadata or None, after=after, limit=limit,
                                        newest_first=order == "desc")
    return item_list([o.body for o in found], more)


@router.get("/v1/chat/completions/{completion_id}")
def retrieve_completion(completion_id: str, request: Request) -> dict[str, Any]:
    return _stored(request).get(completion_id).body


@router.post("/v1/chat/completions/{completion_id}")
def update_completion(completion_id: str, body: UpdateCompletion, request: Request) -> dict[str, Any]:
    return _stored(request).update(completion_id, check_metadata(body.metadata))


@router.delete("/v1/chat/completions/{completion_id}")
def delete_completion(completion_id: str, request: Request) -> dict[str, Any]:
    _stored(request).delete(completion_id)
    return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}


@router.get("/v1/chat/completions/{completion_id}/messages")
def list_messages(completion_id: str, request: Request, after: str | None = None,
                  limit: int = Query(default=20, ge=1, le=100),
                  order: Literal["asc", "desc"] = "asc") -> dict[str, Any]:
    messages = _stored(request).messages(completion_id)
    # Each message with its own role, as OpenAI answers (its document and SDK type say "assistant" only).
    data = [{"id": m.item_id or f"{completion_id}-{i}", "role": m.role, "content": m.content, "refusal": None,
             "content_parts": None} for i, m in enumerate(messages)]
    return page(data, after, limit, order)
