"""Everything a command or an ``OpenAIModel`` needs, built lazily from one ``Settings``."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path

from tuneloop.config import Settings, load_settings
from tuneloop.engine.weights import BASE_MODEL_ID, ProgressCallback
from tuneloop.errors import ConfigError, TuneloopError, UnknownModelError
from tuneloop.models.registry import ModelRegistry, base_of
from tuneloop.providers import DEFAULT_OPENAI_MODEL, LocalProvider, ModelInfo, OpenAIProvider, Provider
from tuneloop.providers.openai import known_text_model, known_vision_model
from tuneloop.store import Store

REMOTE_HINT = "set OPENAI_API_KEY (and OPENAI_BASE_URL for another compatible server) to use remote models"


class Runtime:
    def __init__(self, settings: Settings | None = None, *, progress: ProgressCallback | None = None,
                 db: Store | None = None) -> None:
        self.settings = settings or load_settings()
        self.progress = progress
        if db is not None:  # a handle already open on the settings' database (a worker's)
            self.db = db

    @cached_property
    def db(self) -> Store:
        """The one database handle, with a repository per concept (``db.dialogue``, ``db.jobs``…)."""
        return Store(self.settings.resolved_database_url, busy_timeout=self.settings.db_busy_timeout)

    @cached_property
    def registry(self) -> ModelRegistry:
        """Base models: the bundled one and those registered (``models add``, ``[models."ID"] path``)."""
        return ModelRegistry(self.settings, self.db.base_models)

    @cached_property
    def local(self) -> LocalProvider:
        return LocalProvider(self.settings, self.progress, registry=self.fine_tuned_models, bases=self.registry)

    def local_checkpoint(self, model: str) -> Path:
        """The Hugging Face folder of a local model's base (``ft:BASE:…`` → BASE's folder)."""
        return self.registry.checkpoint(base_of(model), self.progress)

    def fine_tuned_models(self) -> dict[str, Path]:
        """Local fine-tuned models whose job succeeded: model id → LoRA adapter folder."""

        jobs = self.db.jobs
        models = {
            job.fine_tuned_model: Path(job.model_path)
            for job in jobs.succeeded_models("local")
            if job.fine_tuned_model and job.model_path
        }
        models.update({model: Path(path) for model, path in jobs.succeeded_checkpoints("local").items()})
        return models

    @cached_property
    def openai(self) -> OpenAIProvider:
        if not self.settings.openai_configured:
            raise ConfigError(
                "the openai provider needs OPENAI_API_KEY or OPENAI_BASE_URL (environment or tuneloop.toml); "
                "set one, or use TUNELOOP_PROVIDER=local"
            )
        return OpenAIProvider(self.settings)

    def default_model(self) -> str:
        if self.settings.model:
            return self.settings.model
        return DEFAULT_OPENAI_MODEL if self.settings.default_provider == "openai" else BASE_MODEL_ID

    def resolve(self, model: str | None = None) -> tuple[Provider, str]:
        """The provider that serves ``model`` (default: the configured default model)."""
        model = model or self.default_model()
        if self.settings.provider == "openai":
            return self.openai, model
        if self.local.serves(model):
            return self.local, model
        if self.settings.provider == "local":
            raise UnknownModelError(model, self.local.model_ids(), "TUNELOOP_PROVIDER is local")
        if self.settings.openai_configured:
            return self.openai, model
        raise UnknownModelError(model, self.local.model_ids(), REMOTE_HINT)

    def accepts_images(self, model: str | None = None) -> bool | None:
        """Whether ``model`` takes image input: ``[models."ID"] vision`` in the config decides, then what is
        known (OpenAI's vision families yes, its text models no; what a server such as `tuneloop serve` says in
        ``input_modalities``; local text models no). None: not known, so an image is sent and the server's own
        refusal becomes :class:`~tuneloop.errors.ModelCannotSeeError`."""
        model = model or self.default_model()
        provider, _ = self.resolve(model)
        return self._vision(model, provider.name)

    def _vision(self, model: str, provider: str) -> bool | None:
        option = self.settings.models.get(model)
        if option is not None and option.vision is not None:
            return option.vision
        if provider != "openai":
            return False
        if known_vision_model(model):
            return True
        said = self.openai.input_modalities().get(model)
        if said is not None:
            return "image" in said
        return False if known_text_model(model) else None

    def models(self) -> tuple[list[ModelInfo], str | None]:
        """Every model on offer, and why the remote list is missing if it could not be read."""
        infos: list[ModelInfo] = []
        if self.settings.provider != "openai":
            infos.extend(self.local.models())
        problem = None
        if self.settings.openai_configured:
            try:
                infos.extend(self.openai.models())
            except TuneloopError as exc:  # one unreachable provider must not hide the others
                problem = str(exc)
        return [replace(info, vision=self._vision(info.id, info.provider)) for info in infos], problem
