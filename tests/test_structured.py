"""Structured Outputs, JSON mode, function calling, logprobs, n, penalties and seed through the unmodified openai
SDK on a real `tuneloop serve` with the bundled model (and a tiny random-weight Qwen2 whose chat template renders
tools): every strict output parses and validates, calls are made as asked and reassemble when streamed, a whole
call → result → answer loop works, and bad input is a 400 naming the field with nothing logged."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema_rs
import openai
import pydantic
import pytest
from conftest import MODELS_DIR, run_cli, serving

from tuneloop.datasets import token_counter, validate_examples

KEY = "sk-structured-test"
BASE = "smollm2-135m-instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}, "strict": True}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]


# -- 50 varied strict schemas -----------------------------------------------------------------------------------
def _leaf(rng: random.Random) -> dict[str, Any]:
    return rng.choice([
        {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"},
        {"type": "string", "enum": rng.sample(["red", "green", "blue", "amber", "violet"], 3)},
        {"type": ["string", "null"]}, {"type": ["integer", "null"]},
        {"type": "integer", "minimum": 0, "maximum": 100}, {"type": "string", "format": "date"},
        {"type": "string", "pattern": "^[A-Z]{3}$"}, {"type": "string", "maxLength": 12},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    ])


WORDS = ["name", "title", "count", "price", "colour", "city", "rating", "tags", "owner", "when", "code", "note",
         "items", "size", "level", "kind"]


def _value(rng: random.Random, depth: int) -> dict[str, Any]:
    roll = rng.random()
    if depth < 2 and roll < 0.2:
        return _object(rng, depth + 1)
    if roll < 0.35:
        items = _object(rng, depth + 1) if depth < 2 and rng.random() < 0.4 else _leaf(rng)
        array: dict[str, Any] = {"type": "array", "items": items}
        if rng.random() < 0.5:
            array.update(minItems=1, maxItems=rng.choice([2, 3, 4]))
        return array
    if depth < 2 and roll < 0.42:
        return {"anyOf": [_object(rng, depth + 1), {"type": "null"}]}
    return _leaf(rng)


def _object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    names = rng.sample(WORDS, rng.randint(1, 4 if depth else 5))
    return {"type": "object", "properties": {n: _value(rng, depth) for n in names}, "required": names,
            "additionalProperties": False}


def schemas() -> list[dict[str, Any]]:
    """50 strict schemas: 46 drawn (nested objects, arrays with and without bounds, enums, anyOf, nullable fields,
    formats, patterns), and 4 written out ($defs with $ref, a recursive tree, a large enum, an array at the top)."""
    rng = random.Random(26)
    drawn = [_object(rng) for _ in range(46)]
    node = {"type": "object", "properties": {"label": {"type": "string"}, "children": {
        "type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["label", "children"],
        "additionalProperties": False}
    address = {"type": "object", "properties": {"street": {"type": "string"}, "zip": {"type": "string",
               "pattern": "^[0-9]{5}$"}}, "required": ["street", "zip"], "additionalProperties": False}
    written = [
        {"type": "object", "$defs": {"address": address}, "properties": {
            "home": {"$ref": "#/$defs/address"}, "work": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]}},
         "required": ["home", "work"], "additionalProperties": False},
        {"type": "object", "$defs": {"node": node}, "properties": {"root": {"$ref": "#/$defs/node"}},
         "required": ["root"], "additionalProperties": False},
        {"type": "object", "properties": {"sku": {"type": "string", "enum": [f"SKU-{i:03d}" for i in range(150)]},
                                          "qty": {"type": "integer", "minimum": 1}},
         "required": ["sku", "qty"], "additionalProperties": False},
        {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "array", "items": {
            "type": "number"}, "maxItems": 3}, "maxItems": 3}}, "required": ["rows"], "additionalProperties": False},
    ]
    return drawn + written


@pytest.mark.slow  # 50 generations of up to 400 tokens
def test_fifty_strict_schemas_parse_and_validate(client: openai.OpenAI) -> None:
    cases = schemas()
    assert len(cases) == 50 and len({json.dumps(s, sort_keys=True) for s in cases}) == 50

    def ask(i: int) -> tuple[int, str, str]:
        response = client.chat.completions.create(
            model=BASE, max_tokens=400, messages=[{"role": "user", "content": f"Fill in form number {i} as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": f"form_{i}", "strict": True,
                                                                    "schema": cases[i]}})
        return i, response.choices[0].message.content or "", response.choices[0].finish_reason

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(len(cases))))
    failures = []
    for i, text, finish in answers:
        try:
            document = json.loads(text)
        except ValueError as exc:
            failures.append((i, finish, f"does not parse: {exc}", text[-120:]))
            continue
        errors = [e.message for e in jsonschema_rs.validator_for(cases[i], validate_formats=True).iter_errors(
            document)]
        if errors:
            failures.append((i, finish, errors[:2], text[:120]))
    assert failures == [], failures


def test_json_mode_always_parses(client: openai.OpenAI) -> None:
    prompts = ["Describe a cat as JSON.", "Give me three facts about Mars in JSON.", "hi", "Write a poem.",
               "Return an empty JSON object."]
    for prompt in prompts:
        response = client.chat.completions.create(model=BASE, max_tokens=120, response_format={"type": "json_object"},
                                                  messages=[{"role": "user", "content": prompt}])
        assert isinstance(json.loads(response.choices[0].message.content), dict), (prompt, response)


class Person(pydantic.BaseModel):
    name: str
    age: int
    city: str | None
    hobbies: list[str]


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(model=BASE, max_tokens=150, response_format=Person,
                                               messages=[{"role": "user", "content": "Invent a person."}])
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Person)
    assert Person.model_validate_json(completion.choices[0].message.content) == parsed


# -- tools --------------------------------------------------------------------------------------------------------
def _arguments(call: Any) -> dict[str, Any]:
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict)
    return arguments


def test_tool_choice_required_and_a_named_function_are_honoured(client: openai.OpenAI) -> None:
    required = client.chat.completions.create(model=BASE, messages=ASK, tools=[WEATHER, TIME], tool_choice="required")
    choice = required.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in ("get_weather", "get_time")
        arguments = _arguments(call)
        if call.function.name == "get_weather":
            assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
    named = client.chat.completions.create(model=BASE, messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}})
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "get_time" and isinstance(_arguments(call)["zone"], str)
    none = client.chat.completions.create(model=BASE, messages=ASK, tools=[WEATHER], tool_choice="none",
                                          max_tokens=30)
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_a_whole_tool_loop_with_the_fallback_template_is_logged_and_trainable(
        client: openai.OpenAI, server: Any, tmp_path: Path) -> None:
    """The bundled model's template knows no tools: the fallback describes them; call, result, answer. Both exchanges
    are logged with their calls, results and tools, and `data build` makes OpenAI's function-calling examples."""
    before = len(server.store.list_threads(limit=1000))
    up = {"rating": "up"}
    first = client.chat.completions.create(model=BASE, messages=ASK, tools=[WEATHER], tool_choice="required",
                                           metadata=up)
    message = first.choices[0].message
    (call,) = message.tool_calls  # one call: a repeated one ends the reply
    history = [*ASK, message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18, "sky": "sunny"})}]
    final = client.chat.completions.create(model=BASE, messages=history, tools=[WEATHER], max_tokens=60, metadata=up)
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length") and answer.message.tool_calls is None
    assert answer.message.content and "<tool_call>" not in answer.message.content

    threads = server.store.list_threads(limit=1000)
    assert len(threads) == before + 2  # both exchanges are logged
    logged = server.store.messages(threads[0].id)
    assert [m.role for m in logged] == ["user", "assistant", "tool", "assistant"]
    assert logged[1].tool_calls == [call.model_dump()] and logged[2].tool_call_id == call.id
    assert logged[3].content == answer.message.content and logged[3].feedback == 1
    assert logged[3].output_spec["tools"] == [WEATHER]
    shown = run_cli("logs", "show", threads[0].id, env={"TUNELOOP_HOME": str(server.home)})
    assert shown.code == 0 and "calls get_weather" in shown.stdout and f"answers {call.id}" in shown.stdout

    out = tmp_path / "tools.jsonl"
    built = run_cli("data", "build", "--from-dialogues", "-o", str(out), env={"TUNELOOP_HOME": str(server.home)})
    assert built.code == 0, built.stderr
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    calls = [e for e in examples if e["messages"][-1].get("tool_calls")]
    finals = [e for e in examples if e["messages"][-1].get("content") == answer.message.content]
    assert len(calls) == 1 and len(finals) == 1, examples
    assert calls[0]["tools"] == [WEATHER] and calls[0]["messages"][-1]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": call.function.arguments}
    assert [m["role"] for m in finals[0]["messages"]] == ["user", "assistant", "tool", "assistant"]
    report = validate_examples(examples, token_counter(BASE, models_dir=MODELS_DIR))
    assert set(report.errors) == {"too_few_examples"}, report.first_errors


def test_streamed_tool_calls_reassemble_with_the_sdk_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model=BASE, messages=ASK, tools=[WEATHER],
                                        tool_choice={"type": "function", "function": {"name": "get_weather"}}) as s:
        events = [event.type for event in s]
        final = s.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    (call,) = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert call.function.parsed_arguments == _arguments(call)  # strict: the helper parses them too


# -- the rest of the request surface ---------------------------------------------------------------------------
def test_logprobs_n_seed_and_penalties(client: openai.OpenAI) -> None:
    hello = [{"role": "user", "content": "Say hello."}]
    greedy = client.chat.completions.create(model=BASE, messages=hello, max_tokens=12, logprobs=True, top_logprobs=3)
    choice = greedy.choices[0]
    tokens = choice.logprobs.content
    assert len(tokens) == greedy.usage.completion_tokens
    assert "".join(t.token for t in tokens) == choice.message.content
    for token in tokens:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        assert token.top_logprobs[0].token == token.token  # greedy: the likeliest token is the one taken
        assert bytes(token.bytes).decode("utf-8", errors="replace") == token.token

    def sampled(seed: int, n: int = 3) -> list[str]:
        response = client.chat.completions.create(model=BASE, messages=hello, max_tokens=12, temperature=1.2,
                                                  seed=seed, n=n)
        assert [c.index for c in response.choices] == list(range(n))
        assert response.usage.completion_tokens >= n
        return [c.message.content for c in response.choices]

    first = sampled(7)
    assert sampled(7) == first and sampled(8) != first  # a seed gives the same choices; another seed others
    assert len(set(first)) > 1  # the choices are sampled apart

    words = [{"role": "user", "content": "Write the word 'apple' twenty times, separated by spaces."}]
    plain = client.chat.completions.create(model=BASE, messages=words, max_tokens=40).choices[0].message.content
    penalised = client.chat.completions.create(model=BASE, messages=words, max_tokens=40,
                                               frequency_penalty=2.0).choices[0].message.content
    assert plain.lower().count("apple") > penalised.lower().count("apple"), (plain, penalised)


def test_any_seed_and_top_p_zero_sample_without_failing_the_batch(client: openai.OpenAI) -> None:
    """A negative seed, top_p 0 and a temperature too low for the arithmetic: each reply is sampled (top_p 0 and the
    tiny temperature take the likeliest token), and replies decoded beside them are unharmed."""
    def ask(options: dict[str, Any]) -> str:
        response = client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "Say hello."}],
                                                  max_tokens=8, **options)
        return response.choices[0].message.content

    greedy = ask({})
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(ask, [{"temperature": 0.9, "seed": -7}, {"temperature": 1.0, "top_p": 0.0},
                                      {"temperature": 1e-30}, {}]))
    assert all(answers) and answers[1] == answers[2] == answers[3] == greedy


def test_bad_structured_requests_are_400_and_log_nothing(client: openai.OpenAI, server: Any) -> None:
    before = len(server.store.list_threads(limit=1000))
    bad = [
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "not": {"const": "b"}}}}}}},
         "response_format.json_schema.schema.properties.a.not"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
         "tools[0].function.parameters"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice.function.name"),
        ({"tools": [WEATHER], "messages": [*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "18"}]},
         "messages[1].tool_call_id"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": {"a": 1}}}}},
         "response_format.json_schema.schema.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": True}}},
         "response_format.json_schema.schema"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": "get_weather"}},
         "tool_choice.function.name"),
        # Python's re takes a lookahead, the grammar cannot: refused before the stream starts, not inside it.
        ({"stream": True, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "pattern": "(?=a)b"}}}}}}, "response_format"),
    ]
    for extra, param in bad:
        body = {"model": BASE, "messages": ASK, **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**body)
        assert caught.value.body["param"] == param, caught.value.body
    assert len(server.store.list_threads(limit=1000)) == before


# -- a template that renders tools itself --------------------------------------------------------------------------
QWEN_TOOLS_TEMPLATE = (Path(__file__).parent / "data" / "qwen2_tools_template.jinja").read_text()


@pytest.fixture
def tiny_qwen(home: Path, tmp_path: Path) -> str:
    """A random-weight Qwen2 with Qwen2.5's chat template (tools in the system turn, <tool_call> blocks), registered
    in ``home``."""
    from tiny_models import build_tiny_model
    from transformers import AutoTokenizer

    folder = build_tiny_model("qwen2", MODELS_DIR / BASE, tmp_path / "tiny-qwen")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.chat_template = QWEN_TOOLS_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    (folder / "chat_template.jinja").write_text(QWEN_TOOLS_TEMPLATE)
    assert run_cli("models", "add", "tiny-qwen", str(folder)).code == 0
    return "tiny-qwen"


@pytest.mark.slow  # builds, registers and converts a model
def test_a_whole_tool_loop_on_a_template_that_renders_tools(home: Path, tiny_qwen: str) -> None:
    """Qwen2.5's template renders the tools, the calls and the results itself; its words are noise, but the grammar
    makes the call, and the loop goes through."""
    from tuneloop.structured import tools_spec

    with serving(home, KEY) as running:
        client = openai.OpenAI(base_url=running.base_url, api_key=KEY, max_retries=0, timeout=300)
        first = client.chat.completions.create(model=tiny_qwen, messages=ASK, tools=[WEATHER], tool_choice="required",
                                               max_tokens=80)
        calls = first.choices[0].message.tool_calls
        assert first.choices[0].finish_reason == "tool_calls" and calls
        assert all(c.function.name == "get_weather" and set(_arguments(c)) == {"city", "unit"} for c in calls)
        history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                   *[{"role": "tool", "tool_call_id": c.id, "content": "18 degrees"} for c in calls]]
        final = client.chat.completions.create(model=tiny_qwen, messages=history, tools=[WEATHER], tool_choice="none",
                                               max_tokens=20)
        assert final.choices[0].message.tool_calls is None and final.choices[0].finish_reason in ("stop", "length")
        provider, model = running.state.runtime.resolve(tiny_qwen)
        engine = provider.engine(model)
        prompt = engine.tokenizer.decode(engine.encode_chat(history, tools_spec([WEATHER]).tools))
    assert "<tools>" in prompt and '"name": "get_weather"' in prompt  # the template's own tools block
    assert "<tool_response>\n18 degrees\n</tool_response>" in prompt
    assert prompt.count("<tool_call>") == len(calls) + 2  # the calls made, and the two in the template's instructions
    assert "You may call functions to answer" not in prompt  # not the fallback's
