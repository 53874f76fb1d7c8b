"""One exception tree for everything tuneloop raises on purpose.

Catch ``TuneloopError`` for all of them, or a subclass for exactly what you mean. Every message says
what happened, to which input, and what to do next; none of them ever contains an API key.
"""

from __future__ import annotations

from typing import ClassVar, Self


class TuneloopError(Exception):
    """Base class of every error tuneloop raises on purpose. Its message says what happened and what to do in
    words any caller can act on; ``hint``, when set, is what to type at the command line (`tuneloop logs show`,
    ``--method supervised``): the CLI prints it after the message, the API and the dashboard never show it."""

    hint: str | None = None

    def with_hint(self, hint: str) -> Self:
        """This error with the command-line ``hint`` (``raise SomeError(...).with_hint("use --force")``)."""
        self.hint = hint
        return self


class InputError(TuneloopError, ValueError):
    """An argument given by the caller cannot be used as it is (``param``: its name, when one names it)."""

    def __init__(self, message: str, *args: object, param: str | None = None) -> None:
        super().__init__(message, *args)
        if param is not None:
            self.param = param


class RequestFieldError(InputError):
    """A request field that cannot be used; ``param`` names it (always)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param)


class StructuredOutputError(InputError):
    """A schema, a tool or a tool call the request gives cannot be used (``param`` names where)."""


class ImageError(InputError):
    """An image cannot be used: names the file and what to do."""

    def __init__(self, message: str, *, source: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class ImageTooLargeError(ImageError):
    """The file, or the pixel count its header declares, is over the limit."""


class ImageInputError(InputError):
    """An image part of a chat message cannot be used; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param)


class NotAReplyError(InputError):
    """The message named is not an assistant reply (a correction or a rating needs one)."""


class ConfigError(TuneloopError):
    """The configuration (environment, tuneloop.toml) is invalid."""


class ModelError(TuneloopError):
    """A problem with a model: unknown, missing weights, cannot load."""


class UnknownModelError(ModelError):
    """No configured provider serves the requested model id (``reason``: why, or how to get one)."""

    def __init__(self, model: str, available: list[str] | None, reason: str = "") -> None:
        self.model = model
        self.available = available
        message = f"unknown model {model!r}"
        if available is not None:
            message += f": available models are {', '.join(available) if available else 'none'}"
        if reason:
            message += f"; {reason}"
        super().__init__(message)


class ModelPackageMissingError(ModelError):
    """The package that ships the bundled local model is not installed."""


class ModelLoadError(ModelError):
    """Local weights exist but could not be read or converted."""


class FastConversionError(ModelLoadError):
    """onnxruntime-genai's builder could not convert this model (an architecture it does not know, for one)."""


class GGUFExportError(ModelError):
    """The model cannot be written as GGUF (an architecture or tokenizer this writer does not know)."""


class ModelCannotSeeError(ModelError):
    """The model does not accept images (known beforehand, or its server refused the image: ``refusal``)."""

    def __init__(self, model: str, refusal: str | None = None) -> None:
        self.model = model
        self.refusal = refusal
        why = f"its server refused the image ({refusal})" if refusal else "it reads text only"
        super().__init__(
            f"model {model!r} cannot see images ({why}); choose a vision model (OpenAI's gpt-4o, gpt-4.1 and "
            "gpt-5 families are known), or mark a model of another server as one in tuneloop.toml: "
            f'[models."{model}"] vision = true'
        )
        self.hint = "--model chooses the model (model_name in Python)"


class ContextLengthError(ModelError):
    """A message is too long for the model's context window."""


class ModelUnusableError(ModelError):
    """A registered model's files cannot be used as they are (no chat template, unknown architecture…)."""


class ModelTooLargeError(ModelError):
    """The model's weights do not fit in the memory of the device chosen."""


class AssistantError(TuneloopError):
    """A problem with assistant definitions."""


class AssistantsFileError(AssistantError):
    """The assistants file is missing, unreadable or malformed."""


class UnknownAssistantError(AssistantError):
    """No assistant has the requested id."""

    def __init__(self, assistant_id: str, available: list[str], source: str) -> None:
        self.assistant_id = assistant_id
        listed = ", ".join(available) if available else "none"
        super().__init__(f"unknown assistant {assistant_id!r} (known in {source}: {listed})")
        self.hint = "`tuneloop assistants list` lists them"


class StoreError(TuneloopError):
    """The dialogue store cannot be used."""


class StoreLockedError(StoreError):
    """Another process holds a lock on the database for too long."""


class StoreCorruptError(StoreError):
    """The database file is not a valid database."""


# What a request parameter that names an id is called, by the kind of thing it names: the default ``param`` of
# a NotFoundError (the path parameters of OpenAI's API, as its SDK names them).
ID_PARAMS = {
    "thread": "thread_id",
    "conversation": "conversation_id",
    "item": "item_id",
    "response": "response_id",
    "chat.completion": "completion_id",
    "fine_tuning.job": "fine_tuning_job_id",
    "file": "file_id",
    "message": "message_id",
    "judge": "judge",
    "task": "task_id",
}


class NotFoundError(StoreError):
    """Nothing of ``kind`` (``"conversation"``, ``"fine_tuning.job"``…) has the id ``ident``.

    ``param`` is the request parameter that named it (default: the kind's id parameter, ``ID_PARAMS``; None when
    unknown); ``within`` the id of what should hold it (the conversation of an item), if any. The message, shown
    by the CLI, may say where the store is; the server answers with the kind and the id only.
    """

    default_kind: ClassVar[str] = "object"

    def __init__(self, message: str, ident: str | None = None, *, kind: str | None = None,
                 param: str | None = None, within: str | None = None) -> None:
        super().__init__(message)
        self.ident = ident
        self.kind = kind or self.default_kind
        self.param = param or ID_PARAMS.get(self.kind)
        self.within = within

    def named_by(self, param: str) -> Self:
        """The same error, named by request parameter ``param`` (the service knows which input it read)."""
        named = type(self)(str(self), self.ident, kind=self.kind, param=param, within=self.within)
        named.hint = self.hint
        return named


class ThreadNotFoundError(NotFoundError):
    """No thread (of the kind asked for: conversation, response, chat.completion) has the requested id."""

    default_kind = "thread"


class ItemNotFoundError(NotFoundError):
    """No item with that id in the conversation (``within``)."""

    default_kind = "item"


class ObjectNotFoundError(NotFoundError):
    """No stored response or chat completion with that id (``kind`` says which was asked for)."""


class MessageNotFoundError(NotFoundError):
    """No logged message has that id, or none of the role asked for (a correction or a rating needs a reply)."""

    default_kind = "message"


class JudgeNotFoundError(NotFoundError):
    """No judge (criterion) has that name."""

    default_kind = "judge"


class EvalRunNotFoundError(NotFoundError):
    """No kept eval run has that id."""

    default_kind = "eval_run"


class JobNotFoundError(NotFoundError):
    """No fine-tuning job has the requested id (``ident``)."""

    default_kind = "fine_tuning.job"


class TaskNotFoundError(NotFoundError):
    """No task (long work: a judge run, an eval run, a fine-tuning job…) has the requested id (``ident``)."""

    default_kind = "task"


class FileNotFoundInStoreError(NotFoundError):
    """No stored file has the requested id (``ident``)."""

    default_kind = "file"


class TaskFailed(TuneloopError):
    """A task's own failure (long work: a job, a run), with the ``code`` its error gets and, optionally, the
    ``event`` its log shows for it."""

    def __init__(self, message: str, code: str = "task_failed", event: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.event = event


class TaskStateError(TuneloopError):
    """A task is not in a state that allows the operation (one is already running; cancelling a finished one)."""


class JobStateError(TaskStateError):
    """The job is not in a state that allows the operation (e.g. cancelling a finished job)."""


class ProviderError(TuneloopError):
    """The model provider failed to answer."""


class ProviderConnectionError(ProviderError):
    """The provider could not be reached."""


class ProviderTimeoutError(ProviderConnectionError):
    """The provider took longer than the configured timeout (after every retry)."""


class ProviderStreamCutError(ProviderConnectionError):
    """A streamed reply stopped before its end; what arrived is not logged as a reply."""


class ImportInterruptedError(ProviderError):
    """The vendor failed part-way (after the retries); what was imported is kept (``summary``): run the import
    again."""

    def __init__(self, message: str, summary: object) -> None:
        super().__init__(message)
        self.summary = summary


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
    """Training data failed validation; ``report`` holds the full validation report (``param``: the request's
    field that named the file, when one did)."""

    def __init__(self, message: str, report: object, *, source: str | None = None,
                 file_id: str | None = None) -> None:
        self.report = report
        self.file_id = file_id  # the stored file's id, when it is one (how a client named it)
        super().__init__(message, source=source)

    def named_by(self, param: str) -> DatasetInvalidError:
        """The same error, named by request parameter ``param`` (``training_file``)."""
        self.param = param
        return self


class EvalFileError(DataError):
    """An eval file that cannot be read or has no questions with expected answers."""
