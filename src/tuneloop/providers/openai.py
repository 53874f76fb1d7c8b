"""The ``openai`` provider: OpenAI or any OpenAI-compatible server, through the official SDK.

Chat Completions only: it is the protocol every compatible server speaks. Retries, timeouts and
backoff are the SDK's; error messages never carry the API key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tuneloop.config import Settings
from tuneloop.engine.generation import GenerationResult, TextStream
from tuneloop.errors import (
    ProviderAuthError,
    ProviderConnectionError,
    ProviderResponseError,
    UnknownModelError,
)
from tuneloop.providers.base import ModelInfo, Provider

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")


# OpenAI's chat models that accept images, fine-tuned ones included; audio/search/realtime variants do not.
_VISION_FAMILIES = re.compile(r"^(ft:)?(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-5|o1|o3|o4)")
_NOT_VISION = re.compile(r"audio|tts|transcribe|realtime|search|codex|nano-\d{4}-instant")


def known_vision_model(model: str) -> bool:
    """True for OpenAI's vision-capable chat models (the gpt-4o, gpt-4.1 and gpt-5 families, o-series…)."""
    return bool(_VISION_FAMILIES.match(model)) and not _NOT_VISION.search(model)


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        import openai

        self._openai = openai
        self.settings = settings
        self.base_url = settings.openai_base_url
        self._secret = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self.client = openai.OpenAI(
            # A local compatible server may need no key, but the SDK insists on one.
            api_key=self._secret or "no-key-configured",
            base_url=self.base_url,
            timeout=settings.request_timeout,
            max_retries=0,
        )

    @property
    def where(self) -> str:
        return self.base_url or "api.openai.com"

    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "[key]")
        return _KEY_PATTERN.sub("[key]", text)

    def _translate(self, exc: Exception, model: str | None = None) -> Exception:
        openai = self._openai
        if isinstance(exc, openai.APIConnectionError):
            return ProviderConnectionError(
                f"cannot reach the provider at {self.where}: {self._scrub(str(exc))}; "
                "check OPENAI_BASE_URL and the network"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthError(
                f"the provider at {self.where} refused the API key ({exc.status_code}); "
                "check OPENAI_API_KEY"
            )
        if isinstance(exc, openai.NotFoundError) and model is not None:
            return UnknownModelError(
                model, None, f"the provider at {self.where} does not serve it; run `tuneloop models`"
            )
        if isinstance(exc, openai.APIStatusError):
            return ProviderResponseError(
                f"the provider at {self.where} answered {exc.status_code}: {self._scrub(exc.message)}"
            )
        if isinstance(exc, openai.OpenAIError):
            return ProviderResponseError(f"the provider at {self.where} failed: {self._scrub(str(exc))}")
        return exc

    def model_ids(self) -> list[str]:
        try:
            return sorted(model.id for model in self.client.models.list())
        except self._openai.OpenAIError as exc:
            raise self._translate(exc) from None

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(model_id, self.name, "remote") for model_id in self.model_ids()]

    def _token_limit(self, max_tokens: int) -> dict[str, int]:
        # OpenAI's newer models accept only max_completion_tokens; many compatible servers know only max_tokens.
        if self.base_url is None or "api.openai.com" in self.base_url:
            return {"max_completion_tokens": max_tokens}
        return {"max_tokens": max_tokens}

    def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        retries: int = 0,
        should_stop: Callable[[], bool] | None = None,
    ) -> GenerationResult:
        client = self.client.with_options(max_retries=max(0, retries))
        options = self._options(temperature, max_tokens, stop)
        started = time.perf_counter()
        try:
            completion = client.chat.completions.create(model=model, messages=list(messages), **options)
        except self._openai.OpenAIError as exc:
            raise self._translate(exc, model) from None
        if not completion.choices:
            raise ProviderResponseError(f"the provider at {self.where} returned no choices for model {model}")
        choice = completion.choices[0]
        seconds = time.perf_counter() - started
        return GenerationResult(
            text=choice.message.content or "",
            tokens_in=completion.usage.prompt_tokens if completion.usage else 0,
            tokens_out=completion.usage.completion_tokens if completion.usage else 0,
            finish_reason=choice.finish_reason,
            first_token_seconds=seconds,
            seconds=seconds,
        )

    def _options(self, temperature: float, max_tokens: int, stop: Sequence[str] | None) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": temperature, **self._token_limit(max_tokens)}
        if stop:
            options["stop"] = list(stop)
        return options

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
        client = self.client.with_options(max_retries=max(0, retries))
        options = self._options(temperature, max_tokens, stop)
        started = time.perf_counter()
        try:
            response = client.chat.completions.create(
                model=model,
                messages=list(messages),
                stream=True,
                stream_options={"include_usage": True},
                **options,
            )
        except self._openai.OpenAIError as exc:
            raise self._translate(exc, model) from None
        result = GenerationResult()
        return TextStream(self._pieces(response, result, started, model, should_stop), result)

    def _pieces(
        self,
        response: Any,
        result: GenerationResult,
        started: float,
        model: str,
        should_stop: Callable[[], bool] | None,
    ) -> Iterator[str]:
        result.finish_reason = "interrupted"
        try:
            for chunk in response:
                if should_stop is not None and should_stop():
                    return
                if chunk.usage is not None:
                    result.tokens_in = chunk.usage.prompt_tokens
                    result.tokens_out = chunk.usage.completion_tokens
                for choice in chunk.choices[:1]:
                    piece = choice.delta.content or ""
                    if piece:
                        if result.first_token_seconds is None:
                            result.first_token_seconds = time.perf_counter() - started
                        result.text += piece
                        yield piece
                    if choice.finish_reason:
                        result.finish_reason = choice.finish_reason
        except self._openai.OpenAIError as exc:
            raise self._translate(exc, model) from None
        finally:
            response.close()
            result.seconds = time.perf_counter() - started
