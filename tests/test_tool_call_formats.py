"""Tool-call formats: one class per model family, found by name. Hermes' ``<tool_call>`` is the one today; a new
family is a registered class, and the prompts, the parser and the streaming hold-back use it as they use Hermes."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest

from tuneloop.structured import (
    HERMES,
    Tool,
    ToolCallFormat,
    fallback_messages,
    hold_back,
    parse_reply,
    register_tool_call_format,
    repeats_a_call,
    tool_call_format,
    tools_spec,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SPEC = tools_spec([WEATHER], "auto")


@register_tool_call_format
class BracketCalls(ToolCallFormat):
    """A family of the tests' own: ``[CALL] {"name": ..., "arguments": ...} [/CALL]``."""

    name = "test-brackets"
    opener = "[CALL]"

    def write_call(self, name: str, arguments: Any) -> str:
        return f"[CALL] {json.dumps({'name': name, 'arguments': arguments})} [/CALL]"

    def write_result(self, content: str) -> str:
        return f"[RESULT] {content}"

    def instructions(self, tools: Sequence[Tool]) -> str:
        return "Call a function with [CALL] {...} [/CALL]: " + ", ".join(t.name for t in tools)

    def call_bodies(self, text: str) -> list[str]:
        return re.findall(r"\[CALL\] (.*?) \[/CALL\]", text, re.DOTALL)

    def read_call(self, body: str) -> tuple[str, Any] | None:
        call = json.loads(body)
        return call["name"], call["arguments"]


def test_hermes_is_found_by_name_and_reads_back_what_it_writes() -> None:
    assert tool_call_format("hermes") is HERMES
    written = HERMES.write_call("get_weather", '{"city": "Paris"}')
    assert written == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = parse_reply("Let me look.\n" + written, SPEC)
    assert content == "Let me look."
    assert [c["function"] for c in calls] == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert calls[0]["id"].startswith("call_")


def test_a_new_family_is_a_registered_class_used_everywhere_a_call_is_written_or_read() -> None:
    brackets = tool_call_format("test-brackets")
    call = brackets.write_call("get_weather", {"city": "Oslo"})
    reply = f"Checking. {call}\n{call}"

    content, calls = parse_reply(reply, SPEC, call_format=brackets)
    assert content == "Checking."
    assert [c["function"]["arguments"] for c in calls] == ['{"city": "Oslo"}']  # the same call twice is one call
    assert parse_reply(reply, SPEC) == (reply, [])  # Hermes finds no call in it
    assert repeats_a_call(reply, call_format=brackets) and not repeats_a_call(call, call_format=brackets)

    pieces = ["Check", "ing. [CA", "LL] {\"name\"", "...}"]
    assert list(hold_back(iter(pieces), SPEC, call_format=brackets)) == ["Check", "ing. "]

    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                 "arguments": '{"city": "Oslo"}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "snow"}]
    assert fallback_messages(history, SPEC.tools, call_format=brackets) == [
        {"role": "system", "content": "Call a function with [CALL] {...} [/CALL]: get_weather"},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": call},
        {"role": "user", "content": "[RESULT] snow"}]


def test_an_unknown_format_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(LookupError, match=r"no tool-call format is named 'llama9'; the formats are .*hermes"):
        tool_call_format("llama9")


def test_two_formats_cannot_share_a_name() -> None:
    with pytest.raises(ValueError, match=r"two tool-call formats are named 'hermes' \(HermesFormat and Imposter\)"):
        @register_tool_call_format
        class Imposter(BracketCalls):
            name = "hermes"
