"""Rows and dialogues → OpenAI fine-tuning examples (chat JSONL for supervised, DPO JSONL for preferences).

Rules, in one place:

* From rows: a row whose ``positive`` is true (or unset while the default is positive) is a preferred
  answer to its prompt; false (or ``negative=True``) marks an answer to avoid. Rows are grouped by
  (system, prompt). A group with preferred and avoided answers gives DPO pairs (each avoided answer
  paired with a preferred one, round robin, so every answer is used); a group with only preferred
  answers gives supervised examples; a group with only avoided answers gives nothing (there is no
  better answer to learn) and is reported as skipped.
* From dialogues (:func:`from_dialogues`): see :func:`verdict` and :func:`select_from_thread`.
* One output file holds one format. ``method="dpo"`` writes the pairs (prompts without an avoided
  answer cannot be DPO pairs and are reported as left out); ``method="supervised"`` writes the preferred
  answers (pairs contribute their preferred side once); ``"auto"`` picks DPO when there are pairs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tuneloop.datasets.hygiene import collapse_duplicates, redact
from tuneloop.datasets.readers import Row, RowSet, Skipped
from tuneloop.datasets.validate import MIN_EXAMPLES
from tuneloop.errors import DataError
from tuneloop.store.browse import LogBrowser, LogFilter
from tuneloop.util.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from tuneloop.store import DialogueStore, Message

Method = Literal["supervised", "dpo"]
METHODS: tuple[str, ...] = ("auto", "supervised", "dpo")
# A reply that stopped early was not what the model would say; never teach it as a good answer.
UNFINISHED = {"interrupted", "length"}


def chat_messages(system: str | None, *turns: tuple[str, str]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": role, "content": content} for role, content in turns]
    return messages


def _assistant(answer: str | dict[str, Any]) -> dict[str, Any]:
    return answer if isinstance(answer, dict) else {"role": "assistant", "content": answer}


def supervised_example(messages: list[dict[str, Any]], answer: str | dict[str, Any]) -> dict[str, Any]:
    """A chat example; ``answer`` is the reply's text, or the assistant message itself (one with tool calls)."""
    return {"messages": [*messages, _assistant(answer)]}


def preference_example(messages: list[dict[str, Any]], preferred: str | dict[str, Any],
                       avoided: str | dict[str, Any]) -> dict[str, Any]:
    return {
        "input": {"messages": messages},
        "preferred_output": [_assistant(preferred)],
        "non_preferred_output": [_assistant(avoided)],
    }


def _key(example: dict[str, Any]) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False)


@dataclass
class Dataset:
    """Training examples in both shapes, and what was left out and why."""

    supervised: list[dict[str, Any]] = field(default_factory=list)
    preference: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rows: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # examples left out of the log's, by reason
    redacted: Counter[str] = field(default_factory=Counter)  # what --redact masked: EMAIL, PHONE, CARD…

    def merge(self, other: Dataset) -> Dataset:
        self.supervised += other.supervised
        self.preference += other.preference
        self.skipped += other.skipped
        self.sources += other.sources
        self.rows += other.rows
        self.dropped += other.dropped
        self.redacted += other.redacted
        return self

    def __len__(self) -> int:
        return len(self.supervised) + len(self.preference)

    def method(self, method: str = "auto") -> Method:
        """The file format ``method`` asks for; ``auto`` is DPO only when there are enough pairs for a DPO file to
        pass validation (``MIN_EXAMPLES``), else chat examples (a pair gives its preferred answer)."""
        if method not in METHODS:
            raise DataError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", param="method")
        if method == "auto":
            return "dpo" if len(self.preference) >= MIN_EXAMPLES else "supervised"
        return method  # type: ignore[return-value]

    def auto_reason(self) -> str:
        """Why ``auto`` chose the format it chose, in a sentence a person reads before training."""
        pairs, examples = len(self.preference), len(self.supervised)
        if pairs >= MIN_EXAMPLES:
            return (f"auto chose DPO: {pairs} preference pairs, enough for a DPO file (at least {MIN_EXAMPLES}); "
                    f"its {examples} chat examples are left out unless you choose the supervised format")
        if pairs:
            plural = "s" if pairs != 1 else ""
            return (f"auto chose chat examples: {pairs} preference pair{plural} would be too few for a DPO file"
                    f" (it needs at least {MIN_EXAMPLES}), so each pair gives its preferred answer as an "
                    "example")
        return "auto chose chat examples: there are no preference pairs"

    def examples(self, method: str = "auto") -> tuple[list[dict[str, Any]], int]:
        """The examples for ``method`` and how many usable examples that format leaves out."""
        chosen = self.method(method)
        if chosen == "dpo":
            return list(self.preference), len(self.supervised)
        seen = {_key(e) for e in self.supervised}
        examples = list(self.supervised)
        for pair in self.preference:
            example = {"messages": [*pair["input"]["messages"], *pair["preferred_output"]]}
            if _key(example) not in seen:
                seen.add(_key(example))
                examples.append(example)
        return examples, 0

    def to_jsonl(self, method: str = "auto") -> tuple[Method, int, bytes]:
        """One format as JSONL bytes: (format, examples, data). Refuses to produce nothing."""
        chosen = self.method(method)
        examples, _ = self.examples(chosen)
        if not examples:
            raise DataError(self.nothing_to_train(chosen))
        return chosen, len(examples), jsonl_bytes(examples)

    def write_jsonl(self, path: str | Path, method: str = "auto") -> tuple[Method, int]:
        """Write one format atomically; returns (format, examples written). Refuses to write nothing."""
        chosen, count, data = self.to_jsonl(method)
        atomic_write_bytes(Path(path), data)
        return chosen, count

    def nothing_to_train(self, method: str) -> str:
        sources = ", ".join(self.sources[:3]) + (" …" if len(self.sources) > 3 else "") or "the input"
        if method == "dpo" and self.supervised:
            return (f"{sources}: no prompt has both a preferred and an avoided answer, so there are no DPO pairs; "
                    "build chat (supervised) examples, or add rows with positive=0 for the same prompts")
        reasons = sorted({s.reason for s in self.skipped})
        detail = f" ({len(self.skipped)} rows left out: {'; '.join(reasons[:3])})" if self.skipped else ""
        return f"{sources}: no usable training examples{detail}"


def jsonl_bytes(examples: Iterable[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(e, ensure_ascii=False) for e in examples) + "\n").encode("utf-8")


def write_jsonl(path: str | Path, examples: Iterable[dict[str, Any]]) -> None:
    atomic_write_bytes(Path(path), jsonl_bytes(examples))


def build_dataset(rowset: RowSet, *, negative: bool = False) -> Dataset:
    """Shape rows (and pass examples already in OpenAI's shape through) into a :class:`Dataset`."""
    default = not negative
    groups: dict[tuple[str, str], tuple[str | None, list[Row], list[Row]]] = {}
    for row in rowset.rows:
        key = (row.system or "", " ".join(row.prompt.split()))
        group = groups.setdefault(key, (row.system, [], []))
        (group[1] if (default if row.positive is None else row.positive) else group[2]).append(row)
    dataset = Dataset(
        supervised=list(rowset.supervised),
        preference=list(rowset.preference),
        skipped=list(rowset.skipped),
        sources=list(rowset.sources),
        rows=len(rowset),
    )
    for system, preferred, avoided in groups.values():
        prompt = (preferred or avoided)[0].prompt
        messages = chat_messages(system, ("user", prompt))
        if preferred and avoided:
            good = [r for r in preferred if r.completion not in {a.completion for a in avoided}]
            for row in preferred:
                if row not in good:
                    dataset.skipped.append(Skipped(row.source, row.line, "answer marked both preferred and avoided"))
            if not good:
                continue
            for i in range(max(len(good), len(avoided))):
                dataset.preference.append(
                    preference_example(messages, good[i % len(good)].completion, avoided[i % len(avoided)].completion)
                )
        elif preferred:
            dataset.supervised += [supervised_example(messages, row.completion) for row in preferred]
        else:
            dataset.skipped += [
                Skipped(row.source, row.line, "avoided answer without a preferred answer to the same prompt")
                for row in avoided
            ]
    return dataset


# --- dialogues ---------------------------------------------------------------------------------------


def verdict(message: Message) -> Literal["good", "bad"] | None:
    """How an assistant reply was received: an explicit rating wins, else the next user turn's sentiment.

    good: rated up (feedback +1), or not rated and the user's next turn was positive — and the reply was
    complete (not cut short by Ctrl-C or the token limit). bad: rated down, or not rated and the next
    turn was negative. Anything else (neutral, no next turn yet) is not used.
    """
    if message.feedback is not None and message.feedback != 0:
        label = "good" if message.feedback > 0 else "bad"
    elif message.reaction == "positive":
        label = "good"
    elif message.reaction == "negative":
        label = "bad"
    else:
        return None
    if label == "good" and message.finish_reason in UNFINISHED:
        return None
    return label


def select_from_thread(
    system: str | None,
    messages: Sequence[Message],
    *,
    max_context_turns: int | None = None,
    keep: Callable[[Message], bool] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(supervised examples, DPO pairs) from one thread, by these rules:

    * every *good* reply becomes a supervised example: the system instruction in force, the turns before
      it (the last ``max_context_turns`` user/assistant turns when given), its user turn, the reply;
    * a *bad* reply R to request U, followed by a user turn and then a *good* reply G, becomes a DPO
      pair: the same context and U as input, G preferred, R avoided (G was the better answer to U);
    * a *corrected* reply R (someone wrote the reply C it should have been) becomes a supervised example of C and
      a DPO pair of C over R, whatever R's rating or reaction; R itself is not taught. The turns after it keep
      R as it was said (that is what the user reacted to).

    ``keep`` (when given) says which replies may be selected; the turns before them are context all the same.
    """
    supervised: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    # The system instruction in force at each turn: the log records a system message when it changes.
    has_system_rows = any(m.role == "system" for m in messages)
    current = None if has_system_rows else system
    turns: list[Message] = []
    systems: list[str | None] = []
    for m in messages:
        if m.role == "system":
            current = m.content
        elif m.role in ("user", "assistant", "tool"):
            turns.append(m)
            systems.append(current)
    tools = _tools_of(turns)
    for i, message in enumerate(turns):
        if message.role != "assistant" or i == 0 or turns[i - 1].role not in ("user", "tool"):
            continue
        if message.excluded or (keep is not None and not keep(message)):
            continue
        start = 0
        if max_context_turns is not None:
            start = max(0, i - 1 - max_context_turns)
            while start < i - 1 and turns[start].role != "user":  # never cut between a call and its results
                start += 1
        prompt = ([{"role": "system", "content": systems[i]}] if systems[i] else []) + [
            m.to_chat() for m in turns[start:i]]
        if message.correction is not None:
            corrected = message.correction.content
            supervised.append(_with_tools(supervised_example(prompt, corrected), tools))
            if corrected.strip() != message.content.strip() or message.tool_calls:
                pairs.append(_with_tools(preference_example(prompt, corrected, _reply(message)), tools))
            continue
        label = verdict(message)
        if label == "good":
            supervised.append(_with_tools(supervised_example(prompt, _reply(message)), tools))
        elif (
            label == "bad"
            and i + 2 < len(turns)
            and turns[i + 1].role == "user"
            and turns[i + 2].role == "assistant"
            and verdict(turns[i + 2]) == "good"
            and not turns[i + 2].excluded
            and turns[i + 2].content.strip() != message.content.strip()
        ):
            pairs.append(_with_tools(preference_example(prompt, _reply(turns[i + 2]), _reply(message)), tools))
    return supervised, pairs


def _reply(message: Message) -> str | dict[str, Any]:
    """A reply as an example's assistant message: its text, or the message with its tool calls."""
    return {"role": "assistant", **{k: v for k, v in message.to_chat().items() if k != "role"}} \
        if message.tool_calls else message.content


def _tools_of(turns: Sequence[Message]) -> dict[str, Any]:
    """The tools the thread's requests offered (OpenAI's fine-tuning format puts them on the example), from the
    last reply that recorded them."""
    for message in reversed(turns):
        spec = message.output_spec or {}
        if spec.get("tools"):
            found = {"tools": spec["tools"]}
            if spec.get("parallel_tool_calls") is not None:
                found["parallel_tool_calls"] = spec["parallel_tool_calls"]
            return found
    return {}


def _with_tools(example: dict[str, Any], tools: dict[str, Any]) -> dict[str, Any]:
    if not tools:
        return example
    if "input" in example:  # a DPO pair: the tools go with its input
        return {**example, "input": {**example["input"], **tools}}
    return {**example, **tools}


# Which logged replies may be selected: the log's one filter (its reply fields: model, metadata, since, until,
# replies; its thread fields too), compiled to SQL by the store. The name this module has always documented.
DialogueFilter = LogFilter


def from_dialogues(
    store: DialogueStore,
    *,
    thread_ids: list[str] | None = None,
    assistant_id: str | None = None,
    max_context_turns: int | None = None,
    where: DialogueFilter | None = None,
    redact_personal: bool = False,
) -> Dataset:
    """Examples selected from the logged threads (all, or those named / of one assistant), replies filtered by
    ``where``: every thread, whether it came from a chat, a conversation, a response chain or a stored
    completion. Repeated examples are collapsed (``dropped`` counts them by reason); ``redact_personal`` masks
    e-mail addresses, phone, card and IBAN numbers and API keys (see tuneloop.datasets.hygiene)."""
    dataset = Dataset(sources=[f"dialogues in {store.location}"])
    if assistant_id is not None:
        where = replace(where or LogFilter(), assistant=assistant_id)
    kept: set[int] | None = None
    if where:
        browser = LogBrowser(store)
        kept = set(browser.reply_ids(where))  # the named threads are read below: no list of them in the query
        if thread_ids is None:
            thread_ids = browser.thread_ids(where)[::-1]  # oldest first, as the log is read
    for thread, messages in store.export(thread_ids):
        keep = (lambda m: m.id in kept) if kept is not None else None
        dataset.rows += sum(1 for m in messages if m.role == "assistant" and (keep is None or keep(m)))
        supervised, pairs = select_from_thread(thread.system_instruction, messages, max_context_turns=max_context_turns,
                                               keep=keep)
        dataset.supervised += supervised
        dataset.preference += pairs
    if redact_personal:
        dataset.supervised, masked = redact(dataset.supervised)
        dataset.preference, masked_pairs = redact(dataset.preference)
        dataset.redacted = masked + masked_pairs
    dataset.supervised, dropped = collapse_duplicates(dataset.supervised)
    dataset.preference, dropped_pairs = collapse_duplicates(dataset.preference)
    dataset.dropped = Counter({f"{reason} (chat example)": n for reason, n in dropped.items()}) + Counter(
        {f"{reason} (DPO pair)": n for reason, n in dropped_pairs.items()})
    return dataset
