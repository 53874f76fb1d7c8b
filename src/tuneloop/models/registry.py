"""The base models tuneloop can chat with and fine-tune: the bundled SmolLM2, and any local Hugging Face causal
LM folder or GGUF file registered under an id (``tuneloop models add ID PATH``, or ``[models."ID"] path = …`` in
tuneloop.toml). Fine-tuned models are named ``ft:BASE:SUFFIX:JOB`` after the base they were trained from.

Registrations made with ``models add`` live in the store, so every process and worker that shares the store
sees them; ``tuneloop.toml`` entries are this machine's and win over the store for the same id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuneloop.config import Settings
from tuneloop.engine.inspection import Description, check_usable, describe
from tuneloop.engine.weights import (
    BASE_MODEL_ID,
    ProgressCallback,
    ensure_checkpoint,
    ensure_converted,
    find_gguf,
    is_converted,
)
from tuneloop.errors import InputError, ModelError, ModelUnusableError, UnknownModelError
from tuneloop.store.base_models import BaseModels
from tuneloop.store.database import Database, Repository
from tuneloop.store.schema import utcnow

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")


def base_of(model_id: str) -> str:
    """The base model id of ``ft:BASE:SUFFIX:JOB`` (and of its checkpoints); other ids unchanged."""
    if model_id.startswith("ft:"):
        parts = model_id.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    return model_id


def fine_tuned_id(base: str, suffix: str | None, job_id: str) -> str:
    """``ft:BASE:SUFFIX:JOB``, the id of the model a local job registers (the inverse of :func:`base_of`)."""
    return f"ft:{base}:{suffix or ''}:{job_id}"


def check_id(model_id: str) -> str:
    if not ID_PATTERN.fullmatch(model_id) or "//" in model_id or model_id.endswith("/"):
        raise InputError(f"model id {model_id!r}: use letters, digits and . _ - / (up to 128 characters, no ':'), "
                         "starting with a letter or digit", param="model")
    return model_id


@dataclass(frozen=True)
class BaseModel:
    id: str
    path: Path  # a model folder or a .gguf file (the bundled model: its GGUF inside the package)
    format: str  # "hf" or "gguf"
    source: str  # "bundled", "tuneloop.toml" or "store"
    added_at: datetime | None = None

    @property
    def bundled(self) -> bool:
        return self.source == "bundled"


class ModelRegistry:
    """Every base model this configuration knows; ``checkpoint(id)`` gives the folder transformers loads."""

    def __init__(self, settings: Settings, store: Database | Repository | None = None) -> None:
        self.settings = settings
        self.store = BaseModels(store) if store is not None else None

    def _stored(self) -> dict[str, BaseModel]:
        if self.store is None:
            return {}
        return {r.id: _entry(r.id, Path(r.path), "store", r.added_at) for r in self.store.all()}

    def _configured(self) -> dict[str, BaseModel]:
        return {model_id: _entry(model_id, option.path.expanduser(), "tuneloop.toml", None)
                for model_id, option in self.settings.models.items() if option.path is not None}

    def all(self) -> list[BaseModel]:
        bundled = BaseModel(BASE_MODEL_ID, Path(), "gguf", "bundled")
        found = {BASE_MODEL_ID: bundled, **self._stored(), **self._configured()}
        found[BASE_MODEL_ID] = bundled  # the bundled id cannot be taken over
        return list(found.values())

    def ids(self) -> list[str]:
        return [m.id for m in self.all()]

    def has(self, model_id: str) -> bool:
        return model_id in self.ids()

    def get(self, model_id: str) -> BaseModel:
        for model in self.all():
            if model.id == model_id:
                return model
        raise UnknownModelError(model_id, self.ids(), "register a local model's folder or GGUF file first").with_hint(
            "`tuneloop models add ID PATH` registers one")

    def add(self, model_id: str, path: str | Path) -> BaseModel:
        """Register a folder or GGUF file under ``model_id`` after checking that it can be used."""
        check_id(model_id)
        if model_id == BASE_MODEL_ID or model_id in self._configured():
            where = "bundled" if model_id == BASE_MODEL_ID else "defined in tuneloop.toml"
            raise InputError(f"model id {model_id!r} is {where}; choose another id", param="model")
        if self.store is None:
            raise ModelError("registering a model needs the store")
        entry = _entry(model_id, Path(path).expanduser().resolve(), "store", utcnow())
        inspect_entry(entry)
        self.store.put(model_id, str(entry.path), entry.added_at)
        return entry

    def remove(self, model_id: str) -> BaseModel:
        entry = self.get(model_id)
        if entry.source != "store":
            where = "bundled" if entry.bundled else f"defined in tuneloop.toml ([models.\"{model_id}\"] path)"
            raise InputError(f"model {model_id!r} is {where}, not registered here; it cannot be removed", param="model")
        assert self.store is not None
        self.store.remove(model_id)
        return entry

    def checkpoint(self, model_id: str, progress: ProgressCallback | None = None) -> Path:
        """The Hugging Face folder of a base model (a GGUF is converted once, beside the other converted weights)."""
        entry = self.get(model_id)
        models_dir = self.settings.resolved_models_dir
        if entry.bundled:
            return ensure_checkpoint(models_dir, progress)
        if not entry.path.exists():
            raise ModelUnusableError(f"model {model_id!r}: {entry.path} does not exist any more; put it back, or "
                                     "remove the registration").with_hint(f"`tuneloop models remove {model_id}`")
        if entry.format == "gguf":
            folder = ensure_converted(entry.path, models_dir / "registered" / model_id.replace("/", "--"), model_id,
                                      progress)
        else:
            folder = entry.path
        check_usable(folder, model_id)
        return folder

    def describe(self, model_id: str) -> tuple[BaseModel, Description | None, str]:
        """The entry, what its headers say (None if unreadable), and a note on its state."""
        entry = self.get(model_id)
        if entry.bundled:
            try:
                gguf = find_gguf()
            except ModelError as exc:
                return entry, None, str(exc)
            ready = is_converted(self.settings.resolved_models_dir)
            source = self.settings.resolved_models_dir / BASE_MODEL_ID if ready else gguf
            note = "ready" if ready else "converted on first use"
            try:
                return entry, describe(source, model_id), note
            except ModelError as exc:
                return entry, None, str(exc)
        try:
            return entry, describe(entry.path, model_id), ""
        except ModelError as exc:
            return entry, None, str(exc)


def _entry(model_id: str, path: Path, source: str, added_at: datetime | None) -> BaseModel:
    kind = "gguf" if path.suffix.lower() == ".gguf" else "hf"
    return BaseModel(model_id, path, kind, source, added_at)


def inspect_entry(entry: BaseModel) -> Description:
    """Check a model before it is registered: readable, loadable architecture, a chat template."""
    if not entry.path.exists():
        raise ModelUnusableError(f"model {entry.id!r}: {entry.path} does not exist; give a Hugging Face model folder "
                                 "or a .gguf file")
    if entry.format == "gguf":
        found = describe(entry.path, entry.id)
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        if found.architecture not in GGUF_SUPPORTED_ARCHITECTURES:
            raise ModelUnusableError(
                f"model {entry.id!r}: transformers cannot load GGUF files of architecture {found.architecture!r} "
                f"(it reads {', '.join(sorted(set(GGUF_SUPPORTED_ARCHITECTURES)))}); register the model's Hugging "
                "Face folder instead"
            )
        return found
    check_usable(entry.path, entry.id)
    return describe(entry.path, entry.id)
