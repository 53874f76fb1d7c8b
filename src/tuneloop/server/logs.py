"""``/v1/logs/messages/{message_id}``: tuneloop's own routes to read a logged message, correct a reply and rate it
with a note (the #N of ``tuneloop logs show``; OpenAI has no such API). The dashboard and apps use the same calls as
``tuneloop logs correct`` and ``tuneloop logs rate``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneloop.curation import ratings
from tuneloop.serving import state_of

router = APIRouter()


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    content: str = Field(min_length=1, description="The reply the model should have given.")


class RatingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    rating: str | int = Field(description="up, down or none (also +1, -1, 0).")
    note: str | None = Field(default=None, description="Why, in a sentence.")


@router.get("/v1/logs/messages/{message_id}")
async def get_message(message_id: int, request: Request) -> dict[str, Any]:
    store = state_of(request).runtime.db.dialogue
    message = await run_in_threadpool(store.get_message, message_id)
    return {"object": "log.message", **message.to_dict()}


@router.post("/v1/logs/messages/{message_id}/correction")
async def correct(message_id: int, body: CorrectionRequest, request: Request) -> dict[str, Any]:
    store = state_of(request).runtime.db.dialogue
    made = await run_in_threadpool(ratings.correct, store, message_id, body.content, source="http")
    return {"object": "log.correction", **made.to_dict()}


@router.post("/v1/logs/messages/{message_id}/rating")
async def rate(message_id: int, body: RatingRequest, request: Request) -> dict[str, Any]:
    store = state_of(request).runtime.db.dialogue
    message = await run_in_threadpool(ratings.rate, store, message_id, body.rating, body.note)
    return {"object": "log.message", **message.to_dict()}
