"""Tools written into a prompt: as a chat template that renders tools is given them (``for_template``), or, for a
template that knows none, by a fallback that describes the functions in the system message and writes calls and
results as a ``ToolCallFormat`` does (``fallback_messages``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tuneloop.structured.call_formats import HERMES, ToolCallFormat, loaded_arguments
from tuneloop.structured.spec import Tool


def fallback_messages(messages: Sequence[dict[str, Any]], tools: Sequence[Tool], *,
                      call_format: ToolCallFormat = HERMES) -> list[dict[str, Any]]:
    """The conversation for a chat template without tools: the functions described in the system message, calls
    written in the assistant's text and results from the user as ``call_format`` writes them (``<tool_call>`` and
    ``<tool_response>`` blocks)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            blocks = [call_format.write_call(c["function"]["name"], loaded_arguments(c["function"]["arguments"]))
                      for c in message["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join([content, *blocks] if content else blocks)})
        elif role == "tool":
            block = call_format.write_result(content)
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results"):
                out[-1] = {**out[-1], "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
        else:
            out.append({"role": role, "content": content})
    out = [{k: v for k, v in m.items() if k != "tool_results"} for m in out]
    if tools:
        preamble = call_format.instructions(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + preamble).strip()}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out


def uses_tools(messages: Sequence[dict[str, Any]]) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def for_template(messages: Sequence[dict[str, Any]], tools: Sequence[Tool], knows_tools: bool, *,
                 call_format: ToolCallFormat = HERMES) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and ``tools`` to render with a chat template: as transformers passes them where the template
    renders tools (a call's arguments as an object), else through :func:`fallback_messages`."""
    if not tools and not uses_tools(messages):
        return [{"role": m["role"], "content": m.get("content") or ""} for m in messages], None
    if not knows_tools:
        return fallback_messages(messages, tools, call_format=call_format), None
    out = []
    for message in messages:
        entry: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
        if message.get("tool_calls"):
            entry["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                "name": c["function"]["name"], "arguments": loaded_arguments(c["function"]["arguments"])}}
                for c in message["tool_calls"]]
        for key in ("tool_call_id", "name"):
            if message.get(key):
                entry[key] = message[key]
        out.append(entry)
    return out, [t.as_openai() for t in tools] or None


def template_knows_tools(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` (Qwen2/2.5/3, Llama 3.1+, Mistral, Hermes …)."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None
