"""A conversation with an assistant: builds the context, asks the provider, logs the exchange."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.conversation.assistants import Assistant, catalog
from tuneloop.curation import labels
from tuneloop.errors import InputError
from tuneloop.generation import GenerationOptions
from tuneloop.providers import GenerationResult, Provider, TextStream
from tuneloop.providers.images import PreparedImage
from tuneloop.runtime import Runtime
from tuneloop.store import Exchange, Message, Thread
from tuneloop.store.dialogue import new_thread_id


@dataclass(frozen=True)
class Reply:
    """One logged exchange: the reply text and both stored messages (with their sentiment)."""

    text: str
    thread_id: str
    model: str
    provider: str
    exchange: Exchange
    result: GenerationResult

    @property
    def sentiment(self) -> str:
        return self.exchange.assistant.sentiment

    def to_dict(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "model": self.model,
            "provider": self.provider,
            "reply": self.text,
            "finish_reason": self.result.finish_reason,
            "sentiment": self.exchange.assistant.sentiment,
            "sentiment_score": self.exchange.assistant.sentiment_score,
            "user_sentiment": self.exchange.user.sentiment,
            "message_id": self.exchange.assistant.id,
            "usage": {
                "prompt_tokens": self.result.tokens_in,
                "completion_tokens": self.result.tokens_out,
                "total_tokens": self.result.tokens_in + self.result.tokens_out,
            },
            "latency_ms": self.exchange.assistant.latency_ms,
        }


class ReplyStream:
    """Text pieces as they arrive; the exchange is logged when the stream ends or is interrupted."""

    def __init__(self, session: ChatSession, text: str, system: str | None, stream: TextStream) -> None:
        self._session = session
        self._text = text
        self._system = system
        self._stream = stream
        self.reply: Reply | None = None

    def __iter__(self) -> Iterator[str]:
        finished = stopped = False
        try:
            yield from self._stream
            finished = True
        except (GeneratorExit, KeyboardInterrupt):
            stopped = True
            raise
        finally:
            self._stream.close()
            # A reply the user stopped (Ctrl-C, a client that went away) is logged with what it has, marked
            # finish_reason "interrupted"; one that failed (a stream cut by the provider) is not logged at all.
            if finished or (stopped and self._stream.result.text):
                if not finished:
                    self._stream.result.finish_reason = "interrupted"
                self.reply = self._session.log_reply(self._text, self._system, self._stream.result)

    def read(self) -> Reply:
        for _ in self:
            pass
        assert self.reply is not None
        return self.reply


class ChatSession:
    """One thread with one assistant. The thread is created with its first exchange."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        assistant_id: str | None = None,
        model: str | None = None,
        system_instruction: str | None = None,
        thread_id: str | None = None,
        labeller: labels.Labeller | None = None,
    ) -> None:
        self.runtime = runtime
        self.thread: Thread | None = None
        if thread_id is not None:
            self.thread = runtime.db.dialogue.get_thread(thread_id)
            assistant_id = assistant_id or self.thread.assistant_id
            model = model or self.thread.model
        self.labeller = labeller or labels.labeller_for(runtime)
        self.catalog = catalog(runtime.settings)
        self.assistant: Assistant = self.catalog.get(assistant_id)
        self.system_instruction = system_instruction
        self.provider: Provider
        self.provider, self.model = runtime.resolve(model or self.assistant.model)
        self._next_thread_id = new_thread_id()

    @property
    def thread_id(self) -> str | None:
        return self.thread.id if self.thread else None

    def set_assistant(self, assistant_id: str) -> None:
        """Switch assistants; the next exchange starts a new thread (a thread has one assistant)."""
        self.assistant = self.catalog.get(assistant_id)
        self.provider, self.model = self.runtime.resolve(self.assistant.model)
        self.new_thread()

    def new_thread(self) -> None:
        self.thread = None
        self._next_thread_id = new_thread_id()

    def messages(self) -> list[Message]:
        if self.thread is None:
            return []
        return self.runtime.db.dialogue.messages(self.thread.id)

    def system_for(self, override: str | None) -> str | None:
        """The system instruction in force: ``override``, else the session's, the thread's, the assistant's."""
        if override:
            return override
        if self.system_instruction:
            return self.system_instruction
        if self.thread and self.thread.system_instruction:
            return self.thread.system_instruction
        return self.assistant.instructions

    def _context(self, text: str, system: str | None, images: Sequence[PreparedImage] = ()) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": m.role, "content": m.content} for m in self.messages() if m.role in ("user", "assistant")
        ]
        if images:  # earlier turns go as text; only this turn's images are sent
            content: str | list[dict[str, Any]] = [{"type": "text", "text": text}, *(i.content_part() for i in images)]
        else:
            content = text
        messages.append({"role": "user", "content": content})
        return messages

    def _prepare(
        self,
        text: str,
        system_instruction: str | None,
        max_tokens: int | None,
        temperature: float | None,
        attempts: int | None,
        images: Sequence[PreparedImage] = (),
    ) -> tuple[list[dict[str, Any]], str | None, GenerationOptions]:
        if not text or not text.strip():
            raise InputError("the message is empty; type something to send", param="message")
        # Fail before generating if the log cannot be written.
        self.runtime.db.check_writable()
        system = self.system_for(system_instruction)
        options = GenerationOptions(
            temperature=self.assistant.temperature if temperature is None else temperature,
            max_tokens=max_tokens or self.runtime.settings.max_tokens,
            retries=None if attempts is None else max(0, attempts - 1))
        return self._context(text, system, images), system, options

    def stream(
        self,
        text: str,
        *,
        system_instruction: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        attempts: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ReplyStream:
        """Send ``text``; iterate the result for the reply as it is generated."""
        messages, system, options = self._prepare(text, system_instruction, max_tokens, temperature, attempts)
        stream = self.provider.stream(messages, options, model=self.model, should_stop=should_stop)
        return ReplyStream(self, text, system, stream)

    def send(
        self,
        text: str,
        *,
        system_instruction: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        attempts: int | None = None,
        images: Sequence[PreparedImage] = (),
    ) -> Reply:
        """Send ``text`` (with ``images``, for a vision model) and return the whole reply once generated and logged;
        the log keeps a reference to each image (hash, size, format), not its bytes."""
        messages, system, options = self._prepare(text, system_instruction, max_tokens, temperature, attempts, images)
        return self.log_reply(text, system, self.provider.complete(messages, options, model=self.model),
                         [image.reference() for image in images] or None)

    def log_reply(self, text: str, system: str | None, result: GenerationResult,
                  attachments: list[dict[str, Any]] | None = None) -> Reply:
        """Log ``text`` and the generated reply in this session's thread (created on the first exchange)."""
        thread_id = self.thread.id if self.thread else self._next_thread_id
        exchange = labels.log_exchange(
            self.runtime.db.dialogue,
            thread_id,
            text,
            result.text,
            model=self.model,
            system_instruction=system,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            latency_ms=int(result.seconds * 1000),
            finish_reason=result.finish_reason,
            attachments=attachments,
            create=self.thread is None,
            assistant=self.assistant.model_dump(include={"id", "name", "model", "instructions", "temperature"}),
            labeller=self.labeller,
        )
        self.thread = self.runtime.db.dialogue.get_thread(thread_id)
        return Reply(result.text, thread_id, self.model, self.provider.name, exchange, result)
