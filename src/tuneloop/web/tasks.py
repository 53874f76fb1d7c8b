"""The tasks pages: long work of every kind (fine-tuning jobs, judge runs, eval runs), newest first, and a task's own
page with its progress and events live (server-sent events), its result, and a cancel."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from tuneloop.serving import state_of
from tuneloop.tasks import REMOTE, Task, TaskEvent
from tuneloop.web._pages import back_to, posted, render, whole_number

router = APIRouter()
ROUTERS = [router]
LISTED = 50
REFRESH_S = 5  # the list reloads itself this often while a task is unfinished
EVENTS_SHOWN = 200
POLL_SECONDS = 1.0
STREAM_SECONDS = 600.0  # then the stream ends and EventSource reconnects (Last-Event-ID): no connection lives forever
KIND_NAMES = {"fine_tune": "Fine-tuning job", "remote_fine_tune": "Fine-tuning job (remote)",
              "judge_run": "Judge run", "eval_run": "Eval run"}


def result_link(task: Task) -> tuple[str, str] | None:
    """Where a task's work shows once done (or, for a job, while it runs): (label, path)."""
    if task.kind in ("fine_tune", "remote_fine_tune"):
        return "The job's page", f"/ui/jobs/{quote(task.id, safe='')}"
    if task.kind == "eval_run" and (task.result or {}).get("eval_run"):
        return "The eval run's answers", f"/ui/evals/{quote(task.result['eval_run'], safe='')}"
    if task.kind == "judge_run":
        return "The judges page", "/ui/judges"
    return None


def followed(task: Task) -> bool:
    """Whether this page follows the task live: an unfinished one a worker here runs (a remote platform's job is
    followed on its job's page, which asks the platform)."""
    return task.active and task.kind not in REMOTE


def status_view(task: Task) -> dict[str, Any]:
    """What the page shows of a task's state, and what its stream sends when that changes."""
    progress = task.progress or {}
    return {"status": task.status, "active": followed(task), "done": progress.get("done"),
            "total": progress.get("total"), "message": progress.get("message") or "",
            "error": (task.error or {}).get("message")}


def result_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A task's result as a page lists it: each field's value as text, a list of values as items (never a JSON dump
    with its escapes); a nested object as JSON."""
    rows = []
    for name, value in (result or {}).items():
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            rows.append({"name": name, "entries": [str(v) for v in value], "text": None if value else "none"})
        elif isinstance(value, str | int | float | bool) or value is None:
            rows.append({"name": name, "entries": None, "text": "—" if value is None else str(value)})
        else:
            rows.append({"name": name, "entries": None, "text": json.dumps(value, ensure_ascii=False)})
    return rows


def event_view(event: TaskEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.created_at.strftime("%Y-%m-%d %H:%M:%S"), "level": event.level,
            "type": event.type, "message": event.message}


@router.get("/tasks")
def tasks_page(request: Request) -> Response:
    """The newest tasks; while one of them is unfinished the page reloads itself every REFRESH_S seconds (a task's
    own page follows it live)."""
    found = state_of(request).tasks.list(limit=LISTED)
    following = any(followed(t) for t in found)
    response = render(request, "tasks.html", tasks=found, kinds=KIND_NAMES, refresh=REFRESH_S if following else None,
                      views={t.id: status_view(t) for t in found})
    if following:
        response.headers["refresh"] = f"{REFRESH_S}; url={request.url.path}"
    return response


@router.get("/tasks/{task_id}")
def task_page(task_id: str, request: Request) -> Response:
    tasks = state_of(request).tasks
    task = tasks.get(task_id)
    events = tasks.events(task_id, limit=EVENTS_SHOWN, newest_first=True)
    return render(request, "task.html", task=task, live=status_view(task), kinds=KIND_NAMES, link=result_link(task),
                  events=[event_view(e) for e in events], last_event=events[0].id if events else 0,
                  result=result_rows(task.result),
                  notice=request.query_params.get("done"))


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, request: Request) -> Response:
    await posted(request)
    await run_in_threadpool(state_of(request).tasks.cancel, task_id)
    return back_to(f"/ui/tasks/{quote(task_id, safe='')}", done="cancelled")


def _sse(kind: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/tasks/{task_id}/events/stream")
async def event_stream(task_id: str, request: Request, after: str | None = None) -> Response:
    """New events and status changes as server-sent events, until the task is finished (then an ``end`` event) or
    the page goes away; the store is read at most once a second per connected page."""
    tasks = state_of(request).tasks
    await run_in_threadpool(tasks.get, task_id)
    cursor = whole_number(request.headers.get("last-event-id") or after or "0", "after (the last event seen)", 0,
                          2**63 - 1)

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        sent: dict[str, Any] | None = None
        started = time.monotonic()
        yield "retry: 3000\n\n"
        while time.monotonic() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            task = await run_in_threadpool(tasks.get, task_id)
            new = await run_in_threadpool(lambda after=cursor: tasks.events(task_id, after=after, limit=500))
            for event in new:
                cursor = event.id
                yield _sse("task-event", event_view(event), event.id)
            status = status_view(task)
            if status != sent:
                sent = status
                yield _sse("status", status)
            if not followed(task):
                yield _sse("end", {"status": task.status})
                return
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
