"""Structured Outputs and function calling on the Responses API (`POST /v1/responses`), through the unmodified openai
SDK on a real `tuneloop serve` with the bundled model: text.format json_schema / json_object replies parse and
validate, function tools are called as asked, a whole call → function_call_output → answer loop works (chained
and stateless), streamed calls follow OpenAI's event sequence and reassemble in the SDK's helper, everything is
stored and logged with its calls, and bad input is a 400 naming the field with nothing logged."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema_rs
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from strictness import strict

from tuneloop.generation import GenerationOptions, GenerationResult, TextStream

KEY = "sk-responses-tools-test"
BASE = "smollm2-135m-instruct"
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
               "required": ["city", "unit"], "additionalProperties": False}, "strict": True}
TIME = {"type": "function", "name": "get_time", "description": "The local time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
ASK = "What is the weather in Paris right now?"
PET = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20},
    "kind": {"type": "string", "enum": ["cat", "dog", "bird"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    "owner": {"anyOf": [{"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                                          "age": {"type": ["integer", "null"]}},
                         "required": ["name", "age"], "additionalProperties": False}, {"type": "null"}]}},
    "required": ["name", "kind", "tags", "owner"], "additionalProperties": False}


def created(raw: Any) -> Response:
    """The response of a with_raw_response call, after checking its JSON strictly against the SDK's type."""
    return strict(Response, raw.http_response.json())


def calls_of(response: Any) -> list[Any]:
    return [item for item in response.output if item.type == "function_call"]


def arguments_of(call: Any) -> dict[str, Any]:
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict), call
    return arguments


def threads(server: Any) -> int:
    return len(server.store.list_threads(limit=1000))


# -- text.format ------------------------------------------------------------------------------------------------
def test_a_json_schema_format_parses_validates_and_is_echoed(client: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "name": "pet", "schema": PET, "strict": True}
    response = created(client.responses.with_raw_response.create(
        model=BASE, input="Invent a pet and its owner.", text={"format": fmt}, max_output_tokens=120))
    assert response.status == "completed", response
    (message,) = response.output
    assert message.type == "message" and message.status == "completed"
    document = json.loads(response.output_text)
    errors = [e.message for e in jsonschema_rs.validator_for(PET).iter_errors(document)]
    assert errors == [], (errors, response.output_text)
    assert set(document) == {"name", "kind", "tags", "owner"} and document["kind"] in ("cat", "dog", "bird")
    assert response.text.format.type == "json_schema" and response.text.format.name == "pet"
    assert response.text.format.schema_ == PET and response.text.format.strict is True
    assert client.responses.retrieve(response.id).output_text == response.output_text


def test_json_object_always_parses(client: openai.OpenAI) -> None:
    for prompt in ("Describe a cat as JSON.", "hi"):
        response = client.responses.create(model=BASE, input=prompt, text={"format": {"type": "json_object"}},
                                           max_output_tokens=80)
        assert isinstance(json.loads(response.output_text), dict), (prompt, response.output_text)
        assert response.text.format.type == "json_object"


class Person(pydantic.BaseModel):
    name: str
    age: int
    city: str | None
    hobbies: list[str]


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    response = client.responses.parse(model=BASE, input="Invent a person.", text_format=Person, max_output_tokens=120)
    assert isinstance(response.output_parsed, Person), response
    assert Person.model_validate_json(response.output_text) == response.output_parsed


# -- function tools -----------------------------------------------------------------------------------------------
def test_tool_choice_required_and_a_named_function_are_honoured(client: openai.OpenAI) -> None:
    required = created(client.responses.with_raw_response.create(
        model=BASE, input=ASK, tools=[WEATHER, TIME], tool_choice="required", max_output_tokens=100))
    calls = calls_of(required)
    assert calls and required.status == "completed"
    for call in calls:
        assert call.call_id.startswith("call_") and call.id.startswith("fc_") and call.status == "completed"
        assert call.name in ("get_weather", "get_time")
        arguments = arguments_of(call)
        if call.name == "get_weather":
            assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
        else:
            assert isinstance(arguments["zone"], str)
    assert len({c.call_id for c in calls}) == len(calls)
    assert [t.name for t in required.tools] == ["get_weather", "get_time"] and required.tool_choice == "required"
    assert required.parallel_tool_calls is True

    named = created(client.responses.with_raw_response.create(
        model=BASE, input=ASK, tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"},
        parallel_tool_calls=False, max_output_tokens=100))
    (call,) = calls_of(named)
    assert call.name == "get_time" and isinstance(arguments_of(call)["zone"], str)
    assert named.tool_choice.type == "function" and named.tool_choice.name == "get_time"
    assert named.parallel_tool_calls is False
    # Stored with its calls: retrieved as it was answered.
    assert client.responses.retrieve(named.id).output == named.output

    none = client.responses.create(model=BASE, input=ASK, tools=[WEATHER], tool_choice="none", max_output_tokens=30)
    assert calls_of(none) == [] and none.output_text


def test_a_whole_loop_chained_is_stored_and_logged(client: openai.OpenAI, server: Any, http: httpx.Client) -> None:
    before = threads(server)
    first = client.responses.create(model=BASE, input=ASK, tools=[WEATHER], tool_choice="required",
                                    max_output_tokens=100)
    (call,) = calls_of(first)  # one call: a repeated one ends the reply
    result = {"type": "function_call_output", "call_id": call.call_id,
              "output": json.dumps({"temperature": 18, "sky": "sunny"})}
    final = created(client.responses.with_raw_response.create(
        model=BASE, previous_response_id=first.id, input=[result], tools=[WEATHER], tool_choice="none",
        max_output_tokens=60))
    assert calls_of(final) == [] and final.output_text and "<tool_call>" not in final.output_text
    assert final.previous_response_id == first.id
    # The model read the question, the call and its result: more than the question alone.
    alone = client.responses.create(model=BASE, input=ASK, tools=[WEATHER], tool_choice="none", max_output_tokens=1,
                                    store=False)
    assert final.usage.input_tokens > alone.usage.input_tokens + len(result["output"]) // 4

    # Stored: the first response comes back with its function_call item, the second lists its input item.
    assert strict(Response, http.get(f"/responses/{first.id}").json()).output == first.output
    items = strict(ResponseItemList, http.get(f"/responses/{final.id}/input_items").json())
    (output_item,) = items.data
    assert output_item.type == "function_call_output" and output_item.call_id == call.call_id
    assert output_item.output == result["output"]

    # Logged: one thread (the chain) with the call, its result and the answer; the tools asked for, in chat
    # completions' shape (what `data build` puts on a function-calling example).
    assert threads(server) == before + 1
    logged = server.store.messages(server.store.list_threads(limit=1)[0].id)
    assert [m.role for m in logged] == ["user", "assistant", "tool", "assistant"]
    assert logged[1].tool_calls == [{"id": call.call_id, "type": "function",
                                     "function": {"name": "get_weather", "arguments": call.arguments}}]
    assert logged[1].finish_reason == "tool_calls" and logged[2].tool_call_id == call.call_id
    assert logged[2].content == result["output"] and logged[3].content == final.output_text
    assert logged[1].output_spec["tools"] == [{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "description", "parameters", "strict")}}]
    assert logged[1].output_spec["tool_choice"] == "required" and logged[3].output_spec["tool_choice"] == "none"


def test_a_whole_loop_stateless_with_the_output_sent_back(client: openai.OpenAI) -> None:
    """The other way apps write the loop: no previous_response_id, the first response's output items sent back in
    the next input with the results."""
    question = [{"role": "user", "content": "What time is it in Tokyo and in Paris?"}]
    first = client.responses.create(model=BASE, input=question, tools=[TIME], tool_choice="required",
                                    max_output_tokens=100, store=False)
    calls = calls_of(first)
    assert calls and all(c.name == "get_time" for c in calls)
    history = [*question, *[item.model_dump(exclude_none=True) for item in first.output],
               *[{"type": "function_call_output", "call_id": c.call_id, "output": "12:00"} for c in calls]]
    final = client.responses.create(model=BASE, input=history, tools=[TIME], tool_choice="none",
                                    max_output_tokens=40)
    assert calls_of(final) == [] and final.output_text
    # Its input items read back as they were sent: the calls, then their results.
    listed = client.responses.input_items.list(final.id, order="asc").data
    assert [i.type for i in listed] == ["message", *[i.type for i in first.output],
                                        *["function_call_output"] * len(calls)]
    sent = [i for i in listed if i.type == "function_call"]
    assert [(i.id, i.call_id, i.name, i.arguments) for i in sent] == [
        (c.id, c.call_id, c.name, c.arguments) for c in calls]


def test_a_call_in_a_conversation(client: openai.OpenAI, server: Any) -> None:
    conversation = client.conversations.create()
    first = client.responses.create(model=BASE, conversation=conversation.id, input=ASK, tools=[WEATHER],
                                    tool_choice="required", max_output_tokens=100)
    (call,) = calls_of(first)
    final = client.responses.create(model=BASE, conversation=conversation.id, tools=[WEATHER], tool_choice="none",
                                    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18"}],
                                    max_output_tokens=40)
    assert final.output_text and calls_of(final) == []
    logged = server.store.messages(conversation.id)
    assert [m.role for m in logged] == ["user", "assistant", "tool", "assistant"]
    assert logged[1].tool_calls[0]["id"] == call.call_id and logged[2].tool_call_id == call.call_id
    # The conversation's items show the call and its result as OpenAI's items.
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output", "message"]
    assert items[1].call_id == call.call_id and items[1].id == call.id and items[2].call_id == call.call_id


# -- streaming ------------------------------------------------------------------------------------------------------
def test_a_streamed_call_follows_openais_events_and_reassembles(client: openai.OpenAI, http: httpx.Client) -> None:
    ask = {"model": BASE, "input": ASK, "tools": [WEATHER], "max_output_tokens": 100,
           "tool_choice": {"type": "function", "name": "get_weather"}}
    with client.responses.stream(**ask) as stream:
        events = list(stream)
        final = stream.get_final_response()
    (call,) = calls_of(final)
    assert call.name == "get_weather" and call.parsed_arguments == arguments_of(call)  # strict: parsed by the SDK
    assert set(call.parsed_arguments) == {"city", "unit"}
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"], kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added, delta, done = events[2], events[3], events[4]
    assert added.item.type == "function_call" and added.item.arguments == "" and added.item.call_id == call.call_id
    assert delta.item_id == done.item_id == call.id and delta.output_index == done.output_index == 0
    assert delta.delta == done.arguments == call.arguments and done.name == "get_weather"
    stored = client.responses.retrieve(final.id)  # stored as streamed
    assert [i.model_dump() for i in stored.output] == [call.model_dump(exclude={"parsed_arguments"})]

    # The same stream over plain HTTP: each event is exactly one of the SDK's event types (plus, on the arguments'
    # done event, the function's name, which OpenAI's API reference requires and this SDK's type does not list).
    with http.stream("POST", "/responses", json={**ask, "stream": True}) as raw:
        raw_events = [json.loads(line.removeprefix("data: ")) for line in raw.iter_lines() if line.startswith("data: ")]
    assert raw_events[4].pop("name") == "get_weather"
    assert [strict(ResponseStreamEvent, event).type for event in raw_events] == kinds
    # And without the helper: create(stream=True) gives the same events, ending with the whole response.
    streamed = list(client.responses.create(**ask, stream=True))
    assert [e.type for e in streamed] == kinds and calls_of(streamed[-1].response)[0].name == "get_weather"


class ScriptedReply:
    """A provider whose reply is written in advance: text, then two calls (the bundled model, under tool_choice
    auto, writes text or a call, never both). What it was asked is kept."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def stream(self, messages: list[dict[str, Any]], options: GenerationOptions, *, model: str,
               should_stop: Any = None) -> TextStream:
        self.asked.append({"messages": messages, "options": options})
        result = GenerationResult(tokens_in=7)

        def pieces() -> Any:
            yield "Let me "
            yield "check."
            result.text, result.tokens_out, result.finish_reason = "Let me check.", 30, "tool_calls"
            result.tool_calls = [
                {"id": f"call_{i}{'0' * 23}", "type": "function", "function": {
                    "name": "get_weather", "arguments": json.dumps({"city": city, "unit": "celsius"})}}
                for i, city in enumerate(("Paris", "Oslo"))]

        return TextStream(pieces(), result)


def test_text_before_calls_streams_as_a_message_then_the_calls(
        client: openai.OpenAI, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = ScriptedReply()
    monkeypatch.setattr(server.state.runtime, "resolve", lambda name=None: (scripted, name))
    ask = {"model": BASE, "input": ASK, "tools": [WEATHER], "max_output_tokens": 50}
    with client.responses.stream(**ask) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    call_events = ["response.output_item.added", "response.function_call_arguments.delta",
                   "response.function_call_arguments.done", "response.output_item.done"]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     *call_events, *call_events, "response.completed"], kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.output_index for e in events if e.type == "response.function_call_arguments.done"] == [1, 2]
    assert [i.type for i in final.output] == ["message", "function_call", "function_call"]
    assert final.output_text == "Let me check." and final.status == "completed"
    assert [(c.name, c.parsed_arguments["city"]) for c in calls_of(final)] == [("get_weather", "Paris"),
                                                                               ("get_weather", "Oslo")]
    assert scripted.asked[0]["options"].output.tools[0].name == "get_weather"  # the spec went to the provider

    # Unstreamed: the same items; stored and logged as one reply with its text and both calls.
    answered = created(client.responses.with_raw_response.create(**ask))
    assert [i.type for i in answered.output] == ["message", "function_call", "function_call"]
    assert answered.output_text == "Let me check."
    assert [(c.call_id, c.arguments) for c in calls_of(answered)] == [
        (c.call_id, c.arguments) for c in calls_of(final)]
    assert client.responses.retrieve(answered.id).output == answered.output
    reply = server.store.messages(server.store.list_threads(limit=1)[0].id)[-1]
    assert reply.content == "Let me check." and [c["id"] for c in reply.tool_calls] == [
        c.call_id for c in calls_of(answered)]
    # Answering both calls in the next request: both results reach the provider as tool messages.
    client.responses.create(model=BASE, previous_response_id=answered.id, tools=[WEATHER], max_output_tokens=50,
                            input=[{"type": "function_call_output", "call_id": c.call_id, "output": "18"}
                                   for c in calls_of(answered)])
    sent = scripted.asked[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[1] == {"role": "assistant", "content": "Let me check.", "tool_calls": reply.tool_calls}
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [(c.call_id, "18") for c in calls_of(answered)]


def test_a_streamed_json_schema_reply(client: openai.OpenAI) -> None:
    with client.responses.stream(model=BASE, input="Invent a person.", text_format=Person,
                                 max_output_tokens=120) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text and isinstance(final.output_parsed, Person)


# -- bad input -------------------------------------------------------------------------------------------------------
def test_bad_requests_are_400_naming_the_field_and_log_nothing(client: openai.OpenAI, server: Any) -> None:
    first = client.responses.create(model=BASE, input=ASK, tools=[WEATHER], tool_choice="required",
                                    max_output_tokens=100)
    (call,) = calls_of(first)
    before = threads(server)
    user = {"role": "user", "content": ASK}
    bad = [
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object", "properties": {
            "tags": {"type": "array", "uniqueItems": True}}}}}}, "text.format.schema.properties.tags.uniqueItems"),
        ({"text": {"format": {"type": "json_schema", "name": "no spaces", "schema": PET}}}, "text.format.name"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": "x"}}]},
         "tools[0].parameters.properties"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]}, "tools[0].parameters"),
        ({"tools": [WEATHER, {"type": "web_search"}]}, "tools[1].type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"input": [user, {"type": "function_call_output", "call_id": "call_nope", "output": "18"}]},
         "input[1].call_id"),
        ({"input": [user, {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_b", "output": "18"}]}, "input[2].call_id"),
        ({"input": [user, {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": {}}]},
         "input[1].arguments"),
        ({"previous_response_id": first.id, "input": [
            {"type": "function_call_output", "call_id": call.call_id, "output": "18"},
            {"type": "function_call_output", "call_id": "call_other", "output": "19"}]}, "input[1].call_id"),
    ]
    for extra, param in bad:
        body = {"model": BASE, "input": ASK, "max_output_tokens": 20, **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(**body)
        assert caught.value.body["param"] == param, (extra, caught.value.body)
    assert threads(server) == before


