"""Evals: questions with expected answers, asked of one or more models and graded, side by side.

An eval file is JSONL or CSV.

* JSONL, one object per line: ``question`` (a string) or ``messages`` (chat messages; a final assistant message,
  if any, is the reference answer and is not sent), ``expected`` (a string, or a list of strings any of which
  passes), and optionally ``grader``.
* CSV: a question column (``question``, ``prompt``, ``input`` or ``user``), an ``expected`` column (or
  ``answer``), optionally ``grader`` and ``system``.

Graders (``contains`` when none is given):

* ``contains``: the expected text appears in the answer as whole words, ignoring case ("7" does not pass "17");
* ``exact``: the whole answer is the expected text, ignoring case, surrounding spaces and a final full stop;
* ``regex``: the expected Python regular expression matches somewhere in the answer (add ``(?i)`` to ignore case);
* ``similar``: the answer holds at least 60 % of the words the expected answer adds to the question (ignoring case
  and punctuation; a word counts as often as the expected answer has it; all its words when it adds none): for
  whole replies, such as those an eval built from the log expects (:func:`from_log`). "What colour is the Zorblat
  12?" expecting "The Zorblat 12 is teal." needs "teal";
* ``tool_call``: the item offers ``tools`` (chat completions' function tools) and ``expected`` is the call to make,
  ``{"name": …, "arguments": {…}}`` (or a list of such calls, any of which passes): the model's first call names
  that function with equal arguments (the default grader when ``tools`` are given). The answer shown is the call
  as JSON, or the text when the model made none.

Answers are greedy (temperature 0), so a model gives the same answer every run. Local models answer the
questions in batches; others one at a time through their provider.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.datasets.readers import COMPLETION_COLUMNS, PROMPT_COLUMNS, SYSTEM_COLUMNS, decode, pick_delimiter
from tuneloop.errors import EvalFileError, InputError
from tuneloop.generation import GenerationOptions
from tuneloop.structured import StructuredOutputError, loaded_arguments, tools_spec

if TYPE_CHECKING:
    from tuneloop.runtime import Runtime
    from tuneloop.store import DialogueStore, Store
    from tuneloop.store.browse import LogFilter

GRADERS = ("contains", "exact", "regex", "similar", "tool_call")
SIMILAR_SHARE = 0.6  # the share of the expected answer's words a "similar" answer holds
_WORDS = re.compile(r"[^\W_]+")
EXPECTED_COLUMNS = ("expected", "expected_answer", "ideal", *COMPLETION_COLUMNS)
DEFAULT_MAX_TOKENS = 64


@dataclass(frozen=True)
class EvalItem:
    """One question (as the chat messages sent) and what a right answer contains."""

    messages: tuple[dict[str, str], ...]
    expected: tuple[str, ...]  # tool_call: each the JSON text of {"name", "arguments"}
    grader: str = "contains"
    source: str = ""
    line: int = 0
    tools: tuple[dict[str, Any], ...] = ()  # chat completions' function tools the question offers

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    def grade(self, answer: str) -> bool:
        return any(_passes(self.grader, expected, answer, self.question) for expected in self.expected)


def _passes(grader: str, expected: str, answer: str, question: str = "") -> bool:
    if grader == "tool_call":
        try:
            want, got = json.loads(expected), json.loads(answer)
        except ValueError:
            return False
        first = got[0] if isinstance(got, list) and got else got
        return isinstance(first, dict) and first.get("name") == want["name"] and first.get("arguments") == want.get(
            "arguments", {})
    if grader == "regex":
        return re.search(expected, answer) is not None
    if grader == "similar":
        want = Counter(_WORDS.findall(expected.casefold()))
        asked = set(_WORDS.findall(question.casefold()))
        want = Counter({word: n for word, n in want.items() if word not in asked}) or want
        got = Counter(_WORDS.findall(answer.casefold()))
        held = sum(min(n, got[word]) for word, n in want.items())
        return bool(want) and held / sum(want.values()) >= SIMILAR_SHARE
    if grader == "exact":
        def norm(text: str) -> str:
            return " ".join(text.split()).rstrip(".").strip().casefold()

        return norm(answer) == norm(expected)
    words = r"\s+".join(re.escape(w) for w in expected.split())
    left = r"(?<!\w)" if expected[:1].isalnum() or expected[:1] == "_" else ""
    right = r"(?!\w)" if expected[-1:].isalnum() or expected[-1:] == "_" else ""
    return re.search(left + words + right, answer, re.IGNORECASE) is not None


def make_item(
    *, question: Any = None, messages: Any = None, expected: Any, grader: Any = None, system: Any = None,
    source: str = "", line: int = 0, tools: Any = None,
) -> EvalItem:
    """One eval item from the fields of a row; :class:`EvalFileError` names the row and what to change."""

    def fail(reason: str) -> EvalFileError:
        return EvalFileError(reason, source=source, line=line or None)

    grader = ("tool_call" if tools else "contains") if grader in (None, "") else grader
    if grader not in GRADERS:
        raise fail(f"grader {grader!r} is unknown; use one of {', '.join(GRADERS)}")
    alternatives = expected if isinstance(expected, list) else [expected]
    if grader == "tool_call":
        offered = _offered(tools, fail)
        for call in alternatives:
            if not isinstance(call, dict) or call.get("name") not in offered or not isinstance(
                    call.get("arguments", {}), dict):
                raise fail("expected must be the call to make, {\"name\": …, \"arguments\": {…}}, naming one of the "
                           f"tools ({', '.join(sorted(offered))})")
        alternatives = [json.dumps({"name": c["name"], "arguments": c.get("arguments", {})}) for c in alternatives]
    elif not alternatives or not all(isinstance(e, str | int | float) and str(e).strip() for e in alternatives):
        raise fail("expected must be a non-empty string (or a list of them)")
    else:
        alternatives = [str(e).strip() for e in alternatives]
    if grader == "regex":
        for pattern in alternatives:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fail(f"expected {pattern!r} is not a valid regular expression: {exc}") from None
    if messages is not None:
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise fail("messages must be a list of {\"role\": …, \"content\": …} objects")
        chat = [{"role": m["role"], "content": _text(m.get("content"))} for m in messages]
        while chat and chat[-1]["role"] == "assistant":  # the reference answer: not sent
            chat.pop()
        if not chat or chat[-1]["role"] != "user":
            raise fail("messages must end with a user message (the question)")
    elif isinstance(question, str) and question.strip():
        chat = [{"role": "user", "content": question.strip()}]
    else:
        raise fail("needs a question (a non-empty string) or messages")
    if isinstance(system, str) and system.strip() and chat[0]["role"] != "system":
        chat.insert(0, {"role": "system", "content": system.strip()})
    return EvalItem(tuple(chat), tuple(alternatives), grader, source, line, tuple(tools or ()))


def _offered(tools: Any, fail: Callable[[str], EvalFileError]) -> set[str]:
    """The names of the functions ``tools`` offer; the row fails when they are not chat completions' tools."""
    try:
        spec = tools_spec(tools if tools else None)
    except StructuredOutputError as exc:
        raise fail(f"tools: {exc}") from None
    if spec is None:
        raise fail("the tool_call grader needs tools, the functions the question offers")
    return {tool.name for tool in spec.tools}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def from_log(store: DialogueStore, thread_ids: Sequence[str] | None = None, *, limit: int = 100,
             context_turns: int = 4) -> list[EvalItem]:
    """An eval from what people said of logged replies: each corrected reply asks its question again expecting the
    correction, each reply rated up expects itself (grader ``similar``), with the thread's system instruction and up
    to ``context_turns`` turns before the question; replies left out of training, calls and tool results are not
    used. At most ``limit`` items, from ``thread_ids`` (default: every thread)."""
    items: list[EvalItem] = []
    for thread, messages in store.export(list(thread_ids) if thread_ids is not None else None):
        system = thread.system_instruction
        turns: list[dict[str, str]] = []
        for message in messages:
            if message.role == "system":
                system = message.content
                continue
            if message.role not in ("user", "assistant") or message.tool_calls or message.tool_call_id:
                turns = []  # a call and its results are not plain text to ask again: start after them
                continue
            wanted = message.correction.content if message.correction else (
                message.content if message.feedback == 1 else None)
            if (message.role == "assistant" and wanted and wanted.strip() and not message.excluded and turns
                    and turns[-1]["role"] == "user"):
                context = turns[-(context_turns + 1):]
                while context[0]["role"] != "user":
                    context = context[1:]
                chat = ([{"role": "system", "content": system}] if system else []) + context
                items.append(EvalItem(tuple(chat), (wanted.strip(),), "similar", "the log", message.id))
                if len(items) >= limit:
                    return items
            turns.append({"role": message.role, "content": message.content})
    return items


def from_log_filter(db: Store, where: LogFilter, *, threads: int = 2000, limit: int = 100) -> list[EvalItem]:
    """An eval built (as :func:`from_log` builds it) from the newest ``threads`` threads the log's filter keeps: what
    the log page's "Build an eval from these threads" asks for."""
    return from_log(db.dialogue, db.browse.thread_ids(where, limit=threads), limit=limit)


def read_eval_file(path: str | Path) -> list[EvalItem]:
    """Every question of a JSONL or CSV eval file (format by content: JSON objects or a CSV header)."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EvalFileError("does not exist; give a JSONL or CSV file of questions with expected answers",
                            source=source) from None
    except IsADirectoryError:
        raise EvalFileError("is a directory; give a JSONL or CSV file", source=source) from None
    except OSError as exc:
        raise EvalFileError(f"cannot be read: {exc.strerror or exc}", source=source) from None
    return read_eval_bytes(data, source)


def read_eval_bytes(data: bytes, source: str) -> list[EvalItem]:
    """The questions of an eval file's bytes (an upload named ``source``): JSONL or CSV, told by the content."""
    text = decode(data, source)
    if not text.strip():
        raise EvalFileError("is empty; put one question with its expected answer per line", source=source)
    items = read_eval_jsonl(text, source) if text.lstrip().startswith("{") else read_eval_csv(text, source)
    if not items:
        raise EvalFileError("has no questions", source=source)
    return items


def read_eval_jsonl(text: str, source: str, *, require_expected: bool = True) -> list[EvalItem]:
    """Eval items of JSONL text; with ``require_expected`` false, lines without ``expected`` are passed over
    (a validation file holds training examples too)."""
    items = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise EvalFileError("is not valid JSON; write one JSON object per line", source=source,
                                line=number) from None
        if not isinstance(obj, dict):
            raise EvalFileError("is not a JSON object", source=source, line=number)
        if "expected" not in obj:
            if not require_expected:
                continue
            raise EvalFileError("has no \"expected\" answer; add \"expected\": \"…\" (what a right answer contains)",
                                source=source, line=number)
        items.append(make_item(question=obj.get("question"), messages=obj.get("messages"), expected=obj["expected"],
                               grader=obj.get("grader"), system=obj.get("system"), source=source, line=number,
                               tools=obj.get("tools")))
    return items


def read_validation(path: Path, name: str) -> tuple[list[dict[str, Any]], list[EvalItem]]:
    """A validation file's chat examples (for the validation loss) and questions with expected answers (scored)."""
    text = decode(path.read_bytes(), name)
    items = read_eval_jsonl(text, name, require_expected=False)  # refuses lines that are not JSON objects
    examples = []
    for line in text.splitlines():
        if line.strip():
            messages = json.loads(line).get("messages")
            if isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == "assistant"
                                                  for m in messages):
                examples.append({"messages": messages})
    return examples, items


def read_eval_csv(text: str, source: str) -> list[EvalItem]:
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=pick_delimiter(text)) if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]]

    def column(names: Iterable[str]) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    question, expected = column(PROMPT_COLUMNS), column(EXPECTED_COLUMNS)
    grader, system = column(("grader",)), column(SYSTEM_COLUMNS)
    if question is None:
        raise EvalFileError(f"has no question column (found: {', '.join(header)}); name one {PROMPT_COLUMNS[1]!r}",
                            source=source, line=1)
    if expected is None:
        raise EvalFileError(f"has no expected column (found: {', '.join(header)}); add one named 'expected' with "
                            "what a right answer contains", source=source, line=1)
    items = []
    for number, row in enumerate(rows[1:], start=2):
        def cell(index: int | None, row: list[str] = row) -> str:
            return row[index].strip() if index is not None and index < len(row) else ""

        items.append(make_item(question=cell(question), expected=cell(expected), grader=cell(grader) or None,
                               system=cell(system), source=source, line=number))
    return items


@dataclass
class EvalReport:
    """Each model's answers to each item, whether they passed, and how long each model took."""

    items: list[EvalItem]
    models: list[str]
    answers: dict[str, list[str]] = field(default_factory=dict)
    passed: dict[str, list[bool]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def score(self, model: str) -> int:
        return sum(self.passed[model])

    def fraction(self, model: str) -> float:
        return self.score(model) / len(self.items) if self.items else 0.0

    def lost(self, before: str, after: str) -> list[int]:
        """Indexes of the items ``before`` passed and ``after`` failed (the table's ✓ then ✗)."""
        return [i for i, (was, now) in enumerate(self._pairs(before, after)) if was and not now]

    def gained(self, before: str, after: str) -> list[int]:
        """Indexes of the items ``before`` failed and ``after`` passed (the table's ✗ then ✓)."""
        return [i for i, (was, now) in enumerate(self._pairs(before, after)) if now and not was]

    def _pairs(self, before: str, after: str) -> list[tuple[bool, bool]]:
        for model in (before, after):
            if model not in self.passed:
                raise InputError(f"model {model!r} was not asked in this eval (asked: {', '.join(self.models)})",
                                 param="model")
        return list(zip(self.passed[before], self.passed[after], strict=True))

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": len(self.items),
            "models": [{"model": m, "passed": self.score(m), "score": round(self.fraction(m), 4),
                        "seconds": round(self.seconds.get(m, 0.0), 2)} for m in self.models],
            "items": [{"question": item.question, "expected": [json.loads(e) if item.grader == "tool_call" else e
                                                                for e in item.expected], "grader": item.grader,
                       "answers": {m: {"answer": self.answers[m][i], "passed": self.passed[m][i]}
                                   for m in self.models}}
                      for i, item in enumerate(self.items)],
        }


def answer_calls(rt: Runtime, model: str, items: Sequence[EvalItem], *, max_tokens: int,
                 on_answer: Callable[[int], None] | None = None) -> list[str]:
    """Greedy answers of ``model`` to questions that offer tools (``tool_choice`` auto: calling is the model's
    choice): each the JSON of its calls (``[{"name", "arguments"}]``), or its text when it made none. Asked
    together, so a local model decodes them in one batch."""
    provider, model_id = rt.resolve(model)

    def answer(item: EvalItem) -> str:
        options = GenerationOptions(max_tokens=max_tokens, output=tools_spec(list(item.tools)))
        result = provider.stream(list(item.messages), options, model=model_id).read()
        if on_answer is not None:
            on_answer(1)
        if result.tool_calls:
            calls = [c["function"] for c in result.tool_calls]
            return json.dumps([{"name": f["name"], "arguments": loaded_arguments(f["arguments"])} for f in calls],
                              ensure_ascii=False)
        return result.text.strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(answer, items))


def answer_all(rt: Runtime, model: str, conversations: Sequence[Sequence[dict[str, str]]], *, max_tokens: int,
               on_answer: Callable[[int], None] | None = None) -> list[str]:
    """Greedy answers of ``model`` to each conversation: batched on a local model, one by one elsewhere."""
    provider, model_id = rt.resolve(model)
    if provider.name == "local":
        engine = rt.local.engine(model_id)  # type: ignore[attr-defined]
        return engine.complete_batch(conversations, max_tokens=max_tokens, on_answer=on_answer)
    answers = []
    for conversation in conversations:
        answers.append(provider.complete(list(conversation), GenerationOptions(max_tokens=max_tokens),
                                         model=model_id).text.strip())
        if on_answer is not None:
            on_answer(1)
    return answers


def check_models(rt: Runtime, models: Sequence[str]) -> None:
    """Refuse unknown models before any is asked (``UnknownModelError`` lists what is on offer)."""
    if not models:
        raise InputError("give at least one model to evaluate", param="models").with_hint("-m MODEL names one")
    for model in models:
        rt.resolve(model)


def answers_of(rt: Runtime, model: str, items: Sequence[EvalItem], max_tokens: int,
               on_answer: Callable[[int], None] | None = None) -> list[str]:
    """``model``'s answers to every item: plain questions in one batch, questions with tools together."""
    plain = [i for i, item in enumerate(items) if not item.tools]
    calling = [i for i, item in enumerate(items) if item.tools]
    answers = [""] * len(items)
    if plain:
        for i, answer in zip(plain, answer_all(rt, model, [items[i].messages for i in plain], max_tokens=max_tokens,
                                               on_answer=on_answer), strict=True):
            answers[i] = answer
    if calling:
        for i, answer in zip(calling, answer_calls(rt, model, [items[i] for i in calling], max_tokens=max_tokens,
                                                   on_answer=on_answer), strict=True):
            answers[i] = answer
    return answers


def run_eval(rt: Runtime, items: Sequence[EvalItem], models: Sequence[str], *,
             max_tokens: int = DEFAULT_MAX_TOKENS, on_answer: Callable[[int], None] | None = None) -> EvalReport:
    """Ask every model every question and grade the answers."""
    check_models(rt, models)
    report = EvalReport(list(items), list(dict.fromkeys(models)))
    for model in report.models:
        started = time.monotonic()
        answers = answers_of(rt, model, items, max_tokens, on_answer)
        report.seconds[model] = time.monotonic() - started
        report.answers[model] = answers
        report.passed[model] = [item.grade(answer) for item, answer in zip(items, answers, strict=True)]
    return report
