"""One retry policy against a vendor that fails on purpose (tests/standin.py): 429 with and without Retry-After,
500, 503, answers slower than the timeout, reset connections, streams cut half-way, invalid JSON. Replies come
through when retries can get them, each exchange is logged exactly once, and failures are typed errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from standin import StandIn

from tuneloop import OpenAIModel
from tuneloop.conversation.chat import ChatSession
from tuneloop.errors import (
    ProviderConnectionError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStreamCutError,
    ProviderTimeoutError,
    UnknownModelError,
)
from tuneloop.runtime import Runtime
from tuneloop.training import FineTuning
from tuneloop.util.retry import RetryPolicy

KEY = "sk-faults-0123456789abcdef"


@pytest.fixture
def vendor(home: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    with StandIn(api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("TUNELOOP_RETRY_INITIAL_DELAY", "0.05")
        monkeypatch.setenv("TUNELOOP_RETRY_MAX_DELAY", "0.2")
        monkeypatch.setenv("TUNELOOP_REQUEST_TIMEOUT", "1")
        yield server


def chat_arrivals(vendor: StandIn) -> list[tuple[float, str, str | None]]:
    return [a for a in vendor.arrivals if a[1].endswith("/chat/completions")]


def logged(session: ChatSession) -> list[str]:
    return [m.content for m in session.messages() if m.role == "assistant"]


FAULT_CASES = [(faults, stream) for faults in (["429"], ["429", "500"], ["503", "503"], ["slow:3"], ["reset"],
                                                ["badjson"], ["429ms:300"], ["cut"])
               for stream in (False, True) if not (faults == ["cut"] and stream)]  # that one: a test of its own


@pytest.mark.parametrize(("faults", "stream"), FAULT_CASES,
                         ids=[f"{'+'.join(f)}-{'stream' if s else 'plain'}" for f, s in FAULT_CASES])
def test_transient_faults_are_retried_and_the_exchange_logged_once(vendor: StandIn, faults: list[str],
                                                                   stream: bool) -> None:
    if faults == ["badjson"]:
        # A 200 the SDK cannot read is not something to retry (the vendor answered): a typed error, nothing logged.
        vendor.faults.extend(faults)
        session = ChatSession(Runtime())
        # (A stream gets no event it can read: the SDK sees it end at once, which is a cut stream.)
        with pytest.raises(ProviderStreamCutError if stream else ProviderResponseError):
            session.stream("hello").read() if stream else session.send("hello")
        assert session.messages() == [] and len(chat_arrivals(vendor)) == 1
        return
    vendor.faults.extend(faults)
    session = ChatSession(Runtime())
    reply = session.stream("hello").read() if stream else session.send("hello")
    assert reply.text == "Stand-in reply to: hello"
    assert logged(session) == ["Stand-in reply to: hello"]  # once, though the vendor was asked len(faults)+1 times
    arrivals = chat_arrivals(vendor)
    assert [fault for _, _, fault in arrivals] == [*faults, None]
    if faults == ["429ms:300"]:
        assert arrivals[1][0] - arrivals[0][0] >= 0.3  # waited what the vendor asked


def test_retry_after_is_honoured_up_to_the_cap(vendor: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.faults.append("429:1")
    model = OpenAIModel()
    assert model.ask("one") == "Stand-in reply to: one"
    (first, _, _), (second, _, _) = chat_arrivals(vendor)
    assert second - first >= 1.0  # the vendor asked for 1 s; backoff alone would have been under 0.2 s
    # Asking for more than the cap: not retried, and the error says how long the vendor asked for.
    monkeypatch.setenv("TUNELOOP_RETRY_MAX_WAIT", "2")
    vendor.faults.append("429:30")
    started = time.monotonic()
    with pytest.raises(ProviderRateLimitError, match="asks to wait 30 s") as info:
        OpenAIModel().ask("two")
    assert time.monotonic() - started < 10 and info.value.retry_after == 30
    assert [f for _, _, f in chat_arrivals(vendor)][-1] == "429:30"  # one attempt, no retry


def test_attempts_are_never_multiplied_and_client_errors_never_retried(vendor: StandIn,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.faults.extend(["500"] * 10)
    with pytest.raises(ProviderResponseError, match=r"answered 500 \(3 attempts\)"):
        OpenAIModel().ask("hi", attempts=3)
    assert len(chat_arrivals(vendor)) == 3
    vendor.faults.clear()
    vendor.arrivals.clear()
    monkeypatch.setenv("TUNELOOP_RETRIES", "4")
    vendor.faults.extend(["429"] * 10)
    session = ChatSession(Runtime())
    with pytest.raises(ProviderRateLimitError, match="5 attempts"):
        session.send("hi")
    assert len(chat_arrivals(vendor)) == 5 and session.messages() == []
    vendor.faults.clear()
    vendor.arrivals.clear()
    with pytest.raises(UnknownModelError, match="no-such-model"):  # 404: once, never retried
        ChatSession(Runtime(), model="no-such-model").send("hi")
    assert len(chat_arrivals(vendor)) == 1


def test_timeouts_and_resets_end_in_typed_errors(vendor: StandIn) -> None:
    vendor.faults.extend(["slow:3"] * 3)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="did not answer in time"):
        ChatSession(Runtime()).send("hi")
    assert time.monotonic() - started < 3 * 3  # each attempt gave up after the 1 s read timeout
    assert len(chat_arrivals(vendor)) == 3
    vendor.faults.extend(["reset"] * 3)
    with pytest.raises(ProviderConnectionError):
        ChatSession(Runtime()).stream("hi").read()


def test_a_cut_stream_is_an_error_never_a_reply(vendor: StandIn) -> None:
    session = ChatSession(Runtime())
    vendor.faults.append("cut")
    pieces: list[str] = []
    with pytest.raises(ProviderStreamCutError, match="cut off after"):
        for piece in session.stream("Tell me a long story about the sea"):
            pieces.append(piece)
    assert pieces and "".join(pieces) != "Stand-in reply to: Tell me a long story about the sea"
    assert session.messages() == []  # nothing logged: neither the half reply nor the question
    assert len(chat_arrivals(vendor)) == 1  # not retried once text had arrived
    # The next message goes through and is the thread's first exchange.
    assert session.stream("again").read().text == "Stand-in reply to: again"
    assert [m.role for m in session.messages()] == ["user", "assistant"]


def test_fine_tuning_calls_share_the_policy(vendor: StandIn, tmp_path: Path) -> None:
    training = tmp_path / "train.jsonl"
    lines = [f'{{"messages": [{{"role": "user", "content": "q{i}"}}, {{"role": "assistant", "content": "a{i}"}}]}}'
             for i in range(10)]
    training.write_text("\n".join(lines) + "\n")
    ft = FineTuning()
    vendor.faults.extend(["503", "429:0.2"])  # the upload, then the job creation, each fail once
    stored = ft.add_file(training)
    job = ft.create(stored.id, model="gpt-4o-mini", backend="openai")
    assert job.id.startswith("ftjob-standin")
    assert [f for _, _, f in vendor.arrivals][:2] == ["503", "429:0.2"]
    assert len(vendor.jobs) == 1 and len(vendor.files) == 1  # each created once


def test_the_policy_reads_every_form_of_retry_after() -> None:
    policy = RetryPolicy(max_wait=60, initial_delay=0.5, max_delay=8)
    assert policy.asked_wait({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert policy.asked_wait({"retry-after": "7"}) == 7
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < policy.asked_wait({"retry-after": http_date}) <= 30
    assert policy.asked_wait({"retry-after": "soon"}) is None and policy.asked_wait({}) is None
    assert policy.delay(1, {"retry-after": "120"}) is None  # more than the cap: do not retry
    waits = [policy.delay(n) for n in range(1, 7)]
    assert all(0.75 * min(0.5 * 2 ** (n - 1), 8) <= w <= min(0.5 * 2 ** (n - 1), 8) for n, w in enumerate(waits, 1))
    assert [s for s in range(100, 600) if policy.retryable(s)] == [408, 409, 429, *range(500, 600)]
