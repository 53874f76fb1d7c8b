"""The jobs pages: the list (newest first, paged), the form that creates one (the API's library path), a job with
its chart, checkpoints and result files, cancel, and its live events as server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from tuneloop.datasets.shapes import METHODS
from tuneloop.errors import DatasetInvalidError, TuneloopError
from tuneloop.serving import ServerState, from_library, state_of
from tuneloop.training import Job, JobEvent
from tuneloop.util.hardware import DEVICES
from tuneloop.web._pages import PageError, back_to, posted, render, whole_number

router = APIRouter()
ROUTERS = [router]
log = logging.getLogger("tuneloop.web")
PER_PAGE = 20
EVENTS_SHOWN = 200
POLL_SECONDS = 1.0  # a connected job page reads the store at most once a second
STREAM_SECONDS = 600.0  # then the stream ends and EventSource reconnects (Last-Event-ID): no connection lives forever
HYPERPARAMETERS = (("n_epochs", int), ("batch_size", int), ("learning_rate_multiplier", float))
# The chart's frame, in SVG units: the plot spans [LEFT, WIDTH - RIGHT] × [TOP, HEIGHT - BOTTOM].
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 240, 52, 52, 12, 28


def metric_points(events: list[JobEvent]) -> list[dict[str, Any]]:
    """The measurements of a job's metric events: per step the training loss, per epoch validation loss and
    score (what was not measured is left out)."""
    points = []
    for event in events:
        data = event.data or {}
        if event.type != "metrics" or not isinstance(data.get("step"), int | float):
            continue
        kept = {k: float(data[k]) for k in ("train_loss", "valid_loss", "valid_score", "total_steps")
                if isinstance(data.get(k), int | float)}
        # A step's event carries its training loss; an epoch's (with validation) repeats it: not a point of the line.
        if "valid_loss" in kept or "valid_score" in kept:
            kept.pop("train_loss", None)
        points.append({"step": float(data["step"]), **kept})
    return points


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def chart(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The loss chart's geometry (SVG coordinates), labels and a one-line summary, from ``metric_points``."""
    train = [(p["step"], p["train_loss"]) for p in points if "train_loss" in p]
    valid = [(p["step"], p["valid_loss"]) for p in points if "valid_loss" in p]
    score = [(p["step"], p["valid_score"]) for p in points if "valid_score" in p]
    steps = max([p.get("total_steps", 0.0) for p in points] + [p["step"] for p in points] + [1.0])
    top = max([v for _, v in train + valid] + [0.0]) * 1.1 or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(step: float, value: float, high: float) -> list[float]:
        return [round(LEFT + plot_w * step / steps, 1), round(TOP + plot_h * (1 - min(value, high) / high), 1)]

    summary = []
    if train:
        summary.append(f"training loss {_fmt(train[0][1])} at step {train[0][0]:.0f} to {_fmt(train[-1][1])} at "
                       f"step {train[-1][0]:.0f}")
    if valid:
        summary.append(f"validation loss {', '.join(_fmt(v) for _, v in valid)}")
    if score:
        summary.append(f"validation score {', '.join(f'{v:.0%}' for _, v in score)}")
    return {"train": [xy(s, v, top) for s, v in train], "valid": [xy(s, v, top) for s, v in valid],
            "score": [xy(s, v, 1.0) for s, v in score], "y_max": _fmt(top), "y_mid": _fmt(top / 2),
            "x_max": f"step {steps:.0f}", "has_valid": bool(valid), "has_score": bool(score),
            "summary": _sentence("; ".join(summary)) if summary else "No training step has been measured yet."}


@router.get("/jobs")
def jobs_page(request: Request, after: str | None = None) -> Response:
    state = state_of(request)
    jobs = state.fine_tuning.jobs.list_jobs(limit=PER_PAGE + 1, after=after or None, backend="local")
    return render(request, "jobs.html", jobs=jobs[:PER_PAGE], more=len(jobs) > PER_PAGE, after=after)


def _form_context(state: ServerState) -> dict[str, Any]:
    files = state.fine_tuning.files.list(purpose="fine-tune")
    return {"bases": state.runtime.registry.ids(), "files": files, "devices": DEVICES}


@router.get("/jobs/new")
def new_job(request: Request) -> Response:
    values = {k: v for k, v in request.query_params.items()
              if k in ("training_file", "method", "model", "validation_file")}
    return render(request, "jobs_new.html", values=values, error=None, **_form_context(state_of(request)))


def _hyperparameters(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, kind in HYPERPARAMETERS:
        text = form.get(name, "").strip()
        if not text or text == "auto":
            continue
        try:
            values[name] = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise PageError(f"{name} {text!r} is not {noun}; leave it blank for auto") from None
    return values


def create(state: ServerState, form: dict[str, str]) -> Job:
    """Create the job as ``POST /v1/fine_tuning/jobs`` does: the same checks, then ``FineTuning.create``."""
    model = form.get("model", "")
    bases = state.runtime.registry.ids()
    if model not in bases:
        raise PageError(f"model {model!r} cannot be fine-tuned here; choose one of: {', '.join(bases)}")
    training = form.get("training_file", "")
    if not training:
        raise PageError("choose a training file (build one on the data page)")
    validation = form.get("validation_file") or None
    if validation:
        state.fine_tuning.files.get(validation)
    method = form.get("method") or "auto"
    if method not in METHODS:
        raise PageError(f"method {method!r}: use supervised or dpo")
    device = form.get("device") or "auto"
    if device not in DEVICES:
        raise PageError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    suffix = form.get("suffix", "").strip() or None
    try:
        return state.fine_tuning.create(training, model=model, method=method,
                                        hyperparameters=_hyperparameters(form), suffix=suffix, backend="local",
                                        device=device, validation_file=validation)
    except DatasetInvalidError as exc:
        raise PageError(from_library(exc).message) from None  # as the API says it: the file by its id


@router.post("/jobs")
async def create_job(request: Request) -> Response:
    form = {k: v for k, v in (await posted(request)).items() if isinstance(v, str)}
    state = state_of(request)
    try:
        job = await run_in_threadpool(create, state, form)
    except (PageError, TuneloopError) as exc:
        context = await run_in_threadpool(_form_context, state)
        return render(request, "jobs_new.html", status=400, values=form, error=str(exc), **context)
    return back_to(f"/ui/jobs/{quote(job.id, safe='')}")


def _event_view(event: JobEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.created_at.strftime("%H:%M:%S"), "level": event.level,
            "message": event.message}


def _status_view(job: Job) -> dict[str, Any]:
    progress = job.progress or {}
    error = job.error.get("message") if isinstance(job.error, dict) else None
    return {"status": job.status, "active": job.active, "step": progress.get("step"),
            "total_steps": progress.get("total_steps"), "eta_seconds": progress.get("eta_seconds"),
            "fine_tuned_model": job.fine_tuned_model, "error": error}


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request) -> Response:
    state = state_of(request)
    job = state.local_job(job_id)
    events = state.fine_tuning.jobs.events(job_id)
    files = []
    for file_id in job.result_files:
        try:
            files.append(state.fine_tuning.files.get(file_id))
        except TuneloopError:
            continue
    shown = [_event_view(e) for e in reversed(events[-EVENTS_SHOWN:])]
    return render(request, "job.html", job=job, live=_status_view(job), events=shown,
                  more_events=max(0, len(events) - EVENTS_SHOWN), last_event=events[-1].id if events else 0,
                  chart=chart(metric_points(events)), checkpoints=state.fine_tuning.jobs.checkpoints(job_id),
                  files=files, notice=request.query_params.get("done"))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> Response:
    await posted(request)
    state = state_of(request)
    await run_in_threadpool(state.local_job, job_id)
    await run_in_threadpool(state.fine_tuning.cancel, job_id)
    return back_to(f"/ui/jobs/{quote(job_id, safe='')}", done="cancelled")


@router.get("/jobs/{job_id}/files/{file_id}", response_model=None)
def result_file(job_id: str, file_id: str, request: Request) -> Response:
    """A result file of the job: only one its row names, served from where the store keeps it."""
    state = state_of(request)
    job = state.local_job(job_id)
    if file_id not in job.result_files:
        raise PageError(f"job {job_id} has no result file {file_id!r}", 404)
    stored = state.fine_tuning.files.get(file_id)
    path = Path(stored.path)
    if not path.is_file():
        log.error("the result file %s of job %s is missing", file_id, job_id)
        raise PageError(f"the contents of result file {file_id} are missing on this server", 404)
    return FileResponse(path, media_type="application/octet-stream", filename=stored.filename)


def _sse(kind: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _cursor(request: Request, after: str | None) -> int:
    given = request.headers.get("last-event-id") or after or "0"
    return whole_number(given, "after (the last event seen)", 0, 2**63 - 1)


@router.get("/jobs/{job_id}/events/stream")
async def event_stream(job_id: str, request: Request, after: str | None = None) -> Response:
    """New events, status changes and the redrawn chart as server-sent events, until the job is finished (then an
    ``end`` event) or the page goes away; the store is read at most once a second per connected page."""
    state = state_of(request)
    await run_in_threadpool(state.local_job, job_id)
    cursor = _cursor(request, after)
    events = await run_in_threadpool(state.fine_tuning.jobs.events, job_id)
    points = metric_points([e for e in events if e.id <= cursor])

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        sent: dict[str, Any] | None = None
        started = time.monotonic()
        yield "retry: 3000\n\n"
        while time.monotonic() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            job = await run_in_threadpool(state.local_job, job_id)
            new = await run_in_threadpool(state.fine_tuning.jobs.events, job_id, after=cursor)
            for event in new:
                cursor = event.id
                yield _sse("job-event", _event_view(event), event.id)
            if any(e.type == "metrics" for e in new):
                points.extend(metric_points(new))
                yield _sse("chart", chart(points))
            status = _status_view(job)
            if status != sent:
                sent = status
                yield _sse("status", status)
            if not job.active:
                yield _sse("end", {"status": job.status})
                return
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
