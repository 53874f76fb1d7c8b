"""The `openai` provider against a schema-validating stand-in vendor on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from standin import StandIn, validate_chat_request

from tuneloop import OpenAIModel
from tuneloop.conversation.chat import ChatSession
from tuneloop.errors import ProviderAuthError, ProviderConnectionError, ProviderResponseError, UnknownModelError
from tuneloop.generation import GenerationOptions
from tuneloop.runtime import Runtime

KEY = "sk-standin-0123456789abcdef"


@pytest.fixture
def vendor(home: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    with StandIn(api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def test_the_stand_in_rejects_bodies_outside_the_schema() -> None:
    with pytest.raises(Exception, match="wizard"):
        validate_chat_request({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]})
    with pytest.raises(ValueError, match="unknown fields"):
        validate_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokenz": 3})
    assert validate_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def test_ask_without_stream_through_the_sdk(vendor: StandIn) -> None:
    model = OpenAIModel(system_instruction="Be brief.")
    assert model.model == "gpt-4o-mini"  # the seed's default when a key is configured
    assert model.ask("What is the capital of France?") == "Stand-in reply to: What is the capital of France?"
    model.ask("Thanks, great!")
    first, second = vendor.requests
    assert "stream" not in first
    assert first["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "What is the capital of France?"}]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert first["max_tokens"] == 512 and first["temperature"] == 0.0
    assert [(d["role"], d["sentiment"]) for d in model.dialogue if d["role"] == "user"] == [
        ("user", "neutral"), ("user", "positive")]
    assert model.last_reply is not None and model.last_reply.result.tokens_in == 7
    assert set(model.list_models) >= {"gpt-4o-mini", "standin-model", "smollm2-135m-instruct"}


def test_streaming_through_the_sdk(vendor: StandIn) -> None:
    session = ChatSession(Runtime(), model="standin-model")
    stream = session.stream("Tell me something")
    pieces = list(stream)
    assert "".join(pieces) == "Stand-in reply to: Tell me something" and len(pieces) > 2
    body = vendor.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    reply = stream.reply
    assert reply is not None and reply.provider == "openai" and reply.result.finish_reason == "stop"
    assert reply.result.tokens_out == 6  # the stand-in counts words
    assert [m.role for m in session.messages()] == ["user", "assistant"]


def test_local_model_still_served_locally_when_a_key_is_set(vendor: StandIn, engine) -> None:  # noqa: ANN001
    model = OpenAIModel(model_name="smollm2-135m-instruct")
    assert "Paris" in model.ask("What is the capital of France?")
    assert vendor.requests == []


def test_attempts_retry_transient_failures(vendor: StandIn) -> None:
    vendor.fail_next = 2
    assert OpenAIModel().ask("hi", attempts=3).startswith("Stand-in reply")
    assert len(vendor.requests) == 3
    vendor.fail_next = 1
    with pytest.raises(ProviderResponseError, match="500"):
        OpenAIModel().ask("hi", attempts=1)


def test_errors_are_typed_and_never_carry_the_key(vendor: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownModelError, match="no-such-model"):
        OpenAIModel(model_name="no-such-model").ask("hi")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-abcdefghijkl")
    with pytest.raises(ProviderAuthError) as info:
        OpenAIModel().ask("hi", attempts=1)
    assert "sk-wrong" not in str(info.value) and "ijkl" not in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value)


def test_unreachable_provider(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ProviderConnectionError, match="127.0.0.1:9"):
        OpenAIModel().ask("hi", attempts=1)


def test_tools_json_logprobs_seed_and_penalties_pass_through(vendor: StandIn) -> None:
    """The remote provider sends what the request asked for unchanged, and reads streamed calls and log-probabilities
    back; the stand-in validates the body against the SDK's own types."""
    from tuneloop.structured import response_format_spec, tools_spec

    provider, model = Runtime().resolve("standin-model")
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    called = provider.stream([{"role": "user", "content": "Weather in Paris?"}],
                             GenerationOptions(output=tools_spec([weather], "required", False), seed=5,
                                               presence_penalty=0.5), model=model).read()
    body = vendor.requests[-1]
    assert body["tools"] == [weather] and body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["seed"] == 5 and body["presence_penalty"] == 0.5
    call = {"id": "call_standin", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert called.finish_reason == "tool_calls" and called.tool_calls == [call]

    schema = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}}}
    texted = provider.stream([{"role": "user", "content": "hi"}],
                             GenerationOptions(logprobs=2, output=response_format_spec(schema), frequency_penalty=0.1),
                             model=model).read()
    body = vendor.requests[-1]
    assert body["response_format"] == schema and body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["frequency_penalty"] == 0.1 and "tools" not in body
    assert [entry["token"] for entry in texted.logprobs] == ["Stand-in", " reply", " to:", " hi"]
