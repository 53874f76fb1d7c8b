"""``/v1/fine_tuning/jobs``: the same jobs as ``tuneloop train`` and ``tuneloop jobs``, trained on this machine."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tuneloop.errors import DatasetInvalidError, FileNotFoundInStoreError
from tuneloop.server._paging import page_after
from tuneloop.serving import APIError, state_of

router = APIRouter()

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | float | None = None
    n_epochs: Auto | int | None = None
    beta: Auto | float | None = None


class MethodHyperparameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: MethodHyperparameters | None = None
    dpo: MethodHyperparameters | None = None


class JobCreateRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, min_length=1, max_length=64)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    validation_file: str | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


def _hyperparameters(body: JobCreateRequest) -> tuple[str, dict[str, Any]]:
    method = body.method.type if body.method else "auto"
    if method == "reinforcement":
        raise APIError(400, "method reinforcement is not supported; use supervised or dpo", param="method.type")
    chosen = body.hyperparameters
    if body.method is not None:
        inner = getattr(body.method, method)
        if inner is not None and inner.hyperparameters is not None:
            chosen = inner.hyperparameters
    values = chosen.model_dump(exclude_none=True) if chosen else {}
    if "beta" in values and method != "dpo":
        raise APIError(400, "hyperparameter beta applies to method dpo only", param="method")
    return method, values


@router.post("/v1/fine_tuning/jobs")
def create_job(body: JobCreateRequest, request: Request) -> dict[str, Any]:
    state = state_of(request)
    bases = state.runtime.registry.ids()
    if body.model not in bases:
        raise APIError(400, f"model {body.model!r} cannot be fine-tuned here; this server fine-tunes its base models: "
                       f"{', '.join(bases)}", param="model", code="model_not_available")
    if body.validation_file:  # checked first: before the training file is read
        try:
            state.fine_tuning.files.get(body.validation_file)
        except FileNotFoundInStoreError as exc:
            raise exc.named_by("validation_file") from None  # a 400: see _errors.not_found
    if body.integrations:
        raise APIError(400, "integrations are not supported by this server", param="integrations")
    method, hyperparameters = _hyperparameters(body)
    try:
        job = state.fine_tuning.create(body.training_file, model=body.model, method=method,
                                       hyperparameters=hyperparameters, suffix=body.suffix, seed=body.seed,
                                       metadata=body.metadata, backend="local",
                                       validation_file=body.validation_file)
    except DatasetInvalidError as exc:
        raise exc.named_by("training_file") from None
    return job.to_openai()


@router.get("/v1/fine_tuning/jobs")
def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    jobs = state_of(request).fine_tuning.list(limit=limit + 1, after=after, backend="local")
    return {"object": "list", "data": [job.to_openai() for job in jobs[:limit]], "has_more": len(jobs) > limit}


@router.get("/v1/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, request: Request) -> dict[str, Any]:
    return state_of(request).local_job(job_id).to_openai()


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    state = state_of(request)
    state.local_job(job_id)
    return state.fine_tuning.cancel(job_id).to_openai()


def _event_cursor(after: str | None) -> int | None:
    if after is None:
        return None
    number = after.removeprefix("ftevent-")
    if not number.isdigit():
        raise APIError(400, f"after: {after!r} is not an event id (ftevent-N)", param="after")
    return int(number)


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
def list_events(job_id: str, request: Request, after: str | None = None,
                limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
    state = state_of(request)
    state.local_job(job_id)
    events = state.fine_tuning.events(job_id, after=_event_cursor(after), limit=limit + 1, newest_first=True)
    return {"object": "list", "data": [e.to_openai() for e in events[:limit]], "has_more": len(events) > limit}


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(job_id: str, request: Request, after: str | None = None,
                     limit: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    state = state_of(request)
    state.local_job(job_id)
    page, more = page_after(state.fine_tuning.jobs.checkpoints(job_id), after, limit,
                            f"after: no checkpoint {after!r} in job {job_id}")
    return {"object": "list", "data": [c.to_openai() for c in page], "has_more": more,
            "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None}
