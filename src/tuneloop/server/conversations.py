"""``/v1/conversations`` and their items: threads of the dialogue store (kind ``conversation``) whose messages are
the items. Metadata keys ``rating:ID`` rate the reply with that item or response id (see tuneloop.curation.ratings)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneloop.conversation.responses import check_metadata, message_item, read_items
from tuneloop.errors import InputError
from tuneloop.server._paging import item_list, page
from tuneloop.serving import APIError, state_of

router = APIRouter()
MAX_ITEMS = 20


class CreateConversation(BaseModel):
    model_config = ConfigDict(extra="allow")
    items: list[Any] | None = None
    metadata: dict[str, Any] | None = None


class UpdateConversation(BaseModel):
    model_config = ConfigDict(extra="allow")
    metadata: dict[str, Any] | None


class CreateItems(BaseModel):
    model_config = ConfigDict(extra="allow")
    items: list[Any] = Field(min_length=1)


def _conversation(thread: Any) -> dict[str, Any]:
    return {"id": thread.id, "object": "conversation", "created_at": int(thread.created_at.timestamp()),
            "metadata": thread.metadata or {}}


def _items(items: list[Any] | None) -> list[Any]:
    if items is not None and len(items) > MAX_ITEMS:
        raise APIError(400, f"items has {len(items)} items; add up to {MAX_ITEMS} at a time", param="items")
    return read_items(items or [], "items")


@router.post("/v1/conversations")
def create_conversation(body: CreateConversation, request: Request) -> dict[str, Any]:
    log = state_of(request).response_log()
    metadata = check_metadata(body.metadata)
    thread, _ = log.new_conversation(metadata, _items(body.items))
    if metadata:
        try:
            log.rate_conversation_items(thread.id, metadata)
        except InputError:
            log.threads.delete(thread.id, "conversation")  # nothing is half-stored
            raise
    return _conversation(thread)


@router.get("/v1/conversations/{conversation_id}")
def retrieve_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    return _conversation(state_of(request).response_log().threads.get(conversation_id, "conversation"))


@router.post("/v1/conversations/{conversation_id}")
def update_conversation(conversation_id: str, body: UpdateConversation, request: Request) -> dict[str, Any]:
    log = state_of(request).response_log()
    metadata = check_metadata(body.metadata)
    log.threads.get(conversation_id, "conversation")
    log.rate_conversation_items(conversation_id, metadata)  # checked (and applied) before it is kept
    return _conversation(log.threads.update_metadata(conversation_id, "conversation", metadata))


@router.delete("/v1/conversations/{conversation_id}")
def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    state_of(request).response_log().threads.delete(conversation_id, "conversation")
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.post("/v1/conversations/{conversation_id}/items")
async def create_items(conversation_id: str, body: CreateItems, request: Request) -> dict[str, Any]:
    log = state_of(request).response_log()
    items = _items(body.items)
    added = await run_in_threadpool(log.add_items, conversation_id, items)
    return item_list([message_item(m) for m in added], False)


@router.get("/v1/conversations/{conversation_id}/items")
def list_items(conversation_id: str, request: Request, after: str | None = None,
               limit: int = Query(default=20, ge=1, le=100), order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    log = state_of(request).response_log()
    log.threads.get(conversation_id, "conversation")
    return page([message_item(m) for m in log.threads.messages(conversation_id)], after, limit, order)


@router.get("/v1/conversations/{conversation_id}/items/{item_id}")
def retrieve_item(conversation_id: str, item_id: str, request: Request) -> dict[str, Any]:
    log = state_of(request).response_log()
    log.threads.get(conversation_id, "conversation")
    return message_item(log.threads.item(conversation_id, item_id))


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}")
def delete_item(conversation_id: str, item_id: str, request: Request) -> dict[str, Any]:
    log = state_of(request).response_log()
    thread = log.threads.get(conversation_id, "conversation")
    log.threads.delete_item(conversation_id, item_id)
    return _conversation(thread)
