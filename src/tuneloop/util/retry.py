"""One retry policy for every remote call: chat (plain and streamed), files, jobs, and the plain-HTTP image path.

What is retried: connection errors, timeouts, and the answers 408, 409, 429 and 5xx; never 400, 401, 403, 404
or 422. How long to wait: what the vendor asks (``retry-after-ms``, then ``Retry-After`` in seconds or as a
date) when it asks no more than ``retry_max_wait``; a vendor asking for more is not retried (the error says
how long it asked for). Otherwise exponential backoff from ``retry_initial_delay``, doubling up to
``retry_max_delay``, less up to 25 % jitter. Timeouts: ``connect_timeout`` to connect, ``request_timeout`` for
each read.

The `openai` SDK already retries the same way; :func:`openai_client` hands it this policy (its own retry loop,
our waits), so a call is attempted ``retries + 1`` times in all, never retries × retries by two layers.
Nothing is retried once a streamed reply has started: a stream cut in the middle is an error.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import openai

    from tuneloop.config import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(retries=settings.retries, initial_delay=settings.retry_initial_delay,
                   max_delay=settings.retry_max_delay, max_wait=settings.retry_max_wait,
                   connect_timeout=settings.connect_timeout, read_timeout=settings.request_timeout)

    @staticmethod
    def retryable(status: int) -> bool:
        return status in (408, 409, 429) or status >= 500

    @staticmethod
    def asked_wait(headers: Mapping[str, str] | None) -> float | None:
        """Seconds the vendor asked to wait (``retry-after-ms``, then ``Retry-After``), or None."""
        if not headers:
            return None
        for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value) / divisor
            except ValueError:
                continue
            if math.isfinite(seconds):
                return max(0.0, seconds)
            return math.inf
        value = headers.get("retry-after")
        if value:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
        return None

    def delay(self, retry: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1 for the first), or None when the vendor asked for
        longer than ``max_wait`` (then do not retry)."""
        asked = self.asked_wait(headers)
        if asked is not None:
            return asked if asked <= self.max_wait else None
        backoff = min(self.initial_delay * 2.0 ** (retry - 1), self.max_delay)
        return backoff * (1 - 0.25 * random.random())

    def timeout(self, timeout_class: Callable[..., T]) -> T:
        return timeout_class(self.read_timeout, connect=self.connect_timeout)


def openai_client(policy: RetryPolicy, *, api_key: str, base_url: str | None) -> openai.OpenAI:
    """An ``openai.OpenAI`` client whose own retry loop follows ``policy`` (``with_options`` keeps it)."""
    import openai

    class PolicyClient(openai.OpenAI):
        def _calculate_retry_timeout(self, remaining_retries: int, options: Any, response_headers: Any = None) -> float:
            retry = options.get_max_retries(self.max_retries) - remaining_retries + 1
            wait = policy.delay(retry, response_headers)
            return 0.0 if wait is None else wait

        def _should_retry(self, response: Any) -> bool:
            if policy.delay(1, response.headers) is None:
                return False
            told = response.headers.get("x-should-retry")  # OpenAI's own hint, as the SDK honours it
            return told == "true" or (told != "false" and policy.retryable(response.status_code))

    return PolicyClient(api_key=api_key, base_url=base_url, max_retries=policy.retries,
                        timeout=policy.timeout(openai.Timeout))


def send_with_retries(policy: RetryPolicy, request: Callable[[], Any], *, transport_errors: tuple[type, ...],
                      sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call ``request`` (which sends one HTTP request and returns its response) under ``policy``: for clients
    other than the SDK (plain httpx). Returns the last response; raises the last transport error."""
    for attempt in range(policy.retries + 1):
        last = attempt == policy.retries
        try:
            response = request()
        except transport_errors:
            if last:
                raise
            wait = policy.delay(attempt + 1)
        else:
            if last or not policy.retryable(response.status_code):
                return response
            wait = policy.delay(attempt + 1, response.headers)
            if wait is None:
                return response
        sleep(wait or 0.0)
    raise AssertionError("unreachable")
