"""What a reply must be, beyond free text: JSON matching a schema (Structured Outputs), any JSON object (JSON mode),
or calls to the functions a request offers (tools), as OpenAI's chat completions and Responses ask for them.

This package is the protocol's side, shared by every engine and shell, a module per job:

- ``schema``: the JSON Schema subset a reply is held to (``check_schema``, ``strictly``);
- ``spec``: what a request asks for, read into an ``OutputSpec`` and checked (a schema keyword outside the subset, a
  tool whose parameters are no schema, ``tool_choice`` naming no function, a ``tool`` message answering no call: a
  ``StructuredOutputError`` naming the field);
- ``call_formats``: how a model family writes a tool call (``ToolCallFormat``, a registry by name; ``hermes`` today);
- ``prompts``: tools written into a prompt, by the chat template or by the fallback for one that knows none;
- ``parsing``: the calls read back out of a reply;
- ``streaming``: a streamed reply's text held back once a call starts.

The grammar that makes a local model's reply conform is built from an ``OutputSpec`` by ``tuneloop.engine.grammar``.
"""

from tuneloop.structured.call_formats import (
    CALL_CLOSE,
    CALL_OPEN,
    HERMES,
    HermesFormat,
    ToolCallFormat,
    loaded_arguments,
    register_tool_call_format,
    tool_call_format,
)
from tuneloop.structured.parsing import new_call_id, parse_reply, repeats_a_call
from tuneloop.structured.prompts import fallback_messages, for_template, template_knows_tools, uses_tools
from tuneloop.structured.schema import (
    ANNOTATIONS,
    FORMATS,
    SUPPORTED,
    TYPES,
    StructuredOutputError,
    check_schema,
    strictly,
)
from tuneloop.structured.spec import (
    OutputSpec,
    Tool,
    check_tool_history,
    response_format_spec,
    responses_format,
    tools_spec,
)
from tuneloop.structured.streaming import hold_back

__all__ = [
    "ANNOTATIONS", "CALL_CLOSE", "CALL_OPEN", "FORMATS", "HERMES", "SUPPORTED", "TYPES", "HermesFormat", "OutputSpec",
    "StructuredOutputError", "Tool", "ToolCallFormat", "check_schema", "check_tool_history", "fallback_messages",
    "for_template", "hold_back", "loaded_arguments", "new_call_id", "parse_reply", "register_tool_call_format",
    "repeats_a_call", "response_format_spec", "responses_format", "strictly", "template_knows_tools",
    "tool_call_format", "tools_spec", "uses_tools",
]
