"""A model's tokenizer and chat template read from its files, without transformers (a cold start stays quick).

``tokenizers`` reads ``tokenizer.json`` (the library transformers' fast tokenizers are built on) and jinja2 renders
the chat template the way transformers does: a sandbox, ``trim_blocks`` and ``lstrip_blocks``, loop controls,
``raise_exception``, ``strftime_now``, a ``tojson`` that keeps non-ASCII text, the special tokens as variables and
``{% generation %}`` blocks. ``tests/test_fast_engine.py`` checks the token ids equal the reference engine's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneloop.engine.template import injects_default_system
from tuneloop.errors import ModelLoadError
from tuneloop.structured import Tool, for_template, template_knows_tools

Message = dict[str, Any]
_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _environment() -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """``{% generation %}…{% endgeneration %}`` (marks the assistant's tokens for training): rendered as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # an AddedToken as older tokenizer_config.json files store it
        value = value.get("content")
    return value if isinstance(value, str) else None


class ChatTokenizer:
    """Encode, decode and render chats for the model whose tokenizer files are in ``folder``."""

    def __init__(self, folder: Path, *, model_id: str) -> None:
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            config_file = folder / "tokenizer_config.json"
            config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        except Exception as exc:  # noqa: BLE001 - OSError, bad JSON, or tokenizers' own plain Exception
            raise ModelLoadError(f"model {model_id!r}: cannot read the tokenizer in {folder}: {exc}; delete that "
                                 "folder to convert the model anew") from exc
        template_file = folder / "chat_template.jinja"
        template = template_file.read_text() if template_file.is_file() else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not isinstance(template, str):
            raise ModelLoadError(f"model {model_id!r} has no chat template in {folder}; it cannot chat")
        self._template = _environment().from_string(template)
        self.template_source = template
        self.knows_tools = template_knows_tools(template)
        self._variables = {name: _token_text(config.get(name)) for name in _SPECIAL}
        self._empty_system = injects_default_system(lambda messages: len(self.encode(self.render(messages))))

    def render(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None) -> str:
        return self._template.render(messages=list(messages), add_generation_prompt=True, tools=tools,
                                     documents=None, **self._variables)

    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> list[int]:
        """The prompt's token ids, as given: no default system prompt added (``template.as_given``); tools and
        tool calls rendered by the template where it knows them, else by ``structured.fallback_messages``."""
        messages, tool_list = for_template(messages, tools, self.knows_tools)
        if self._empty_system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": ""}, *messages]
        return self.encode(self.render(messages, tool_list))

    def to_json(self) -> str:
        """The tokenizer as ``tokenizer.json`` holds it (what llguidance reads)."""
        return self._tokenizer.to_str()

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)
