"""Configuration: environment first, then ``tuneloop.toml`` (working directory, then ``$TUNELOOP_HOME``).

Keys in ``tuneloop.toml`` are the field names below (``provider = "local"``, ``model = "…"``,
``database_url = "…"``, ``openai_api_key = "…"``). Environment variables are the same names
upper-cased with the ``TUNELOOP_`` prefix, except ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tuneloop.errors import ConfigError

CONFIG_FILE_NAME = "tuneloop.toml"


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("tuneloop", appauthor=False))


def _home_from_environment() -> Path:
    value = os.environ.get("TUNELOOP_HOME")
    return Path(value).expanduser() if value else default_home()


class ModelOptions(BaseModel):
    """What tuneloop should know about one model id (``[models."ID"]`` in tuneloop.toml)."""

    model_config = ConfigDict(extra="forbid")
    vision: bool | None = Field(default=None, description="Whether the model accepts images.")
    path: Path | None = Field(
        default=None, description="A local Hugging Face model folder or .gguf file: registers the id as a base model."
    )


class Settings(BaseSettings):
    """Every setting tuneloop reads. Build one with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="TUNELOOP_", extra="ignore", populate_by_name=True, validate_default=True
    )

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    provider: Literal["local", "openai"] | None = Field(
        default=None, description="Default provider; unset: openai when a key or base URL is set, else local."
    )
    model: str | None = Field(default=None, description="Default model id.")
    home: Path = Field(default_factory=_home_from_environment, description="Data, cache and jobs.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home.")
    models_dir: Path | None = Field(default=None, description="Converted weights; default home/models.")
    assistants_file: Path | None = Field(
        default=None, description="JSON or TOML assistant definitions; default home/assistants.json|toml."
    )
    db_busy_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a locked database.")
    max_tokens: int = Field(default=512, gt=0, description="Default limit on generated tokens.")
    request_timeout: float = Field(default=120.0, gt=0, description="Seconds a remote call may wait for each read.")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect to a remote provider.")
    retries: int = Field(
        default=2, ge=0, le=20,
        description="Retries of a remote call after a connection error, timeout, 408, 409, 429 or 5xx (never 4xx).",
    )
    retry_initial_delay: float = Field(default=0.5, ge=0, description="First backoff in seconds; doubles per retry.")
    retry_max_delay: float = Field(default=8.0, ge=0, description="Longest backoff in seconds (less 0-25% jitter).")
    retry_max_wait: float = Field(
        default=60.0, ge=0, le=120,
        description="Longest Retry-After honoured, in seconds; a vendor asking for more is not retried.",
    )
    models: dict[str, ModelOptions] = Field(
        default_factory=dict,
        description='Per-model options: [models."llava-local"] vision = true (env: TUNELOOP_MODELS as JSON).',
    )
    image_max_mb: float = Field(default=20.0, gt=0, description="Largest image file describe_image reads.")
    server_api_key: SecretStr | None = Field(
        default=None, description="Key `tuneloop serve` requires as `Authorization: Bearer …`; unset: none."
    )
    server_max_file_mb: float = Field(default=512.0, gt=0, description="Largest file `tuneloop serve` accepts.")
    server_max_body_mb: float = Field(
        default=32.0, gt=0, description="Largest request body `tuneloop serve` reads, uploads aside (413 above)."
    )
    server_max_messages: int = Field(default=2048, gt=0, description="Most messages in one chat request.")
    server_max_message_chars: int = Field(
        default=1_000_000, gt=0, description="Most characters of text in one message of a chat request."
    )
    server_log: Literal["all", "stored", "none"] = Field(
        default="all",
        description="Which chat completions `tuneloop serve` writes to the dialogue log. all: every one, except a "
        "request that sends store=false; stored: only those that send store=true (OpenAI's default); none: none.",
    )
    sentiment_analyzer: Literal["multilingual", "vader", "judge"] = Field(
        default="multilingual",
        description="How each logged message is labelled positive, negative, neutral or unknown. multilingual: "
        "offline, many languages (English goes to VADER); vader: VADER, English only (others: unknown); judge: "
        "the chat model named by sentiment_judge_model, asked for a label in JSON.",
    )
    sentiment_judge_model: str | None = Field(
        default=None, description="The model the judge analyzer asks; unset: the default model."
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = Field(
        default="auto", description="Where training and local generation run: auto picks cuda, then mps, then cpu."
    )
    engine: Literal["auto", "int8", "int4", "fp32", "reference"] = Field(
        default="auto",
        description="How local models generate. auto: int8 on a CPU, the reference on a GPU. int8: onnxruntime "
        "with 8-bit weights, as right as fp32 on the quality set and about six times faster; int4: faster still, "
        "loses answers; fp32: onnxruntime, the reference's answers token for token; reference: transformers "
        "and torch (what training uses).",
    )
    max_batch: int = Field(
        default=8, ge=1, le=256,
        description="How many replies the server generates at once. The fast engine decodes them together, one "
        "token each per step (eight clients get about four times one client's tokens per second); later requests "
        "wait in arrival order. 1: one reply at a time.",
    )
    max_loaded_models: int = Field(
        default=4, ge=1, le=64,
        description="Most local models a process keeps loaded at once; the one used least recently is let go "
        "(and loaded again when asked for). Each fine-tune counts as a model of its own.",
    )
    spawn_worker: bool = Field(
        default=True,
        description="Start a one-task worker process for each new task (a local fine-tuning job, a judge run, an "
        "eval run); false when `tuneloop worker` processes (on this or other machines) take the tasks.",
    )
    job_max_attempts: int = Field(
        default=3, ge=1, le=100, description="Times a task (a job, a run) is started before a lost worker fails it for "
        "good."
    )
    worker_heartbeat: float = Field(default=5.0, gt=0, description="Seconds between a worker's heartbeats.")
    worker_timeout: float = Field(
        default=60.0, gt=0, description="Seconds without a heartbeat after which a task's worker counts as lost."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Later files win in TomlConfigSettingsSource, so the working directory's file goes last.
        files = [_home_from_environment() / CONFIG_FILE_NAME, Path.cwd() / CONFIG_FILE_NAME]
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=files))

    @property
    def default_provider(self) -> Literal["local", "openai"]:
        if self.provider:
            return self.provider
        return "openai" if self.openai_configured else "local"

    @property
    def openai_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tuneloop.db'}"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.home / "models"


def load_settings(**overrides: object) -> Settings:
    """Read the configuration; keyword arguments override every other source."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration ({problems}); check the TUNELOOP_* environment variables "
            f"and {CONFIG_FILE_NAME}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {CONFIG_FILE_NAME}: {exc}; fix or remove the file") from None
