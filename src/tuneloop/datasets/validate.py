"""Check a fine-tuning JSONL file the way OpenAI does, before anything is uploaded or trained.

Error names (each counted once per example that has it):

==================================  ===============================================================
``invalid_json``                    the line is not JSON
``data_type``                       the line (or a message) is not a JSON object
``missing_messages_list``           a supervised example has no ``messages`` list
``message_missing_key``             a message lacks ``role`` or ``content``
``message_unrecognized_key``        a message has a key OpenAI does not accept
``unrecognized_role``               a role other than system, user, assistant, tool, function
``missing_content``                 empty content, or content that is not text
``invalid_weight``                  ``weight`` other than 0 or 1, or on a non-assistant message
``example_missing_assistant_message``  no assistant message to learn from
``dpo_missing_input``               a DPO example has no ``input`` object with a ``messages`` list
``dpo_input_not_ending_with_user``  a DPO input's last message is not the user's
``dpo_missing_output``              ``preferred_output`` / ``non_preferred_output`` missing or not a list
``dpo_output_not_assistant``        an output is not exactly one assistant message
``invalid_tools``                   ``tools`` is not a list of function tools with a name and a parameters schema
``invalid_tool_call``               a tool call lacks its id, or a function with a name and arguments that are the
                                    JSON text of an object
``unknown_function``                a tool call names a function the example's ``tools`` do not offer
``tool_message_without_call``       a ``tool`` message answers no call an earlier assistant message made
``example_too_long``                more tokens than the model's training context
``too_few_examples``                fewer than 10 examples in the file
==================================  ===============================================================

Warnings: ``missing_system_message``, ``missing_user_message``, ``dpo_identical_outputs``,
``duplicate_example``, ``tool_calls_without_tools`` (calls made, but no ``tools`` say what the functions are).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tuneloop.datasets.readers import decode, iter_jsonl, read_bytes
from tuneloop.datasets.tokens import TokenCounter, default_epochs, message_text, price_table
from tuneloop.errors import DataError

MIN_EXAMPLES = 10
MAX_LISTED_ERRORS = 20
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"})
ERROR_NAMES = (
    "invalid_json",
    "data_type",
    "missing_messages_list",
    "message_missing_key",
    "message_unrecognized_key",
    "unrecognized_role",
    "missing_content",
    "invalid_weight",
    "example_missing_assistant_message",
    "dpo_missing_input",
    "dpo_input_not_ending_with_user",
    "dpo_missing_output",
    "dpo_output_not_assistant",
    "invalid_tools",
    "invalid_tool_call",
    "unknown_function",
    "tool_message_without_call",
    "example_too_long",
    "too_few_examples",
)
Format = Literal["supervised", "dpo"]


@dataclass(frozen=True)
class Issue:
    line: int
    error: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error, "detail": self.detail}


@dataclass
class ValidationReport:
    source: str
    model: str
    format: Format
    examples: int
    errors: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    first_errors: list[Issue] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)
    tokenizer: str = ""
    tokens_exact: bool = True
    tokenizer_note: str = ""
    context: int | None = None
    local: bool = False  # trained here: costs nothing
    epochs: int = 0
    billed_tokens: int = 0
    estimated_cost_usd: float | None = None
    price_as_of: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def tokens(self) -> dict[str, Any]:
        counts = self.token_counts
        if not counts:
            return {"total": 0, "max": 0, "mean": 0.0, "min": 0, "p50": 0, "p90": 0}
        ordered = sorted(counts)
        return {
            "total": sum(counts),
            "max": ordered[-1],
            "mean": round(statistics.fmean(counts), 2),
            "min": ordered[0],
            "p50": ordered[len(ordered) // 2],
            "p90": ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)],
        }

    def summary(self, name: str | None = None) -> str:
        """One line: what is wrong, for error messages (``name`` replaces the file's path)."""
        source = name or self.source
        if self.ok:
            return f"{source}: {self.examples} {self.format} examples, no errors"
        listed = ", ".join(f"{name} ×{count}" for name, count in self.errors.most_common())
        first = self.first_errors[0] if self.first_errors else None
        at = f"line {first.line}" if first and first.line else "the whole file"  # line 0: a file-wide problem
        where = f"; first: {at}, {first.error}: {first.detail}" if first else ""
        return f"{source} has errors: {listed}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "examples": self.examples,
            "format": self.format,
            "errors": dict(self.errors),
            "warnings": dict(self.warnings),
            "tokens": self.tokens,
            "estimated_cost_usd": self.estimated_cost_usd,
            "first_errors": [i.to_dict() for i in self.first_errors],
            "source": self.source,
            "model": self.model,
            "tokenizer": self.tokenizer,
            "tokens_exact": self.tokens_exact,
            "tokenizer_note": self.tokenizer_note or None,
            "context": self.context,
            "epochs": self.epochs,
            "billed_tokens": self.billed_tokens,
            "price_as_of": self.price_as_of,
        }


def detect_format(values: Iterable[Any]) -> Format:
    for value in values:
        if isinstance(value, dict):
            return "dpo" if ("input" in value or "preferred_output" in value or "non_preferred_output" in value) \
                else "supervised"
    return "supervised"


class _Example:
    """Problems found in one example, recorded once per name."""

    __slots__ = ("errors", "line", "warnings")

    def __init__(self, line: int) -> None:
        self.line = line
        self.errors: dict[str, str] = {}
        self.warnings: set[str] = set()

    def error(self, name: str, detail: str) -> None:
        self.errors.setdefault(name, detail)


def _check_message(ex: _Example, message: Any, where: str) -> str | None:
    """Checks one message; returns its role when it is usable."""
    if not isinstance(message, dict):
        ex.error("data_type", f"{where} is a {type(message).__name__}, not an object")
        return None
    role = message.get("role")
    has_calls = bool(message.get("tool_calls") or message.get("function_call"))
    if "role" not in message or ("content" not in message and not has_calls):
        missing = "role" if "role" not in message else "content"
        ex.error("message_missing_key", f"{where} has no {missing!r}")
    extra = message.keys() - MESSAGE_KEYS
    if extra:
        ex.error("message_unrecognized_key", f"{where} has {', '.join(sorted(map(repr, extra))[:3])}")
    if "role" in message and (not isinstance(role, str) or role not in ROLES):
        ex.error("unrecognized_role", f"{where} has role {str(role)[:30]!r}")
    content = message.get("content")
    if "content" in message or not has_calls:
        usable = isinstance(content, str) and content.strip() != ""
        if isinstance(content, list):
            usable = bool(content) and all(
                isinstance(p, dict) and (isinstance(p.get("text"), str) or p.get("type") == "image_url")
                for p in content
            )
        if not usable and not (content is None and has_calls) and "content" in message:
            ex.error("missing_content", f"{where} has empty or non-text content")
    if "weight" in message and (message["weight"] not in (0, 1) or isinstance(message["weight"], bool)
                                or role != "assistant"):
        ex.error("invalid_weight", f"{where}: weight must be 0 or 1, on assistant messages only")
    return role if isinstance(role, str) else None


def _check_supervised(ex: _Example, obj: dict[str, Any]) -> list[list[Any]]:
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        ex.error("missing_messages_list", "no 'messages' list" if messages is None else "'messages' is not a list")
        return []
    roles = [_check_message(ex, m, f"message {i + 1}") for i, m in enumerate(messages)]
    if "assistant" not in roles:
        ex.error("example_missing_assistant_message", "no assistant message")
    if "system" not in roles:
        ex.warnings.add("missing_system_message")
    if "user" not in roles:
        ex.warnings.add("missing_user_message")
    return [messages]


def _check_dpo(ex: _Example, obj: dict[str, Any]) -> list[list[Any]]:
    conversations: list[list[Any]] = []
    source = obj.get("input")
    messages = source.get("messages") if isinstance(source, dict) else None
    if not isinstance(messages, list) or not messages:
        ex.error("dpo_missing_input", "no 'input' object with a 'messages' list")
        messages = None
    else:
        roles = [_check_message(ex, m, f"input message {i + 1}") for i, m in enumerate(messages)]
        if roles[-1] not in ("user", "tool"):
            ex.error("dpo_input_not_ending_with_user", f"the last input message is {roles[-1] or 'not usable'}")
        if "system" not in roles:
            ex.warnings.add("missing_system_message")
    outputs = []
    for key in ("preferred_output", "non_preferred_output"):
        output = obj.get(key)
        if not isinstance(output, list) or not output:
            ex.error("dpo_missing_output", f"{key!r} is missing or not a list of one assistant message")
            continue
        if len(output) != 1:
            ex.error("dpo_output_not_assistant", f"{key!r} has {len(output)} messages; give exactly one")
            continue
        role = _check_message(ex, output[0], key)
        if role != "assistant" and role is not None:
            ex.error("dpo_output_not_assistant", f"{key!r} is a {role} message")
        outputs.append(output)
    if len(outputs) == 2 and outputs[0] == outputs[1]:
        ex.warnings.add("dpo_identical_outputs")
    if messages is not None:
        conversations = [messages, *outputs]
    return conversations


def _check_tools(ex: _Example, holder: dict[str, Any], conversations: list[list[Any]]) -> None:
    """OpenAI's checks for function calling: ``tools`` (on the example, or a DPO pair's input) well formed, each
    call well formed and naming an offered function, each ``tool`` message answering an earlier call."""
    tools = holder.get("tools")
    names: set[str] | None = None
    if tools is not None:
        names = set()
        if not isinstance(tools, list):
            ex.error("invalid_tools", "'tools' is not a list")
            return
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or tool.get("type") != "function" or not isinstance(
                    function.get("name"), str) or not isinstance(function.get("parameters", {}), dict):
                ex.error("invalid_tools", f"tools[{i}] is not {{'type': 'function', 'function': {{'name', "
                                          "'parameters'}}")
                return
            names.add(function["name"])
    calls: set[str] = set()
    made_calls = False
    for segment in conversations:
        for j, message in enumerate(segment):
            if not isinstance(message, dict):
                continue
            for call in message.get("tool_calls") or []:
                made_calls = True
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else None
                except ValueError:
                    parsed = None
                if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(
                        function.get("name") if function else None, str) or not isinstance(parsed, dict):
                    ex.error("invalid_tool_call", f"message {j + 1} has a tool call without an id, a function name "
                                                  "or arguments that are the JSON text of an object")
                    return
                if names is not None and function["name"] not in names:
                    ex.error("unknown_function", f"message {j + 1} calls {function['name']!r}, which 'tools' do not "
                                                 f"offer ({', '.join(sorted(names)) or 'none'})")
                    return
                calls.add(call["id"])
            answered = message.get("tool_call_id")
            if message.get("role") == "tool" and (not isinstance(answered, str) or answered not in calls):
                ex.error("tool_message_without_call", f"message {j + 1} answers {message.get('tool_call_id')!r}, no "
                                                      "call an earlier assistant message made")
                return
    if made_calls and tools is None:
        ex.warnings.add("tool_calls_without_tools")


def validate_values(
    values: Iterable[tuple[int, Any, str | None]],
    counter: TokenCounter,
    *,
    source: str = "<examples>",
    epochs: int | None = None,
) -> ValidationReport:
    """Validate parsed lines ``(line, value, json error)``; counts tokens in one batch for speed."""
    rows = list(values)
    fmt = detect_format(v for _, v, e in rows if e is None)
    report = ValidationReport(source, counter.model, fmt, len(rows))
    report.tokenizer, report.tokens_exact, report.tokenizer_note = counter.tokenizer, counter.exact, counter.note
    report.context = counter.context
    report.local = counter.local
    texts: list[str] = []
    spans: list[tuple[_Example, list[tuple[int, int, int]]]] = []  # example → [(first text, end, overhead)]
    seen: set[int] = set()
    checked: list[_Example] = []
    for line, value, error in rows:
        ex = _Example(line)
        checked.append(ex)
        if error is not None:
            ex.error("invalid_json", error)
            continue
        if not isinstance(value, dict):
            ex.error("data_type", f"the line is a JSON {type(value).__name__}, not an object")
            continue
        conversations = _check_dpo(ex, value) if fmt == "dpo" else _check_supervised(ex, value)
        if not ex.errors:
            _check_tools(ex, value.get("input") if fmt == "dpo" and isinstance(value.get("input"), dict) else value,
                         conversations)
        if ex.errors:
            continue
        fingerprint = hash(json.dumps(value))
        if fingerprint in seen:
            ex.warnings.add("duplicate_example")
        seen.add(fingerprint)
        parts = []
        for i, segment in enumerate(conversations):
            begin = len(texts)
            texts.extend(message_text(m) for m in segment)
            # The first segment is the whole conversation (supervised) or the DPO input; outputs follow.
            overhead = counter.overhead(segment) if i == 0 else sum(counter.message_overhead(m) for m in segment)
            parts.append((begin, len(texts), overhead))
        spans.append((ex, parts))
    lengths = counter.encode_lengths(texts) if texts else []
    for ex, parts in spans:
        sizes = [sum(lengths[a:b]) + overhead for a, b, overhead in parts]
        # DPO: the input and either output must fit the context; both outputs are trained on.
        longest = sizes[0] + max(sizes[1:], default=0)
        if counter.context is not None and longest > counter.context:
            ex.error("example_too_long", f"{longest} tokens; {counter.model} trains on at most {counter.context}")
            continue
        report.token_counts.append(sum(sizes))
    for ex in checked:
        report.errors.update(ex.errors.keys())
        report.warnings.update(ex.warnings)
        for name, detail in ex.errors.items():
            if len(report.first_errors) < MAX_LISTED_ERRORS:
                report.first_errors.append(Issue(ex.line, name, detail))
    if report.examples < MIN_EXAMPLES:
        report.errors["too_few_examples"] += 1
        report.first_errors.append(
            Issue(0, "too_few_examples", f"{report.examples} examples; fine-tuning needs at least {MIN_EXAMPLES}")
        )
    _estimate_cost(report, epochs)
    return report


def _estimate_cost(report: ValidationReport, epochs: int | None) -> None:
    report.epochs = epochs if epochs else default_epochs(report.examples)
    cap = report.context or 0
    report.billed_tokens = sum(min(cap, n) if cap else n for n in report.token_counts) * report.epochs
    if report.local:
        report.estimated_cost_usd = 0.0
        return
    table = price_table()
    price = table.lookup(report.model)
    if price is not None:
        report.estimated_cost_usd = round(report.billed_tokens * price.usd_per_million / 1_000_000, 4)
        report.price_as_of = table.as_of


def validate_text(text: str, counter: TokenCounter, *, source: str = "<text>", epochs: int | None = None
                  ) -> ValidationReport:
    if not text.strip():
        raise DataError("is empty; a training file needs one JSON example per line", source=source)
    return validate_values(iter_jsonl(text), counter, source=source, epochs=epochs)


def validate_examples(examples: Iterable[dict[str, Any]], counter: TokenCounter, *, source: str = "<examples>",
                      epochs: int | None = None) -> ValidationReport:
    return validate_values(((i, e, None) for i, e in enumerate(examples, start=1)), counter, source=source,
                           epochs=epochs)


def validate_file(
    path: str | Path,
    counter: TokenCounter | Callable[[], TokenCounter],
    *,
    encoding: str | None = None,
    epochs: int | None = None,
) -> ValidationReport:
    """Validate a JSONL file; unreadable, empty or binary files raise :class:`DataError` naming the file."""
    path = Path(path)
    text = decode(read_bytes(path), str(path), encoding)
    if not text.strip():
        raise DataError("is empty; a training file needs one JSON example per line", source=str(path))
    if callable(counter) and not isinstance(counter, TokenCounter):
        counter = counter()
    return validate_text(text, counter, source=str(path), epochs=epochs)
