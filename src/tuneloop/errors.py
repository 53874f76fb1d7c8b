"""One exception tree for everything tuneloop raises on purpose.

Catch ``TuneloopError`` for all of them, or a subclass for exactly what you mean. Every message says
what happened, to which input, and what to do next; none of them ever contains an API key.
"""

from __future__ import annotations


class TuneloopError(Exception):
    """Base class of every error tuneloop raises on purpose."""


class InputError(TuneloopError, ValueError):
    """An argument given by the caller cannot be used as it is."""


class ConfigError(TuneloopError):
    """The configuration (environment, tuneloop.toml) is invalid."""


class ModelError(TuneloopError):
    """A problem with a model: unknown, missing weights, cannot load."""


class UnknownModelError(ModelError):
    """No configured provider serves the requested model id."""

    def __init__(self, model: str, available: list[str] | None, hint: str = "") -> None:
        self.model = model
        self.available = available
        message = f"unknown model {model!r}"
        if available is not None:
            message += f": available models are {', '.join(available) if available else 'none'}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class ModelPackageMissingError(ModelError):
    """The package that ships the bundled local model is not installed."""


class ModelLoadError(ModelError):
    """Local weights exist but could not be read or converted."""


class ModelCannotSeeError(ModelError):
    """The model does not accept images (known beforehand, or its server refused the image: ``refusal``)."""

    def __init__(self, model: str, refusal: str | None = None) -> None:
        self.model = model
        self.refusal = refusal
        why = f"its server refused the image ({refusal})" if refusal else "it reads text only"
        super().__init__(
            f"model {model!r} cannot see images ({why}); choose a vision model with --model / "
            "model_name (OpenAI's gpt-4o, gpt-4.1 and gpt-5 families are known), or mark a model of another "
            f'server as one in tuneloop.toml: [models."{model}"] vision = true'
        )


class ContextLengthError(ModelError):
    """A message is too long for the model's context window."""


class AssistantError(TuneloopError):
    """A problem with assistant definitions."""


class AssistantsFileError(AssistantError):
    """The assistants file is missing, unreadable or malformed."""


class UnknownAssistantError(AssistantError):
    """No assistant has the requested id."""

    def __init__(self, assistant_id: str, available: list[str], source: str) -> None:
        self.assistant_id = assistant_id
        listed = ", ".join(available) if available else "none"
        super().__init__(
            f"unknown assistant {assistant_id!r} (known in {source}: {listed}); "
            "run `tuneloop assistants list` to see them"
        )


class StoreError(TuneloopError):
    """The dialogue store cannot be used."""


class StoreLockedError(StoreError):
    """Another process holds a lock on the database for too long."""


class StoreCorruptError(StoreError):
    """The database file is not a valid database."""


class ThreadNotFoundError(StoreError):
    """No thread has the requested id."""


class ProviderError(TuneloopError):
    """The model provider failed to answer."""


class ProviderConnectionError(ProviderError):
    """The provider could not be reached."""


class ProviderTimeoutError(ProviderConnectionError):
    """The provider took longer than the configured timeout (after every retry)."""


class ProviderStreamCutError(ProviderConnectionError):
    """A streamed reply stopped before its end; what arrived is not logged as a reply."""


class ProviderAuthError(ProviderError):
    """The provider refused the credentials."""


class ProviderResponseError(ProviderError):
    """The provider answered with an error or an unusable response (``status``: its HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderRateLimitError(ProviderResponseError):
    """The provider kept answering 429 (rate limit), or asked to wait longer than ``retry_max_wait``."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReplyNotJSONError(ProviderResponseError):
    """JSON was asked for, but the reply is not a JSON object."""

    def __init__(self, model: str, reply: str, problem: str) -> None:
        self.model = model
        self.reply = reply
        excerpt = reply if len(reply) <= 200 else reply[:200] + "…"
        super().__init__(f"model {model!r} was asked for JSON but replied with text that is not a JSON object "
                         f"({problem}): {excerpt!r}; ask again, or use a model that follows JSON instructions")


class DataError(InputError):
    """Training data cannot be read or used: names the file (and line) and what to change."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        self.source = source
        self.line = line
        where = source or ""
        if source and line is not None:
            where = f"{source}, line {line}"
        super().__init__(f"{where}: {message}" if where else message)


class DatasetInvalidError(DataError):
    """Training data failed validation; ``report`` holds the full validation report."""

    def __init__(self, message: str, report: object, *, source: str | None = None) -> None:
        self.report = report
        super().__init__(message, source=source)
