"""How tuneloop renders a conversation with a model's chat template: as given, with no system prompt added."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_injects: dict[str, bool] = {}


def as_given(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages to render so that a conversation without a system message gets none.

    Some chat templates (SmolLM2, Qwen2.5 …) put a default system prompt of their own in front of a conversation
    that has none ("You are a helpful AI assistant named SmolLM …", about 20 tokens); OpenAI adds nothing. For
    those templates an empty system message stands in, so training and chat see the conversation as given.
    """
    messages = list(messages)
    if messages and messages[0].get("role") == "system":
        return messages
    template = str(getattr(tokenizer, "chat_template", None))
    if template not in _injects:
        _injects[template] = _injects_default_system(tokenizer)
    return [{"role": "system", "content": ""}, *messages] if _injects[template] else messages


def _injects_default_system(tokenizer: Any) -> bool:
    return injects_default_system(
        lambda messages: len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]))


def injects_default_system(length: Callable[[list[dict[str, str]]], int]) -> bool:
    """Whether a chat template puts a system prompt of its own in front of a conversation that has none; ``length``
    renders a conversation with the template and counts its tokens."""
    user = {"role": "user", "content": "Hi"}
    try:
        return length([user]) > length([{"role": "system", "content": ""}, user])
    except Exception:  # noqa: BLE001 - a template that refuses a system message (Gemma) injects none either
        return False


# Put in front of a chat template that adds a default system prompt: an empty system turn stands in, as
# ``as_given`` does, so that llama.cpp, Ollama and vLLM render an exported model's conversations as tuneloop does.
_GIVEN = ("{% if messages and messages[0]['role'] != 'system' %}"
          "{% set messages = [{'role': 'system', 'content': ''}] + messages %}{% endif %}")


def given_template(tokenizer: Any) -> Any:
    """The tokenizer's chat template, made to render conversations as given (see :func:`as_given`); the template
    unchanged where it adds no default system prompt, or where the change would not render the same."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or template.startswith(_GIVEN):
        return template
    probe = [{"role": "user", "content": "Hi"}]
    given = as_given(tokenizer, probe)
    if given == probe:
        return template
    patched = _GIVEN + template
    try:
        want = tokenizer.apply_chat_template(given, tokenize=False, add_generation_prompt=True)
        got = tokenizer.apply_chat_template(probe, chat_template=patched, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template the patch breaks stays as it was
        return template
    return patched if got == want else template
