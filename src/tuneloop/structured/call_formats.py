"""How a model writes a tool call: one class per model family (a ``ToolCallFormat``), found by its name in a
registry, as vLLM's ``ToolParserManager`` finds a tool parser. A format writes calls and results into a prompt,
teaches itself to a model whose chat template knows no tools, and reads the calls back out of a reply; a new family
is a new registered class.

Today there is one, ``hermes``: the way Qwen2/2.5/3, Hermes and SmolLM3 were trained to write a call, the way the
fallback teaches a model whose template knows no tools, and the form the grammar (``engine.grammar``) writes a call
in, between ``CALL_OPEN`` and ``CALL_CLOSE``::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from tuneloop.structured.spec import Tool


def loaded_arguments(text: str) -> Any:
    """A call's arguments (JSON text) as the object they stand for; text that is not JSON as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class ToolCallFormat(ABC):
    """How one model family writes a tool call and its result, and how a reply's calls are read back. The streaming
    checks here are for calls that open with a marker (``opener``); a family whose calls open otherwise overrides
    them."""

    name: ClassVar[str]
    opener: ClassVar[str]

    @abstractmethod
    def write_call(self, name: str, arguments: Any) -> str:
        """A call as the model writes it; ``arguments`` as an object, or as the JSON text of one."""

    @abstractmethod
    def write_result(self, content: str) -> str:
        """A function's result as the model reads it back."""

    @abstractmethod
    def instructions(self, tools: Sequence[Tool]) -> str:
        """What the system message says to describe ``tools`` and teach this way of calling them."""

    @abstractmethod
    def call_bodies(self, text: str) -> list[str]:
        """Each complete call in ``text``, as written between its markers, in order (the same call twice too)."""

    @abstractmethod
    def read_call(self, body: str) -> tuple[str, Any] | None:
        """The function's name and the arguments of a call's body; ``None`` when the body is no call."""

    def text_before_calls(self, text: str) -> str:
        """The reply's text before its first call."""
        return text[:text.index(self.opener)]

    def may_call(self, text: str) -> bool:
        """Whether the reply so far holds a call, or may be the start of one."""
        return self.opener in text or self.opener.startswith(text.lstrip())

    def shown_part(self, text: str) -> str:
        """The reply so far, less an end that may open a call."""
        cut = text.rfind(self.opener[0])
        return text if cut < 0 or not self.opener.startswith(text[cut:]) else text[:cut]


_FORMATS: dict[str, ToolCallFormat] = {}
F = TypeVar("F", bound=ToolCallFormat)


def register_tool_call_format(cls: type[F]) -> type[F]:
    """A class decorator: the format is found by its ``name`` from then on."""
    if cls.name in _FORMATS:
        raise ValueError(f"two tool-call formats are named {cls.name!r} ({type(_FORMATS[cls.name]).__name__} and "
                         f"{cls.__name__}); give {cls.__name__} another name")
    _FORMATS[cls.name] = cls()
    return cls


def tool_call_format(name: str) -> ToolCallFormat:
    """The format registered as ``name``."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise LookupError(f"no tool-call format is named {name!r}; the formats are "
                          f"{', '.join(sorted(_FORMATS))}") from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


@register_tool_call_format
class HermesFormat(ToolCallFormat):
    """A call is a JSON object of ``name`` and ``arguments`` between ``<tool_call>`` lines; a result comes back
    between ``<tool_response>`` lines."""

    name = "hermes"
    opener = "<tool_call>"
    closer = "</tool_call>"
    _call = re.compile(re.escape(opener) + r"\s*(.*?)\s*" + re.escape(closer), re.DOTALL)

    def write_call(self, name: str, arguments: Any) -> str:
        if isinstance(arguments, str):
            arguments = loaded_arguments(arguments)
        return f"{self.opener}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{self.closer}"

    def write_result(self, content: str) -> str:
        return f"<tool_response>\n{content}\n</tool_response>"

    def instructions(self, tools: Sequence[Tool]) -> str:
        described = "\n".join(json.dumps(t.as_openai()["function"], ensure_ascii=False) for t in tools)
        return ("You may call functions to answer. The functions:\n" + described + "\nTo call one, reply "
                "with\n" + self.opener + '\n{"name": <function name>, "arguments": <arguments as JSON>}\n'
                + self.closer + "\nA function's result comes back in <tool_response></tool_response>.")

    def call_bodies(self, text: str) -> list[str]:
        return [match.group(1) for match in self._call.finditer(text)]

    def read_call(self, body: str) -> tuple[str, Any] | None:
        try:
            call = json.loads(body, parse_constant=_not_json)
        except ValueError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        return call["name"], call.get("arguments", call.get("parameters", {}))


HERMES = tool_call_format(HermesFormat.name)
CALL_OPEN = HermesFormat.opener
CALL_CLOSE = HermesFormat.closer
