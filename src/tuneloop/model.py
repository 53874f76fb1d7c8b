"""``OpenAIModel``: the seed's class, every method with its old name and meaning, done properly.

It works with no API key on the bundled local model, and against OpenAI or any OpenAI-compatible
server when ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` are set. Threads live in the local store, not
at OpenAI (whose Assistants API is gone); every exchange is logged with its sentiment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneloop import sentiment
from tuneloop._files import atomic_write_text
from tuneloop.chat import ChatSession, Reply
from tuneloop.config import Settings
from tuneloop.runtime import Runtime


class OpenAIModel:
    """Chat with an assistant, keep the dialogue with its sentiment, and (later) fine-tune on it.

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
        return [assistant.name for assistant in self.runtime.assistants.all()]

    def set_assistant(self, assistant_id: str) -> None:
        """Use another assistant from now on; the next exchange starts a new thread."""
        self._session.set_assistant(assistant_id)

    def determine_sentiment(self, message: str) -> str:
        """'positive', 'negative' or 'neutral', with VADER."""
        return sentiment.analyze(message).label

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

    def _save_dialogue(self, path: str | Path | None = None) -> Path | None:
        """Write the current thread to a JSON file (atomically) and return its path.

        Every exchange is already in the store; this export is for people and tools that want the
        seed's file. Returns None before the first exchange.
        """
        target = Path(path) if path else self.dialogue_log_path
        if target is None:
            return None
        atomic_write_text(target, json.dumps(self.dialogue, ensure_ascii=False, indent=2) + "\n")
        return target

    def describe_image(
        self, image_path: str | Path, prompt: str | None = None, system_instruction: str | None = None
    ) -> str | dict[str, Any]:
        raise NotImplementedError("describe_image is not implemented yet: image input arrives in a later release")

    def describe_image_by_requests(self, image_path: str | Path, prompt: str | None = None) -> str:
        raise NotImplementedError(
            "describe_image_by_requests is not implemented yet: image input arrives in a later release"
        )

    def train(
        self,
        data: str | None = None,
        data_dir: str | Path | None = None,
        data_file: str | Path | None = None,
        positive: bool = True,
    ) -> str:
        raise NotImplementedError("train is not implemented yet: fine-tuning jobs arrive in a later release")

    def dynamic_train(self) -> str:
        raise NotImplementedError("dynamic_train is not implemented yet: fine-tuning jobs arrive in a later release")

    def save_job_id(self, job_id: str, description: str, filename: str = "job_ids.json") -> None:
        raise NotImplementedError("save_job_id is not implemented yet: job tracking arrives in a later release")
