"""The ``local`` provider: the bundled SmolLM2 model, in this process, on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneloop.config import Settings
from tuneloop.engine.generation import LocalEngine, TextStream, get_engine
from tuneloop.engine.weights import BASE_MODEL_ID, ProgressCallback, ensure_checkpoint, is_converted
from tuneloop.errors import UnknownModelError
from tuneloop.providers.base import ModelInfo, Provider


class LocalProvider(Provider):
    name = "local"

    def __init__(
        self,
        settings: Settings,
        progress: ProgressCallback | None = None,
        registry: Callable[[], dict[str, Path]] | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        # Fine-tuned models (id → LoRA adapter folder), read from the job store when asked.
        self.registry = registry or dict

    def model_ids(self) -> list[str]:
        return [BASE_MODEL_ID, *self.registry()]

    def serves(self, model: str) -> bool:
        return model == BASE_MODEL_ID or (model.startswith(f"ft:{BASE_MODEL_ID}:") and model in self.registry())

    def models(self) -> list[ModelInfo]:
        note = "ready" if is_converted(self.settings.resolved_models_dir) else "converted on first use"
        infos = [ModelInfo(BASE_MODEL_ID, self.name, "base", note)]
        infos += [ModelInfo(model, self.name, "checkpoint" if ":ckpt-step-" in model else "fine-tuned",
                            f"LoRA adapter in {path}") for model, path in self.registry().items()]
        return infos

    def engine(self, model: str) -> LocalEngine:
        adapter = None
        if model != BASE_MODEL_ID:
            adapters = self.registry()
            if model not in adapters:
                raise UnknownModelError(model, [BASE_MODEL_ID, *adapters])
            adapter = adapters[model]
        return get_engine(ensure_checkpoint(self.settings.resolved_models_dir, self.progress), adapter)

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
