"""Tool calls read back out of a reply, as chat completions' ``tool_calls`` entries, in the form a
``ToolCallFormat`` writes them."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tuneloop.structured.call_formats import HERMES, ToolCallFormat
from tuneloop.structured.spec import OutputSpec


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def parse_reply(text: str, spec: OutputSpec | None, *, call_format: ToolCallFormat = HERMES
                ) -> tuple[str | None, list[dict[str, Any]]]:
    """The reply's text and its tool calls (chat completions' ``tool_calls`` entries). Without tools the text is
    the reply; a block that does not parse, or names no tool offered, stays text."""
    if spec is None or not spec.calls_tools:
        return text, []
    bodies = call_format.call_bodies(text)
    if not bodies:
        return text, []
    names = {t.name for t in spec.tools}
    calls = []
    for body in dict.fromkeys(bodies):  # the same call twice is one call
        call = call_format.read_call(body)
        if call is None or call[0] not in names:
            return text, []
        name, arguments = call
        calls.append({"id": new_call_id(), "type": "function",
                      "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
    content = call_format.text_before_calls(text).strip()
    return content or None, calls


def repeats_a_call(text: str, *, call_format: ToolCallFormat = HERMES) -> bool:
    """Whether the last complete call in ``text`` repeats an earlier one word for word."""
    bodies = call_format.call_bodies(text)
    return len(bodies) >= 2 and bodies[-1] in bodies[:-1]
