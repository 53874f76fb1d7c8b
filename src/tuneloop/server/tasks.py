"""``/v1/tasks``: tuneloop's own routes (OpenAI has none) over its long work: fine-tuning jobs, judge runs, eval runs.
List, retrieve, their events, cancel; the same tasks as ``tuneloop tasks`` and the dashboard's tasks page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tuneloop.server._paging import item_list
from tuneloop.serving import state_of

router = APIRouter()


@router.get("/v1/tasks")
def list_tasks(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100),
               kind: str | None = Query(None, pattern="^[a-z_]{1,32}$")) -> dict[str, Any]:
    """Tasks, newest first; ``after``: the last id of the previous page; ``kind``: only that kind."""
    found = state_of(request).tasks.list(kinds=[kind] if kind else None, limit=limit + 1, after=after)
    return item_list([t.to_dict() for t in found[:limit]], len(found) > limit)


@router.get("/v1/tasks/{task_id}")
def retrieve_task(task_id: str, request: Request) -> dict[str, Any]:
    return state_of(request).tasks.get(task_id).to_dict()


@router.get("/v1/tasks/{task_id}/events")
def task_events(task_id: str, request: Request, after: int | None = Query(None, ge=0, le=2**63 - 1),
                limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """A task's events, oldest first, those after event ``after`` (an id) when given."""
    tasks = state_of(request).tasks
    tasks.get(task_id)
    found = tasks.events(task_id, after=after, limit=limit + 1)
    return item_list([e.to_dict() for e in found[:limit]], len(found) > limit)


@router.post("/v1/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, request: Request) -> dict[str, Any]:
    """Cancel a queued or running task: it stops within seconds, what it finished stays."""
    task = await run_in_threadpool(state_of(request).tasks.cancel, task_id)
    return task.to_dict()
