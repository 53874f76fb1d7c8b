"""What a reply must be (``OutputSpec``, with the ``Tool``s it may call), read from a request: chat completions'
``response_format``, the Responses API's ``text.format``, either API's ``tools`` and ``tool_choice``, and the tool calls
and results of the conversation so far. A request that asks for what cannot be given is a ``StructuredOutputError``
naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop.structured.schema import StructuredOutputError, check_schema, strictly

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Tool:
    """A function a reply may call, as the request offers it."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False

    def as_openai(self) -> dict[str, Any]:
        """The tool as chat completions' ``tools`` entries are written (what chat templates are given)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class OutputSpec:
    """What a reply must be. ``schema``: JSON matching it; ``json_object``: any JSON object; ``tools`` with
    ``tool_choice`` (``auto``: text or calls, ``required``: calls, ``function``: a call of ``function``, ``none``:
    text); ``parallel``: more than one call at once."""

    schema: dict[str, Any] | None = None
    schema_name: str = "response"
    json_object: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    function: str | None = None
    parallel: bool = True
    # The request's own fields (response_format, tools, tool_choice, parallel_tool_calls), passed unchanged to an
    # OpenAI-compatible server.
    wire: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def constrained(self) -> bool:
        """Whether decoding needs a grammar at all."""
        return self.schema is not None or self.json_object or self.calls_tools

    def key(self) -> str:
        """A stable text of the spec: compiled grammars are cached by it."""
        return json.dumps({"schema": self.schema, "json": self.json_object,
                           "tools": [[t.name, t.parameters] for t in self.tools], "choice": self.tool_choice,
                           "function": self.function, "parallel": self.parallel}, sort_keys=True)

    def callable_tools(self) -> tuple[Tool, ...]:
        """The tools a call may name (the one ``tool_choice`` names, or all)."""
        if self.tool_choice == "function":
            return tuple(t for t in self.tools if t.name == self.function)
        return self.tools if self.calls_tools else ()


def response_format_spec(response_format: Any, where: str = "response_format") -> OutputSpec | None:
    """The spec of chat completions' ``response_format`` (``None`` for text). Responses' ``text.format`` has the same
    fields one level up: pass ``{"type": ..., "json_schema": {...}}`` built from it (``responses_format``)."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise StructuredOutputError(f"{where} must be an object", param=where)
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return OutputSpec(json_object=True, wire={"response_format": response_format})
    if kind != "json_schema":
        raise StructuredOutputError(f"{where}.type {kind!r} is not one of text, json_object, json_schema",
                                    param=f"{where}.type")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise StructuredOutputError(f"{where}.json_schema is required with type json_schema",
                                    param=f"{where}.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise StructuredOutputError(f"{where}.json_schema.name must be 1 to 64 letters, digits, _ or -",
                                    param=f"{where}.json_schema.name")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise StructuredOutputError(f"{where}.json_schema.schema must be a JSON Schema object",
                                    param=f"{where}.json_schema.schema")
    check_schema(schema, f"{where}.json_schema.schema")
    return OutputSpec(schema=strictly(schema) if spec.get("strict") else schema, schema_name=name,
                      wire={"response_format": response_format})


def responses_format(text: Any) -> OutputSpec | None:
    """The spec of the Responses API's ``text.format``."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise StructuredOutputError("text must be an object", param="text")
    fmt = text.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return response_format_spec(fmt, "text.format")
    inner = {k: v for k, v in fmt.items() if k != "type"}
    try:
        return response_format_spec({"type": "json_schema", "json_schema": inner}, "text.format")
    except StructuredOutputError as exc:
        where = str(getattr(exc, "param", "text.format")).replace("text.format.json_schema", "text.format")
        raise StructuredOutputError(str(exc).replace("text.format.json_schema", "text.format"), param=where) from None


def tools_spec(tools: Any, tool_choice: Any = None, parallel: bool | None = None, *, base: OutputSpec | None = None,
               responses: bool = False) -> OutputSpec | None:
    """The spec of a request's ``tools`` and ``tool_choice`` (chat completions' shapes, or with ``responses`` the
    Responses API's flat ``{"type": "function", "name", "parameters"}`` tools), on top of ``base`` (a response
    format)."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise StructuredOutputError("tool_choice needs tools", param="tool_choice")
        return base
    if not isinstance(tools, list):
        raise StructuredOutputError("tools must be a list", param="tools")
    parsed: list[Tool] = []
    for i, entry in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(entry, dict) or entry.get("type") != "function":
            kind = entry.get("type") if isinstance(entry, dict) else type(entry).__name__
            raise StructuredOutputError(f"{where}: tools of type {kind!r} are not supported; give function tools",
                                        param=f"{where}.type")
        function = entry if responses else entry.get("function")
        prefix = where if responses else f"{where}.function"
        if not isinstance(function, dict):
            raise StructuredOutputError(f"{prefix} is required", param=prefix)
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise StructuredOutputError(f"{prefix}.name must be 1 to 64 letters, digits, _ or -",
                                        param=f"{prefix}.name")
        if any(t.name == name for t in parsed):
            raise StructuredOutputError(f"{prefix}.name: two tools are named {name!r}", param=f"{prefix}.name")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        check_schema(parameters, f"{prefix}.parameters")
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise StructuredOutputError(f"{prefix}.parameters must be a JSON Schema of type object",
                                        param=f"{prefix}.parameters")
        strict = bool(function.get("strict"))
        parsed.append(Tool(name, str(function.get("description") or ""),
                           strictly(parameters) if strict else parameters, strict))
    choice, function_name = _tool_choice(tool_choice, [t.name for t in parsed], responses)
    base = base or OutputSpec()
    wire = {**base.wire, "tools": tools}
    if tool_choice is not None:
        wire["tool_choice"] = tool_choice
    if parallel is not None:
        wire["parallel_tool_calls"] = parallel
    return OutputSpec(schema=base.schema, schema_name=base.schema_name, json_object=base.json_object,
                      tools=tuple(parsed), tool_choice=choice, function=function_name,
                      parallel=True if parallel is None else bool(parallel), wire=wire)


def _tool_choice(value: Any, names: list[str], responses: bool) -> tuple[str, str | None]:
    if value is None:
        return "auto", None
    if value in ("auto", "none", "required"):
        return value, None
    if isinstance(value, dict) and value.get("type") == "function":
        function = value if responses else value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        where = "tool_choice.name" if responses else "tool_choice.function.name"
        if name not in names:
            raise StructuredOutputError(f"{where}: no tool is named {name!r}; the tools are {', '.join(names)}",
                                        param=where)
        return "function", name
    raise StructuredOutputError("tool_choice must be 'auto', 'none', 'required' or "
                                + ("{'type': 'function', 'name': ...}" if responses else
                                   "{'type': 'function', 'function': {'name': ...}}"), param="tool_choice")


def check_tool_history(messages: Sequence[dict[str, Any]]) -> None:
    """Each ``tool`` message answers a call an earlier assistant message made; each call is well formed."""
    calls: set[str] = set()
    for i, message in enumerate(messages):
        for j, call in enumerate(message.get("tool_calls") or []):
            where = f"messages[{i}].tool_calls[{j}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(function, dict) \
                    or not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
                raise StructuredOutputError(f"{where} must have an id, and a function with a name and its arguments "
                                            "as a JSON string", param=where)
            calls.add(call["id"])
        if message.get("role") == "tool":
            answered = message.get("tool_call_id")
            if not isinstance(answered, str) or answered not in calls:
                where = f"messages[{i}].tool_call_id"
                raise StructuredOutputError(
                    f"{where}: {answered!r} answers no tool call of an earlier assistant message"
                    + (f" (the calls are {', '.join(sorted(calls))})" if calls else ""), param=where)
