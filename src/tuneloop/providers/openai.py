"""The ``openai`` provider: OpenAI or any OpenAI-compatible server, through the official SDK.

Chat Completions only: it is the protocol every compatible server speaks. Retries, timeouts and backoff
follow :mod:`tuneloop.util.retry` through the SDK's own retry loop; error messages never carry the API key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tuneloop.config import Settings
from tuneloop.errors import (
    ProviderAuthError,
    ProviderConnectionError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStreamCutError,
    ProviderTimeoutError,
    UnknownModelError,
)
from tuneloop.generation import GenerationOptions, GenerationResult, TextStream
from tuneloop.providers.base import ModelInfo, Provider, StopCheck
from tuneloop.util.retry import RetryPolicy, openai_client

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")


# OpenAI's chat models that accept images, fine-tuned ones included; audio/search/realtime variants do not.
_VISION_FAMILIES = re.compile(r"^(ft:)?(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-5|o1|o3|o4)")
_NOT_VISION = re.compile(r"audio|tts|transcribe|realtime|search|codex|nano-\d{4}-instant")


# OpenAI's models known to take text only.
_TEXT_ONLY = re.compile(r"^(ft:)?(gpt-3\.5|gpt-4(-0314|-0613|-32k.*)?(:|$)|babbage|davinci|text-|tts-|whisper|dall-e|"
                        r"omni-moderation|o1-mini|o3-mini)")


def known_text_model(model: str) -> bool:
    """True for OpenAI models known to refuse images (gpt-3.5, the first gpt-4, embeddings, audio…)."""
    return bool(_TEXT_ONLY.match(model)) or (bool(_VISION_FAMILIES.match(model)) and bool(_NOT_VISION.search(model)))


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
        self.policy = RetryPolicy.from_settings(settings)
        self._modalities: dict[str, list[str]] | None = None
        # A local compatible server may need no key, but the SDK insists on one.
        self.client = openai_client(self.policy, api_key=self._secret or "no-key-configured", base_url=self.base_url)

    @property
    def where(self) -> str:
        return self.base_url or "api.openai.com"

    def scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "[key]")
        return _KEY_PATTERN.sub("[key]", text)

    def translate_error(self, exc: Exception, model: str | None = None) -> Exception:
        openai = self._openai
        tries = f"{self.policy.retries + 1} attempts"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(
                f"the provider at {self.where} did not answer in time ({tries}, {self.policy.read_timeout:g} s to "
                f"read, {self.policy.connect_timeout:g} s to connect); raise TUNELOOP_REQUEST_TIMEOUT or retry later"
            )
        if isinstance(exc, openai.RateLimitError):
            asked = self.policy.asked_wait(exc.response.headers)
            if asked is not None and asked > self.policy.max_wait:
                return ProviderRateLimitError(
                    f"the provider at {self.where} is rate-limiting and asks to wait {asked:g} s, longer than "
                    f"TUNELOOP_RETRY_MAX_WAIT ({self.policy.max_wait:g} s); try again later", asked)
            return ProviderRateLimitError(
                f"the provider at {self.where} answered 429 (rate limit) {tries} in a row: "
                f"{self.scrub(exc.message)}; try again later or raise TUNELOOP_RETRIES", asked)
        if isinstance(exc, openai.APIConnectionError):
            return ProviderConnectionError(
                f"cannot reach the provider at {self.where}: {self.scrub(str(exc))}; "
                "check OPENAI_BASE_URL and the network"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthError(
                f"the provider at {self.where} refused the API key ({exc.status_code}); "
                "check OPENAI_API_KEY"
            )
        if isinstance(exc, openai.NotFoundError) and model is not None:
            return UnknownModelError(model, None, f"the provider at {self.where} does not serve it").with_hint(
                "`tuneloop models` lists the models on offer")
        if isinstance(exc, openai.APIStatusError):
            retried = f" ({tries})" if self.policy.retryable(exc.status_code) and self.policy.retries else ""
            return ProviderResponseError(
                f"the provider at {self.where} answered {exc.status_code}{retried}: {self.scrub(exc.message)}",
                status=exc.status_code,
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderResponseError(
                f"the provider at {self.where} sent an answer that is not OpenAI's shape: {self.scrub(str(exc))}"
            )
        if isinstance(exc, openai.OpenAIError):
            return ProviderResponseError(f"the provider at {self.where} failed: {self.scrub(str(exc))}")
        if isinstance(exc, ValueError):  # the SDK leaves an answer that is not JSON as json's own error
            return ProviderResponseError(
                f"the provider at {self.where} answered with something that is not valid JSON ({exc}); "
                "check OPENAI_BASE_URL points at an OpenAI-compatible /v1"
            )
        return exc

    def model_ids(self) -> list[str]:
        try:
            return sorted(model.id for model in self.client.models.list())
        except (self._openai.OpenAIError, ValueError) as exc:
            raise self.translate_error(exc) from None

    def input_modalities(self) -> dict[str, list[str]]:
        """What each served model takes, where the server says so (``input_modalities`` in ``/v1/models``, as
        `tuneloop serve` answers); read once. Empty when the server does not say, or cannot be reached."""
        if self._modalities is None:
            try:
                listed = list(self.client.models.list())
            except (self._openai.OpenAIError, ValueError):
                return {}
            self._modalities = {m.id: said for m in listed
                                if isinstance(said := (m.model_extra or {}).get("input_modalities"), list)}
        return self._modalities

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(model_id, self.name, "remote") for model_id in self.model_ids()]

    def _token_limit(self, max_tokens: int) -> dict[str, int]:
        # OpenAI's newer models accept only max_completion_tokens; many compatible servers know only max_tokens.
        if self.base_url is None or "api.openai.com" in self.base_url:
            return {"max_completion_tokens": max_tokens}
        return {"max_tokens": max_tokens}

    def complete(self, messages: Sequence[dict[str, Any]], options: GenerationOptions = GenerationOptions(), *,
                 model: str) -> GenerationResult:
        """The whole reply in one request (no stream); its tool calls in ``result.tool_calls``."""
        client = self._client(options.retries)
        started = time.perf_counter()
        try:
            completion = client.chat.completions.create(model=model, messages=list(messages),
                                                        **self._request(options))
        except (self._openai.OpenAIError, ValueError) as exc:
            raise self.translate_error(exc, model) from None
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

    def _client(self, retries: int | None) -> Any:
        """The client, with ``retries`` instead of the configured number (None: the configured number)."""
        return self.client if retries is None else self.client.with_options(max_retries=max(0, retries))

    def _request(self, options: GenerationOptions) -> dict[str, Any]:
        """The request's fields for ``options``: the given ones, passed through unchanged (the server at the other
        end enforces them), and the token limit under the name this server knows."""
        return {**options.wire(), **self._token_limit(options.max_tokens)}

    def stream(self, messages: Sequence[dict[str, Any]], options: GenerationOptions = GenerationOptions(), *,
               model: str, should_stop: StopCheck | None = None) -> TextStream:
        client = self._client(options.retries)
        started = time.perf_counter()
        try:
            response = client.chat.completions.create(
                model=model,
                messages=list(messages),
                stream=True,
                stream_options={"include_usage": True},
                **self._request(options),
            )
        except (self._openai.OpenAIError, ValueError) as exc:
            raise self.translate_error(exc, model) from None
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
        result.finish_reason = None
        try:
            for chunk in response:
                if should_stop is not None and should_stop():
                    result.finish_reason = "interrupted"
                    return
                if chunk.usage is not None:
                    result.tokens_in = chunk.usage.prompt_tokens
                    result.tokens_out = chunk.usage.completion_tokens
                for choice in chunk.choices[:1]:
                    _collect_calls(result, choice.delta.tool_calls)
                    if choice.logprobs is not None and choice.logprobs.content:
                        result.logprobs = (result.logprobs or []) + [
                            entry.model_dump(exclude_none=True) for entry in choice.logprobs.content]
                    piece = choice.delta.content or ""
                    if piece:
                        if result.first_token_seconds is None:
                            result.first_token_seconds = time.perf_counter() - started
                        result.text += piece
                        yield piece
                    if choice.finish_reason:
                        result.finish_reason = choice.finish_reason
        except self._openai.OpenAIError as exc:
            raise self._cut(result, self.scrub(str(exc))) if result.text else self.translate_error(exc, model) from None
        except (GeneratorExit, KeyboardInterrupt):
            result.finish_reason = result.finish_reason or "interrupted"
            raise
        except Exception as exc:  # noqa: BLE001 - the HTTP library's own errors (reset, invalid chunk, bad JSON)
            raise self._cut(result, self.scrub(f"{type(exc).__name__}: {exc}")) from None
        finally:
            response.close()
            result.seconds = time.perf_counter() - started
        if result.finish_reason is None:
            raise self._cut(result, "the stream ended without a finish_reason")

    def _cut(self, result: GenerationResult, why: str) -> ProviderStreamCutError:
        result.finish_reason = "error"
        return ProviderStreamCutError(
            f"the reply from {self.where} was cut off after {len(result.text)} characters ({why}); it is not logged, "
            "send the message again"
        )


def _collect_calls(result: GenerationResult, deltas: Any) -> None:
    """Tool calls streamed in pieces (OpenAI's chunk shape: an index, then the id and name, then the arguments a
    piece at a time) put together in ``result.tool_calls``."""
    for delta in deltas or []:
        while len(result.tool_calls) <= delta.index:
            result.tool_calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = result.tool_calls[delta.index]
        if delta.id:
            call["id"] = delta.id
        if delta.function is not None:
            call["function"]["name"] += delta.function.name or ""
            call["function"]["arguments"] += delta.function.arguments or ""
