"""The ``local`` provider: the bundled SmolLM2 model, in this process, on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tuneloop.config import Settings
from tuneloop.engine.generation import LocalEngine, TextStream, get_engine
from tuneloop.engine.weights import BASE_MODEL_ID, ProgressCallback, ensure_checkpoint, is_converted
from tuneloop.errors import UnknownModelError
from tuneloop.providers.base import ModelInfo, Provider


class LocalProvider(Provider):
    name = "local"

    def __init__(self, settings: Settings, progress: ProgressCallback | None = None) -> None:
        self.settings = settings
        self.progress = progress

    def model_ids(self) -> list[str]:
        return [BASE_MODEL_ID]

    def models(self) -> list[ModelInfo]:
        note = "ready" if is_converted(self.settings.resolved_models_dir) else "converted on first use"
        return [ModelInfo(BASE_MODEL_ID, self.name, "base", note)]

    def engine(self, model: str) -> LocalEngine:
        if model not in self.model_ids():
            raise UnknownModelError(model, self.model_ids())
        return get_engine(ensure_checkpoint(self.settings.resolved_models_dir, self.progress))

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        retries: int = 0,
        should_stop: Callable[[], bool] | None = None,
    ) -> TextStream:
        # Local generation fails the same way every time, so retries do not apply.
        return self.engine(model).stream(
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop, should_stop=should_stop
        )
