"""Asking a model about an image (``OpenAIModel.describe_image``): the default prompt, JSON replies, and the deprecated
plain-HTTP path."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from tuneloop.errors import (
    ModelCannotSeeError,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
    ReplyNotJSONError,
)
from tuneloop.providers.base import GenerationResult
from tuneloop.providers.openai import OpenAIProvider
from tuneloop.util.retry import send_with_retries

DESCRIBE_PROMPT = "Describe this image."
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def parse_json_object(model: str, reply: str) -> dict[str, Any]:
    """The JSON object in a reply (a surrounding ```json fence is allowed), or ReplyNotJSONError."""
    text = reply.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ReplyNotJSONError(model, reply, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ReplyNotJSONError(model, reply, f"a JSON {type(value).__name__}, not an object")
    return value


@contextlib.contextmanager
def refusal_of_images(model: str) -> Iterator[None]:
    """A server's 400/415/422 about the image it was sent, for a model not known to see: ModelCannotSeeError."""
    try:
        yield
    except ProviderResponseError as exc:
        if exc.status in (400, 415, 422) and re.search(r"image|vision|multimodal|modalit", str(exc), re.I):
            detail = str(exc).split(": ", 1)[-1]
            raise ModelCannotSeeError(model, detail) from None
        raise


def post_chat(provider: OpenAIProvider, model: str, messages: list[dict[str, Any]],
              max_tokens: int) -> GenerationResult:
    """One chat completion with plain httpx (no SDK): for the deprecated ``describe_image_by_requests``."""
    import httpx

    url = str(provider.client.base_url).rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {provider.client.api_key}"}
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    policy = provider.policy
    started = time.perf_counter()
    try:
        with httpx.Client(timeout=policy.timeout(httpx.Timeout)) as http:
            response = send_with_retries(policy, lambda: http.post(url, json=body, headers=headers),
                                         transport_errors=(httpx.TransportError,))
    except httpx.TimeoutException:
        raise ProviderTimeoutError(f"the provider at {provider.where} did not answer in time "
                                   f"({policy.retries + 1} attempts); raise TUNELOOP_REQUEST_TIMEOUT") from None
    except httpx.HTTPError as exc:
        raise ProviderConnectionError(f"cannot reach {provider.where}: {provider.scrub(str(exc))}; check "
                                      "OPENAI_BASE_URL and the network") from None
    if response.status_code == 429:
        raise ProviderRateLimitError(f"the provider at {provider.where} answered 429 (rate limit); try again later",
                                     policy.asked_wait(response.headers))
    if response.status_code == 401:
        raise ProviderAuthError(f"the provider at {provider.where} refused the API key; check OPENAI_API_KEY")
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400 or not isinstance(data, dict):
        detail = data.get("error", {}).get("message") if isinstance(data, dict) else response.text[:200]
        raise ProviderResponseError(f"the provider at {provider.where} answered {response.status_code} for model "
                                    f"{model}: {provider.scrub(str(detail))}", status=response.status_code)
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise ProviderResponseError(f"the provider at {provider.where} returned no reply for model {model}") from None
    usage = data.get("usage") or {}
    seconds = time.perf_counter() - started
    return GenerationResult(text=text, tokens_in=usage.get("prompt_tokens", 0),
                            tokens_out=usage.get("completion_tokens", 0), finish_reason=choice.get("finish_reason"),
                            first_token_seconds=seconds, seconds=seconds)
