"""``OpenAIModel``: the seed's class, every method with its old name and meaning, done properly.

It works with no API key on the bundled local model, and against OpenAI or any OpenAI-compatible
server when ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` are set. Threads live in the local store, not
at OpenAI (whose Assistants API is gone); every exchange is logged with its sentiment.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from tuneloop.config import Settings
from tuneloop.conversation.assistants import catalog
from tuneloop.conversation.chat import ChatSession, Reply
from tuneloop.conversation.describe import DESCRIBE_PROMPT, parse_json_object, post_chat, refusal_of_images
from tuneloop.curation import labels, ratings
from tuneloop.curation.selection import select
from tuneloop.datasets import Dataset, DialogueFilter, build_dataset, read_csv_text, read_source
from tuneloop.errors import InputError, JobNotFoundError, ModelCannotSeeError
from tuneloop.providers.images import Detail, prepare_image
from tuneloop.runtime import Runtime
from tuneloop.training import FineTuning
from tuneloop.util.fileio import atomic_write_text


class OpenAIModel:
    """Chat with an assistant, keep the dialogue with its sentiment, and fine-tune on it.

    Args:
        system_instruction: sent as the system message of every exchange (overrides the assistant's).
        model_name: a model id; default: the assistant's model, then ``TUNELOOP_MODEL``, then the
            provider's default (``smollm2-135m-instruct`` locally, ``gpt-4o-mini`` at OpenAI).
        assistant_id: an id from the assistants file; default: the built-in assistant.
        thread_id: continue a logged thread instead of starting a new one.
        settings: configuration; default: environment and ``tuneloop.toml``.
    """

    def __init__(
        self,
        system_instruction: str | None = None,
        model_name: str | None = None,
        assistant_id: str | None = None,
        *,
        thread_id: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.runtime = Runtime(settings)
        self._session = ChatSession(
            self.runtime,
            assistant_id=assistant_id,
            model=model_name,
            system_instruction=system_instruction,
            thread_id=thread_id,
        )
        self.current_job_id: str | None = None
        self.last_reply: Reply | None = None

    @property
    def model(self) -> str:
        return self._session.model

    @property
    def assistant_id(self) -> str:
        return self._session.assistant.id

    @property
    def system_instruction(self) -> str | None:
        return self._session.system_instruction

    @system_instruction.setter
    def system_instruction(self, value: str | None) -> None:
        self._session.system_instruction = value

    @property
    def thread_id(self) -> str | None:
        """The id of the current thread in the store (None before the first exchange)."""
        return self._session.thread_id

    @property
    def list_models(self) -> list[str]:
        """Ids of the models available now: local ones, and the provider's when one is configured."""
        infos, _problem = self.runtime.models()
        return [info.id for info in infos]

    @property
    def list_assistants(self) -> list[str]:
        """Names of the available assistants (the built-in default first)."""
        return [assistant.name for assistant in catalog(self.runtime.settings).all()]

    def set_assistant(self, assistant_id: str) -> None:
        """Use another assistant from now on; the next exchange starts a new thread."""
        self._session.set_assistant(assistant_id)

    def determine_sentiment(self, message: str) -> str:
        """'positive', 'negative' or 'neutral'; 'unknown' for a language the analyzer does not cover (the
        ``sentiment_analyzer`` setting: multilingual by default, English through VADER)."""
        return labels.labeller_for(self.runtime)(message).label

    def _reply_id(self, message_id: int | None) -> int:
        if message_id is not None:
            return message_id
        if self.last_reply is None:
            raise InputError("no reply yet: ask something first, or pass the message id (#N in `tuneloop logs show`)")
        return self.last_reply.exchange.assistant.id

    def rate(self, rating: str | int, note: str | None = None, message_id: int | None = None) -> None:
        """Rate a logged reply (default: the last one) ``up``/``down``/``none``, with an optional note saying why.
        Ratings win over the next turn's sentiment when ``dynamic_train`` picks what to learn from."""
        ratings.rate(self.runtime.db.dialogue, self._reply_id(message_id), rating, note)

    def correct(self, text: str, message_id: int | None = None) -> int:
        """Write the reply the model should have given (default: for the last reply); kept beside the original,
        it becomes a supervised example and a DPO pair in ``dynamic_train``. Returns the correction's id."""
        return ratings.correct(self.runtime.db.dialogue, self._reply_id(message_id), text, source="library").id

    def ask(self, message: str, system_instruction: str | None = None, attempts: int = 3) -> str:
        """Send ``message`` in the current thread and return the reply.

        The exchange is logged with the sentiment of both turns. ``attempts`` is how many times a
        failing remote call is tried (with the SDK's backoff); errors raise ``tuneloop.errors`` types.
        """
        reply = self._session.send(message, system_instruction=system_instruction, attempts=attempts)
        self.last_reply = reply
        return reply.text

    @property
    def dialogue(self) -> list[dict[str, Any]]:
        """Messages of the current thread in the seed's shape: role, content, sentiment."""
        return [m.to_dialogue() for m in self._session.messages()]

    @property
    def dialogue_log_path(self) -> Path | None:
        if self.thread_id is None:
            return None
        return self.runtime.settings.home / "dialogues" / f"{self.thread_id}.json"

    def save_dialogue(self, path: str | Path | None = None) -> Path | None:
        """Write the current thread to a JSON file (atomically) and return its path.

        Every exchange is already in the store; this export is for people and tools that want the
        seed's file. Returns None before the first exchange.
        """
        target = Path(path) if path else self.dialogue_log_path
        if target is None:
            return None
        atomic_write_text(target, json.dumps(self.dialogue, ensure_ascii=False, indent=2) + "\n")
        return target

    def _save_dialogue(self, path: str | Path | None = None) -> Path | None:
        """The seed's name for :meth:`save_dialogue`, kept so that its callers keep working."""
        return self.save_dialogue(path)

    def describe_image(
        self,
        image_path: str | Path | bytes,
        prompt: str | None = None,
        system_instruction: str | None = None,
        *,
        detail: Detail = "auto",
        json_reply: bool | None = None,
        max_tokens: int | None = None,
    ) -> str | dict[str, Any]:
        """Ask the model about an image; returns the reply, or a ``dict`` when JSON was asked for.

        The image is checked, turned upright, converted and resized first (:mod:`tuneloop.providers.images`) and sent
        as an ``image_url`` content part. JSON is asked for when the prompt mentions JSON or ``json_reply=True``; a
        reply that is not a JSON object then raises :class:`~tuneloop.errors.ReplyNotJSONError`. The exchange is logged
        in the thread with a reference to the image (hash, size, format), not its bytes. A text-only model raises
        :class:`~tuneloop.errors.ModelCannotSeeError`.
        """
        if self.runtime.accepts_images(self.model) is False:
            raise ModelCannotSeeError(self.model)
        image = prepare_image(image_path, detail=detail, max_bytes=self._image_limit)
        text = prompt or DESCRIBE_PROMPT
        wants_json = json_reply if json_reply is not None else "json" in text.lower()
        if wants_json and "json" not in text.lower():
            text += " Reply with a JSON object only."
        with refusal_of_images(self.model):
            reply = self._session.send(text, system_instruction=system_instruction, images=[image],
                                       max_tokens=max_tokens, attempts=3)
        self.last_reply = reply
        return parse_json_object(self.model, reply.text) if wants_json else reply.text

    @property
    def _image_limit(self) -> int:
        return int(self.runtime.settings.image_max_mb * 1024 * 1024)

    def describe_image_by_requests(self, image_path: str | Path | bytes, prompt: str | None = None) -> str:
        """Deprecated: :meth:`describe_image` over plain HTTP (httpx) to the configured OpenAI-compatible server."""
        warnings.warn("describe_image_by_requests is deprecated; use describe_image, which goes through the "
                      "provider (retries, errors, any endpoint)", DeprecationWarning, stacklevel=2)
        if self.runtime.accepts_images(self.model) is False:
            raise ModelCannotSeeError(self.model)
        provider = self.runtime.openai  # plain HTTP needs an HTTP endpoint: OPENAI_BASE_URL / OPENAI_API_KEY
        image = prepare_image(image_path, max_bytes=self._image_limit)
        text = prompt or DESCRIBE_PROMPT
        system = self._session.system_for(None)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": [{"type": "text", "text": text}, image.content_part()]}]
        with refusal_of_images(self.model):
            result = post_chat(provider, self.model, messages, self.runtime.settings.max_tokens)
        self.last_reply = self._session.log_reply(text, system, result, [image.reference()])
        return result.text

    @cached_property
    def fine_tuning(self) -> FineTuning:
        """The job system behind :meth:`train` (create, get, wait, cancel, events)."""
        return FineTuning(self.runtime)

    def train(
        self,
        data: str | None = None,
        data_dir: str | Path | None = None,
        data_file: str | Path | None = None,
        positive: bool = True,
        *,
        method: str = "auto",
        suffix: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        wait: bool = False,
        backend: str | None = None,
        seed: int | None = None,
    ) -> str:
        """Fine-tune on CSV data and return the job id (the job trains in the background).

        ``data`` is CSV text; ``data_dir`` a folder of CSV files; ``data_file`` a CSV or JSONL file (relative to
        ``data_dir`` when both are given). ``positive=False`` marks rows without a ``positive`` column as answers
        to avoid. The data is validated first: errors raise :class:`~tuneloop.errors.DatasetInvalidError` with the
        report, and no job starts. With ``wait=True`` it returns once the job has finished. ``backend``: ``local``
        (train here) or ``openai`` (the configured OpenAI-compatible platform); default: ``openai`` when that is
        the default provider (``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` set), else ``local``.
        """
        given = [x for x in (data, data_file) if x is not None]
        if len(given) > 1:
            raise InputError("give one of data (CSV text), data_dir or data_file, not several")
        if data is not None:
            rows = read_csv_text(data, source="data")
        elif data_file is not None:
            path = Path(data_dir) / data_file if data_dir is not None else Path(data_file)
            rows = read_source(path)
        elif data_dir is not None:
            rows = read_source(Path(data_dir))
        else:
            raise InputError("nothing to train on: give data (CSV text), data_dir or data_file")
        dataset = build_dataset(rows, negative=not positive)
        return self._start(dataset, method=method, suffix=suffix, hyperparameters=hyperparameters, wait=wait,
                           description=f"train on {', '.join(dataset.sources) or 'data'}", backend=backend, seed=seed)

    def dynamic_train(self, *, method: str = "auto", suffix: str | None = None, wait: bool = False,
                      backend: str | None = None, where: DialogueFilter | None = None) -> str:
        """Fine-tune on the dialogue log: well-received replies (and better replies after bad ones); ``where``
        keeps only the replies of a model, with some metadata, or written in a period."""
        dataset = select(self.runtime.db, where).dataset
        return self._start(dataset, method=method, suffix=suffix, hyperparameters=None, wait=wait,
                           description="dynamic_train on the dialogue log", backend=backend, seed=None)

    def _start(self, dataset: Dataset, *, method: str, suffix: str | None, hyperparameters: dict[str, Any] | None,
               wait: bool, description: str, backend: str | None, seed: int | None) -> str:
        stored, chosen, _count = self.fine_tuning.add_dataset(dataset, method=method)
        job = self.fine_tuning.create(stored.id, method=chosen, suffix=suffix, hyperparameters=hyperparameters,
                                      description=description, backend=backend or self.fine_tuning.default_backend,
                                      seed=seed)
        self.current_job_id = job.id
        self.save_job_id(job.id, description)
        if wait:
            self.fine_tuning.wait(job.id)
        return job.id

    def save_job_id(self, job_id: str, description: str, filename: str | Path = "job_ids.json") -> None:
        """Append ``{id, description, created_at}`` to a JSON list (relative names go under ``$TUNELOOP_HOME``)
        atomically, and record the description on the job in the store when the job is there."""
        path = Path(filename)
        if not path.is_absolute():
            path = self.runtime.settings.home / path
        entries: list[Any] = []
        if path.exists():
            try:
                entries = json.loads(path.read_text("utf-8") or "[]")
            except (OSError, ValueError) as exc:
                raise InputError(f"{path}: cannot be read as a JSON list ({exc}); fix or move it aside") from None
            if not isinstance(entries, list):
                raise InputError(f"{path}: holds a JSON {type(entries).__name__}, not a list; fix or move it aside")
        entries.append({"id": job_id, "description": description, "created_at": datetime.now(UTC).isoformat()})
        atomic_write_text(path, json.dumps(entries, indent=2, ensure_ascii=False) + "\n")
        # A job from elsewhere (an old OpenAI job id) is not in the store: the file is its record.
        with contextlib.suppress(JobNotFoundError):
            self.fine_tuning.jobs.update_job(job_id, description=description)
