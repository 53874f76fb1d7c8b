"""What a reply must be, beyond free text: JSON matching a schema (Structured Outputs), any JSON object (JSON mode),
or calls to the functions a request offers (tools), as OpenAI's chat completions and Responses ask for them.

This module is the protocol's side, shared by every engine and shell: it checks what a request asks for (a schema
keyword outside the subset, a tool whose parameters are no schema, ``tool_choice`` naming no function, a ``tool``
message answering no call: an ``InputError`` naming the field), renders tools for a chat template that knows none,
and reads the calls back out of a reply. The grammar that makes a local model's reply conform is built from an
``OutputSpec`` by ``tuneloop.engine.grammar``.

A call is written the way Qwen2/2.5/3, Hermes and SmolLM3 were trained to write one, and the way the fallback
teaches a model whose template knows no tools::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop.errors import InputError

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CALL = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.DOTALL)

# JSON Schema keywords a reply is held to (OpenAI's documented subset for Structured Outputs, and the few more the
# grammar enforces as well: minLength/maxLength, oneOf and allOf).
SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "oneOf", "allOf",
    "$ref", "$defs", "definitions", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "minLength", "maxLength",
})
# Annotations: they describe, they constrain nothing, and a grammar has nothing to enforce for them.
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
                         "readOnly", "writeOnly", "nullable", "discriminator", "strict"})
FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid", "uri"})
TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")


class StructuredOutputError(InputError):
    """A schema, a tool or a tool call the request gives cannot be used (``param`` names where)."""


@dataclass(frozen=True)
class Tool:
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


# -- checking what a request asks for ---------------------------------------------------------------------------
def check_schema(schema: Any, where: str) -> None:
    """Raise ``StructuredOutputError`` naming the first keyword (by its path) that a reply cannot be held to."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise StructuredOutputError(f"{where} must be a JSON Schema object, not {type(schema).__name__}", param=where)
    for key, value in schema.items():
        path = f"{where}.{key}"
        if key.startswith("x-") or key in ANNOTATIONS:
            continue
        if key not in SUPPORTED:
            raise StructuredOutputError(
                f"{path}: the JSON Schema keyword {key!r} is not supported in structured outputs; supported: "
                f"{', '.join(sorted(SUPPORTED))}", param=path)
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            bad = [k for k in kinds if not isinstance(k, str) or k not in TYPES]
            if bad or not kinds:
                raise StructuredOutputError(f"{path}: {bad[0] if bad else value!r} is not a JSON Schema type; use one "
                                            f"of {', '.join(sorted(TYPES))}", param=path)
        elif key == "format" and (not isinstance(value, str) or value not in FORMATS):
            raise StructuredOutputError(f"{path}: the string format {value!r} is not supported; supported: "
                                        f"{', '.join(sorted(FORMATS))}", param=path)
        elif key in _SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise StructuredOutputError(f"{path} must be an object of schemas", param=path)
            for name, sub in value.items():
                check_schema(sub, f"{path}.{name}")
        elif key in _SCHEMA_LISTS:
            if not isinstance(value, list) or not value:
                raise StructuredOutputError(f"{path} must be a non-empty list of schemas", param=path)
            for i, sub in enumerate(value):
                check_schema(sub, f"{path}[{i}]")
        elif key in ("items", "additionalProperties"):
            check_schema(value, path)
        elif key == "required" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise StructuredOutputError(f"{path} must be a list of property names", param=path)
        elif key == "enum" and not (isinstance(value, list) and value):
            raise StructuredOutputError(f"{path} must be a non-empty list", param=path)
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                raise StructuredOutputError(f"{path}: {value!r} is not a regular expression ({exc})",
                                            param=path) from None


def strictly(schema: Any) -> Any:
    """The schema as OpenAI's ``strict`` mode reads it: an object without ``additionalProperties`` takes none."""
    if isinstance(schema, list):
        return [strictly(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (strictly(v) if k in ("items", "additionalProperties", *_SCHEMA_LISTS) else
               {n: strictly(s) for n, s in v.items()} if k in _SCHEMA_MAPS and isinstance(v, dict) else v)
           for k, v in schema.items()}
    kinds = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if ("object" in kinds or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


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


# -- rendering tools for a template that knows none ---------------------------------------------------------------
def fallback_messages(messages: Sequence[dict[str, Any]], tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The conversation for a chat template without tools: the functions described in the system message, calls
    written as ``<tool_call>`` blocks in the assistant's text, results as ``<tool_response>`` blocks from the user."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            blocks = [format_call(c["function"]["name"], loaded_arguments(c["function"]["arguments"]))
                      for c in message["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join([content, *blocks] if content else blocks)})
        elif role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results"):
                out[-1] = {**out[-1], "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
        else:
            out.append({"role": role, "content": content})
    out = [{k: v for k, v in m.items() if k != "tool_results"} for m in out]
    if tools:
        described = "\n".join(json.dumps(t.as_openai()["function"], ensure_ascii=False) for t in tools)
        preamble = ("You may call functions to answer. The functions:\n" + described + "\nTo call one, reply "
                    "with\n" + CALL_OPEN + '\n{"name": <function name>, "arguments": <arguments as JSON>}\n'
                    + CALL_CLOSE + "\nA function's result comes back in <tool_response></tool_response>.")
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + preamble).strip()}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out


def uses_tools(messages: Sequence[dict[str, Any]]) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def for_template(messages: Sequence[dict[str, Any]], tools: Sequence[Tool], knows_tools: bool
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and ``tools`` to render with a chat template: as transformers passes them where the template
    renders tools (a call's arguments as an object), else through :func:`fallback_messages`."""
    if not tools and not uses_tools(messages):
        return [{"role": m["role"], "content": m.get("content") or ""} for m in messages], None
    if not knows_tools:
        return fallback_messages(messages, tools), None
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


def loaded_arguments(text: str) -> Any:
    """A call's arguments (JSON text) as the object they stand for; text that is not JSON as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_call(name: str, arguments: Any) -> str:
    """A call as a model writes it; ``arguments`` as an object, or as the JSON text of one."""
    if isinstance(arguments, str):
        arguments = loaded_arguments(arguments)
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CALL_CLOSE}"


def template_knows_tools(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` (Qwen2/2.5/3, Llama 3.1+, Mistral, Hermes …)."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None


# -- reading calls back -------------------------------------------------------------------------------------------
def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def parse_reply(text: str, spec: OutputSpec | None) -> tuple[str | None, list[dict[str, Any]]]:
    """The reply's text and its tool calls (chat completions' ``tool_calls`` entries). Without tools the text is
    the reply; a block that does not parse, or names no tool offered, stays text."""
    if spec is None or not spec.calls_tools or CALL_OPEN not in text:
        return text, []
    names = {t.name for t in spec.tools}
    calls = []
    seen = set()
    for match in _CALL.finditer(text):
        if match.group(1) in seen:
            continue  # the same call twice is one call
        seen.add(match.group(1))
        try:
            body = json.loads(match.group(1), parse_constant=_not_json)
        except ValueError:
            return text, []
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or body["name"] not in names:
            return text, []
        arguments = body.get("arguments", body.get("parameters", {}))
        calls.append({"id": new_call_id(), "type": "function",
                      "function": {"name": body["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}})
    if not calls:
        return text, []
    content = text[:text.index(CALL_OPEN)].strip()
    return content or None, calls


def repeats_a_call(text: str) -> bool:
    """Whether the last complete call in ``text`` repeats an earlier one word for word."""
    if text.count(CALL_CLOSE) < 2:
        return False
    blocks = [m.group(1) for m in _CALL.finditer(text)]
    return len(blocks) >= 2 and blocks[-1] in blocks[:-1]


def hold_back(pieces: Iterator[str], spec: OutputSpec | None) -> Iterator[str]:
    """The text pieces of a reply that may call tools, as they can be shown: text streams as it comes, but once the
    reply starts (or may start) with a call, nothing more is shown; :func:`parse_reply` reads the calls at the end."""
    if spec is None or not spec.calls_tools:
        yield from pieces
        return
    shown = ""
    held = ""
    for piece in pieces:
        held += piece
        text = shown + held
        stripped = text.lstrip()
        if CALL_OPEN in text or CALL_OPEN.startswith(stripped):
            continue  # a call (or what may become one): kept for parse_reply
        # Text: show it, up to any '<' that may open a call at its end.
        cut = text.rfind("<")
        safe = text if cut < 0 or not CALL_OPEN.startswith(text[cut:]) else text[:cut]
        if len(safe) > len(shown):
            yield safe[len(shown):]
            held = text[len(safe):]
            shown = safe
