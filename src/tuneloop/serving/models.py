"""The models a server offers, as OpenAI's model objects: what ``GET /v1/models`` lists and the dashboard's menus
offer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tuneloop.engine.weights import BASE_MODEL_ID
from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime

# SmolLM2-135M-Instruct's release (2024-11-01), the base model's "created" time.
BASE_CREATED = 1730419200


def model_object(model_id: str, created: int, owned_by: str, images: bool = False) -> dict[str, Any]:
    # input_modalities (beyond OpenAI's fields, which allow more): what the model takes, so that a client knows
    # before it sends an image; tuneloop's own openai provider reads it.
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by,
            "input_modalities": ["text", "image"] if images else ["text"]}


def _ts(when: datetime | None) -> int:
    return int(when.timestamp()) if when else BASE_CREATED


def served_models(runtime: Runtime, vision: VisionProvider | None = None) -> list[dict[str, Any]]:
    """The base models (bundled, then registered), the vision model if any, then every fine-tuned model (and
    checkpoint) whose job succeeded, oldest first."""
    store = runtime.db.jobs
    servable = runtime.fine_tuned_models()
    out = [model_object(BASE_MODEL_ID, BASE_CREATED, "HuggingFaceTB")]
    out.extend(model_object(m.id, _ts(m.added_at), "user") for m in runtime.registry.all() if not m.bundled)
    if vision is not None:
        out.append(model_object(vision.model_id, vision.created, "user", images=True))
    for job in store.succeeded_models("local"):
        if job.fine_tuned_model in servable:
            out.append(model_object(job.fine_tuned_model, _ts(job.finished_at or job.created_at), "user"))
        out.extend(model_object(c.fine_tuned_model_checkpoint, _ts(c.created_at), "user")
                   for c in reversed(store.checkpoints(job.id)) if c.fine_tuned_model_checkpoint in servable)
    return out
