"""Chat examples → token rows for the trainer: ``input_ids`` and an ``assistant_masks`` that marks every
assistant message the loss is on (all of them, as OpenAI trains; ``"weight": 0`` leaves one out).

The model's own chat template renders each conversation, exactly as chat and the serving engines will render
it. The tokens of assistant message *i* are those that ``render(messages[:i+1])`` adds to
``render(messages[:i], add_generation_prompt=True)``, end-of-turn included, so the model learns to stop. A
template whose renderings are not prefixes of each other (some drop earlier reasoning) trains the last
assistant message only, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneloop.engine.template import as_given
from tuneloop.structured import Tool, fallback_messages, for_template, template_knows_tools, tools_spec, uses_tools


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def clean(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Role and text of each message (content parts joined), as a chat template takes them; a reply's tool calls
    and the call a tool result answers are kept."""
    out = []
    for m in messages:
        entry: dict[str, Any] = {"role": m["role"], "content": _text(m.get("content"))}
        for key in ("tool_calls", "tool_call_id"):
            if m.get(key):
                entry[key] = m[key]
        out.append(entry)
    return out


def tools_of(example: dict[str, Any]) -> tuple[Tool, ...]:
    """The functions an example offers (OpenAI's ``tools``, checked by the validator)."""
    return tools_spec(example["tools"]).tools if example.get("tools") else ()  # type: ignore[union-attr]


def as_text(messages: Sequence[dict[str, Any]], tools: Sequence[Tool] = ()) -> list[dict[str, str]]:
    """Plain role-and-text messages for a trainer that renders them itself (DPO): tools and calls written as the
    fallback writes them (``structured.fallback_messages``)."""
    messages = clean(messages)
    if tools or uses_tools(messages):
        return fallback_messages(messages, tools)
    return messages


def render(tokenizer: Any, messages: Sequence[dict[str, Any]], *, prompt: bool = False,
           tools: Sequence[Tool] = ()) -> list[int]:
    """Token ids of a conversation rendered by the model's chat template; tools and calls by the template where it
    renders them, else as the fallback writes them (as chat and the engines render them)."""
    given, tool_list = for_template(messages, tools, template_knows_tools(getattr(tokenizer, "chat_template", None)))
    encoded = tokenizer.apply_chat_template(as_given(tokenizer, given), tools=tool_list, tokenize=True,
                                            add_generation_prompt=prompt, return_dict=True)
    return list(encoded["input_ids"])


def supervised_row(tokenizer: Any, example: dict[str, Any]) -> dict[str, list[int]]:
    """One chat example → ``{"input_ids", "assistant_masks"}`` (1 on the tokens the loss is on)."""
    raw = example["messages"]
    messages = clean(raw)
    tools = tools_of(example)
    ids = render(tokenizer, messages, tools=tools)
    mask = [0] * len(ids)
    trained = [i for i, m in enumerate(raw) if m["role"] == "assistant" and m.get("weight", 1) != 0]
    for i in trained:
        start = len(render(tokenizer, messages[:i], prompt=True, tools=tools))
        upto = render(tokenizer, messages[: i + 1], tools=tools)
        if ids[: len(upto)] != upto or start > len(upto):
            return _last_turn_row(tokenizer, messages, trained, tools)
        for j in range(start, len(upto)):
            mask[j] = 1
    return {"input_ids": ids, "assistant_masks": mask}


def _last_turn_row(tokenizer: Any, messages: list[dict[str, Any]], trained: list[int],
                   tools: Sequence[Tool] = ()) -> dict[str, list[int]]:
    last = trained[-1] if trained else max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = render(tokenizer, messages[:last], prompt=True, tools=tools)
    ids = render(tokenizer, messages[: last + 1], tools=tools)
    if ids[: len(prompt)] != prompt:  # the template renders the prompt differently alone: keep its tokens as is
        ids = prompt + ids[len(prompt):]
    return {"input_ids": ids, "assistant_masks": [0] * len(prompt) + [1 if trained else 0] * (len(ids) - len(prompt))}


def continuation_row(tokenizer: Any, messages: Sequence[dict[str, str]], answer: list[int],
                     end_ids: set[int]) -> dict[str, list[int]]:
    """A prompt and the token ids a model answered it with: complete answers are rendered by the template (with
    the end of turn), answers cut at a length limit are trained without an end, so the model does not learn
    to stop mid-sentence."""
    prompt = render(tokenizer, messages, prompt=True)
    ends = [k for k, t in enumerate(answer) if t in end_ids]
    if ends:
        text = tokenizer.decode(answer[: ends[0]], skip_special_tokens=True)
        full = render(tokenizer, [*messages, {"role": "assistant", "content": text}])
        if full[: len(prompt)] == prompt:
            return {"input_ids": full, "assistant_masks": [0] * len(prompt) + [1] * (len(full) - len(prompt))}
        answer = answer[: ends[0]]
    return {"input_ids": prompt + answer, "assistant_masks": [0] * len(prompt) + [1] * len(answer)}
