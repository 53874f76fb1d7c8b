"""OpenAI's Responses and Conversations objects over the dialogue store.

A response's input items and its reply are messages of a thread: the conversation's when the request names one,
else the thread of its ``previous_response_id`` chain (a chain that forks continues in a new thread). What a
response remembers is read back by following ``previous_response_id`` through the stored responses, each of which
lists the messages it logged, so a fork never sees the other branch. ``instructions`` are never carried over to
the next response (as OpenAI): they are the thread's system instruction while they are in force.

Function calling: a ``function_call`` input item (or a reply's call) is logged as an assistant message's
``tool_calls`` (consecutive calls in one message), a ``function_call_output`` as a ``tool`` message answering its
``call_id``; read back, they are those items again (``items_of``), the call's item id derived from its call id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

from tuneloop.curation import labels, ratings
from tuneloop.errors import InputError, ObjectNotFoundError, RequestFieldError, ThreadNotFoundError
from tuneloop.generation import GenerationOptions, options_from
from tuneloop.store.api_objects import ApiObject, ApiObjects
from tuneloop.store.conversations import Conversations, NewMessage, new_item_id
from tuneloop.store.dialogue import DialogueStore, Message, Thread, new_thread_id
from tuneloop.structured import OutputSpec, check_tool_history

MAX_METADATA_KEYS = 16


def new_response_id() -> str:
    return f"resp_{secrets.token_hex(24)}"


def new_conversation_id() -> str:
    return f"conv_{secrets.token_hex(12)}"  # as long as a thread id: `tuneloop logs list` shows it whole


Invalid = RequestFieldError  # the name this module's callers know


def check_metadata(metadata: Any, param: str = "metadata") -> dict[str, str] | None:
    """OpenAI's metadata rules: up to 16 string keys of up to 64 characters, string values up to 512."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise Invalid(f"{param} must be an object of string keys and string values", param)
    if len(metadata) > MAX_METADATA_KEYS:
        raise Invalid(f"{param} has {len(metadata)} keys; give up to {MAX_METADATA_KEYS}", param)
    for key, value in metadata.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise Invalid(f"{param} keys must be 1 to 64 characters; {str(key)[:80]!r} is not", param)
        if not isinstance(value, str) or len(value) > 512:
            raise Invalid(f"{param}[{key!r}] must be a string of up to 512 characters", param)
    return dict(metadata)


# --- input items ------------------------------------------------------------------------------------------

TEXT_PARTS = {"input_text", "output_text", "text"}


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise Invalid(f"{where} must be a string or a list of text parts", where)
    texts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_image", "input_file", "input_audio"):
            raise Invalid(f"{at} is an {kind.removeprefix('input_')} input; this server accepts text only", at)
        if kind not in TEXT_PARTS and kind != "refusal":
            raise Invalid(f"{at} has type {kind!r}; send input_text parts", at)
        value = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(value, str):
            raise Invalid(f"{at}.text must be a string", f"{at}.text")
        texts.append(value)
    return "\n".join(texts)


def read_items(items: Any, param: str = "input") -> list[NewMessage]:
    """Input items as messages to log, each with a new item id: message items (a string is one user message),
    ``function_call`` items (consecutive calls, and a message the assistant wrote just before them, are one
    assistant message with ``tool_calls``) and ``function_call_output`` items (a ``tool`` message answering its
    ``call_id``)."""
    return [message for message, _ in read_input(items, param)]


def read_input(items: Any, param: str = "input") -> list[tuple[NewMessage, list[str]]]:
    """``read_items`` with, for each message, the params of the items it was made of (for a function_call_output:
    the item; for an assistant message with calls: one per call, in order)."""
    if isinstance(items, str):
        return [(NewMessage("user", items, item_id=new_item_id()), [param])]
    if not isinstance(items, list):
        raise Invalid(f"{param} must be a string or a list of message items", param)
    out: list[tuple[NewMessage, list[str]]] = []
    for i, item in enumerate(items):
        at = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise Invalid(f"{at} must be a message item (an object with role and content)", at)
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _call_of(item, at)
            if out and out[-1][0].role == "assistant":  # the same assistant turn: one message, its calls together
                message, sources = out[-1]
                out[-1] = (replace(message, tool_calls=[*(message.tool_calls or []), call]), [*sources, at])
            else:
                out.append((NewMessage("assistant", "", item_id=new_item_id(), tool_calls=[call]), [at]))
            continue
        if kind == "function_call_output":
            call_id = _call_id(item, at)
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output, f"{at}.output")
            out.append((NewMessage("tool", text, item_id=new_item_id(), tool_call_id=call_id), [at]))
            continue
        if kind != "message":
            raise Invalid(f"{at} has type {kind!r}; this server takes message, function_call and "
                          "function_call_output items (no reasoning, other tools' calls or item references)",
                          f"{at}.type")
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise Invalid(f"{at}.role is {role!r}; use user, assistant, system or developer", f"{at}.role")
        out.append((NewMessage(role, _text_of(item.get("content"), f"{at}.content"), item_id=new_item_id()), [at]))
    return out


def _call_id(item: dict[str, Any], at: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= 64:
        raise Invalid(f"{at}.call_id must be the call's id (a string of 1 to 64 characters)", f"{at}.call_id")
    return call_id


def _call_of(item: dict[str, Any], at: str) -> dict[str, Any]:
    """A function_call item as chat completions' tool call."""
    call_id = _call_id(item, at)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid(f"{at}.name must be the called function's name", f"{at}.name")
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        raise Invalid(f"{at}.arguments must be the call's arguments as a JSON string", f"{at}.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


_WHERE = re.compile(r"^messages\[(\d+)\](?:\.tool_calls\[(\d+)\])?(\.tool_call_id)?")


def chat_messages(request: ResponseRequest, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the model reads: the instructions, the history, then the input items, as chat completions' messages.
    Each function_call_output must answer a call made before it (in the input or the history): else ``Invalid``
    naming the input item's ``call_id``."""
    system = [{"role": "system", "content": request.instructions}] if request.instructions else []
    added = [_chat(m) for m in request.items]
    messages = system + history + added
    try:
        check_tool_history(messages)
    except InputError as exc:
        raise _named(exc, len(system) + len(history), request) from None
    return messages


def _chat(message: NewMessage | Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role,
                             "content": message.content}
    if message.tool_calls:
        entry["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        entry["tool_call_id"] = message.tool_call_id
    return entry


def _named(exc: InputError, offset: int, request: ResponseRequest) -> Invalid:
    """check_tool_history's error (naming ``messages[i]…``) naming the input item it is about."""
    param = str(getattr(exc, "param", "") or "")
    found = _WHERE.match(param)
    index = int(found.group(1)) - offset if found else -1
    if found is None or not 0 <= index < len(request.sources):
        where = "conversation" if request.conversation else (
            "previous_response_id" if request.previous_response_id else "input")
        return Invalid(str(exc), where)
    sources = request.sources[index]
    if found.group(3):
        where = f"{sources[0]}.call_id"
    elif found.group(2) is not None:  # a call: the last sources are the calls' (a message item may come first)
        calls = len(request.items[index].tool_calls or [])
        where = sources[max(0, len(sources) - calls + int(found.group(2)))]
    else:
        where = sources[0]
    return Invalid(str(exc).replace(found.group(0), where, 1), where)


# --- objects in OpenAI's shapes ---------------------------------------------------------------------------


def message_item(message: Message, *, status: str = "completed") -> dict[str, Any]:
    """A logged message as one Responses/Conversations item: a tool result as its function_call_output item, a
    reply that only calls one function as its function_call item, else a message item (see ``items_of`` for all
    the items of a reply with text and calls)."""
    if message.role == "tool":
        return _output_item(message)
    if message.role == "assistant" and message.tool_calls and not message.content and len(message.tool_calls) == 1:
        return function_call_item(message.tool_calls[0])
    if message.role == "assistant":
        content = [{"type": "output_text", "text": message.content, "annotations": [], "logprobs": []}]
    else:
        content = [{"type": "input_text", "text": message.content}]
    return {"type": "message", "id": message.item_id or f"msg_{message.id}", "status": status, "role": message.role,
            "content": content}


def items_of(message: Message) -> list[dict[str, Any]]:
    """A logged message as the items it was: a reply's text (when it has any) and then one function_call item per
    call; a tool result as its function_call_output item; any other message as a message item."""
    if message.role == "assistant" and message.tool_calls:
        text = [message_item(replace(message, tool_calls=None))] if message.content else []
        return text + [function_call_item(call) for call in message.tool_calls]
    return [message_item(message)]


def _output_item(message: Message) -> dict[str, Any]:
    return {"type": "function_call_output", "id": message.item_id or f"fco_{message.id}",
            "call_id": message.tool_call_id, "output": message.content, "status": "completed"}


def function_call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A chat-completions tool call as a Responses function_call item. Its id is the call id's: the same call reads
    back with the same id (``call_<hex>`` is ``fc_<hex>``)."""
    call_id = call["id"]
    hexed = call_id.removeprefix("call_") if call_id.startswith("call_") else hashlib.sha256(
        call_id.encode()).hexdigest()[:24]
    return {"type": "function_call", "id": f"fc_{hexed}", "call_id": call_id, "name": call["function"]["name"],
            "arguments": call["function"]["arguments"], "status": status}


def logged_spec(output: OutputSpec | None) -> dict[str, Any] | None:
    """What a request asked for (text.format, tools, tool_choice, parallel_tool_calls), kept with its reply in chat
    completions' shapes, as chat completions keeps them (so `data build` writes OpenAI's fine-tuning examples)."""
    if output is None:
        return None
    wire = dict(output.wire)
    if "tools" in wire:
        wire["tools"] = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters",
                                                                              "strict") if t.get(k) is not None}}
                         for t in wire["tools"]]
    choice = wire.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        wire["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    return wire or None


def usage(tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tokens_in + tokens_out}


@dataclass
class ResponseRequest:
    """What a create call asked for, checked."""

    model: str
    items: list[NewMessage]
    instructions: str | None
    previous_response_id: str | None
    conversation: str | None
    store: bool
    metadata: dict[str, str] | None
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    # What the reply must be (text.format, tools), and how the response echoes them.
    output: OutputSpec | None = None
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    # For each of ``items``, the params of the input items it was made of (see read_input).
    sources: list[list[str]] = field(default_factory=list)

    def options(self, default_max_tokens: int) -> GenerationOptions:
        """The generation options the request asks for (``default_max_tokens``: the setting, when it gives none)."""
        return options_from(max_tokens=self.max_output_tokens, default_max_tokens=default_max_tokens,
                            temperature=self.temperature, top_p=self.top_p, output=self.output)


def response_object(request: ResponseRequest, ident: str, created: int, *, status: str,
                    output: list[dict[str, Any]], tokens: tuple[int, int] | None = None,
                    incomplete: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ident, "object": "response", "created_at": created, "status": status, "background": False,
        "error": None, "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {}, "model": request.model, "output": output,
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "conversation": {"id": request.conversation} if request.conversation else None,
        "temperature": request.temperature if request.temperature is not None else 0.0,
        "top_p": request.top_p if request.top_p is not None else 1.0,
        "text": request.text, "tool_choice": request.tool_choice, "tools": request.tools, "truncation": "disabled",
        "usage": usage(*tokens) if tokens else None,
    }
    if status in ("completed", "incomplete"):
        body["completed_at"] = int(time.time())
    return body


# --- the store side ---------------------------------------------------------------------------------------


class ResponseLog:
    """Responses and conversations kept in the dialogue store."""

    def __init__(self, store: DialogueStore, labeller: labels.Labeller) -> None:
        self.store = store
        self.labeller = labeller
        self.threads = Conversations(store)
        self.objects = ApiObjects(store)

    def response(self, ident: str) -> ApiObject:
        return self.objects.get(ident, "response")

    def new_conversation(self, metadata: dict[str, str] | None, items: list[NewMessage]
                         ) -> tuple[Thread, list[Message]]:
        """A conversation with its first items, each logged with its sentiment."""
        return self.threads.create(new_conversation_id(), kind="conversation", model="", metadata=metadata,
                                   messages=labels.labelled(items, self.labeller))

    def add_items(self, conversation_id: str, items: list[NewMessage]) -> list[Message]:
        """``items`` at the end of the conversation, each logged with its sentiment."""
        return self.threads.append(conversation_id, labels.labelled(items, self.labeller), kind="conversation")

    def history(self, request: ResponseRequest) -> list[dict[str, Any]]:
        """The messages the model reads before the new input: the conversation's items, or the chain's."""
        if request.conversation:
            try:
                self.threads.get(request.conversation, "conversation")
            except ThreadNotFoundError as exc:
                raise exc.named_by("conversation") from None  # the request's conversation, not a path's id
            return [_chat(m) for m in self.threads.messages(request.conversation)]
        if not request.previous_response_id:
            return []
        try:
            chain = self.objects.chain(request.previous_response_id)
        except ObjectNotFoundError:
            raise Invalid(f"previous_response_id {request.previous_response_id!r} is not a stored response of this "
                          "server (it was deleted, or created with store: false)", "previous_response_id") from None
        if chain[0].object != "response":
            raise Invalid(f"previous_response_id {request.previous_response_id!r} is not a response",
                          "previous_response_id")
        ids = [i for r in reversed(chain) for i in r.message_ids]
        by_id = self.threads.by_ids(ids)
        return [_chat(by_id[i]) for i in ids if i in by_id]

    def record(self, request: ResponseRequest, body: dict[str, Any], reply: NewMessage) -> None:
        """Log the input items and the reply, and keep the response (``store``)."""
        if not request.store and not request.conversation:
            return
        thread_id, kind = request.conversation, "conversation"
        if thread_id is None:
            kind = "response"
            previous = self.response(request.previous_response_id) if request.previous_response_id else None
            if (previous is not None and previous.thread_id and previous.message_ids
                    and self.threads.last_id(previous.thread_id) == previous.message_ids[-1]):
                thread_id = previous.thread_id  # the chain goes on; otherwise it forks into a new thread
        reply = replace(reply, feedback=ratings.rating_of(request.metadata))
        messages = labels.labelled([*request.items, reply], self.labeller)
        with self.store.db.session(write=True) as session:  # the exchange and the stored response, together
            if thread_id is None:
                thread, added = self.threads.create_in(session, new_thread_id(), kind=kind, model=request.model,
                                                       messages=messages, system_instruction=request.instructions)
                thread_id = thread.id
            else:
                added = self.threads.append_in(session, thread_id, messages,
                                               system_instruction=request.instructions)
            if request.store:
                self.objects.put_in(session, body["id"], object_="response", thread_id=thread_id,
                                    model=request.model, metadata=request.metadata, body=body,
                                    message_ids=[m.id for m in added])

    def input_items(self, ident: str) -> list[Message]:
        found = self.response(ident)
        if not found.thread_id:
            return []
        ids = found.message_ids[:-1]
        return self.threads.messages(found.thread_id, ids)

    def delete(self, ident: str) -> None:
        found = self.response(ident)
        self.objects.delete(ident, "response")
        if found.thread_id and not found.body.get("conversation"):
            self.threads.delete_messages(found.message_ids)  # a conversation keeps its items

    def rate(self, ident: str, metadata: dict[str, str] | None) -> dict[str, Any]:
        """tuneloop's update of a stored response: new metadata, whose ``rating`` rates its reply; metadata without
        one leaves the rating as it is (see tuneloop.curation.ratings)."""
        found = self.response(ident)
        try:
            value = ratings.rating_of(metadata)
        except InputError as exc:
            raise Invalid(str(exc), "metadata") from None
        if value is not None and found.message_ids:
            self.store.set_feedback(found.message_ids[-1], value)
        body = {**found.body, "metadata": metadata or {}}
        self.objects.update(ident, "response", metadata=metadata, body=body)
        return body

    def rate_conversation_items(self, conversation: str, metadata: dict[str, str] | None) -> None:
        """``rating:ID`` keys of a conversation's metadata rate the reply with that item or response id: all are
        checked before any is applied."""
        try:
            wanted = ratings.item_ratings(metadata)
        except InputError as exc:
            raise Invalid(str(exc), "metadata") from None
        chosen: list[tuple[int, int]] = []
        for ident, value in wanted.items():
            message = None
            if ident.startswith("resp_"):
                try:
                    found = self.response(ident)
                except ObjectNotFoundError:
                    raise Invalid(f"metadata['rating:{ident}'] names no stored response", "metadata") from None
                if found.thread_id == conversation and found.message_ids:
                    message = next(iter(self.threads.messages(conversation, found.message_ids[-1:])), None)
            else:
                message = self.threads.find_item(ident)
            if message is None or message.thread_id != conversation or message.role != "assistant":
                raise Invalid(f"metadata['rating:{ident}'] names no reply of conversation {conversation!r}; rate "
                              "an assistant item (or the response that wrote it)", "metadata")
            chosen.append((message.id, value))
        for message_id, value in chosen:
            self.store.set_feedback(message_id, value)
