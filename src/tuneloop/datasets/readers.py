"""Read training rows from CSV (a file, a directory of files, or text) and from JSONL.

Every reader either returns a :class:`RowSet` or raises :class:`~tuneloop.errors.DataError` naming the
file (and line) and what to change; no other exception escapes, whatever the bytes (fuzzed in tests).

CSV columns are matched case-insensitively:

* prompt: ``prompt``, ``question``, ``input``, ``user``
* completion: ``completion``, ``answer``, ``output``, ``response``, ``assistant``
* optional ``system`` (a system instruction for that row)
* optional ``positive`` (``1``/``0``, ``true``/``false``, ``yes``/``no``, ``y``/``n``; empty = the default)

The delimiter is the one of ``,`` ``;`` tab ``|`` that the header row uses most; a UTF-8 byte-order mark is
ignored; quoted fields may span lines. Text that is not UTF-8 is refused with the line of the first bad
byte unless an ``encoding`` is given.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.errors import DataError

PROMPT_COLUMNS = ("prompt", "question", "input", "user")
COMPLETION_COLUMNS = ("completion", "answer", "output", "response", "assistant")
SYSTEM_COLUMNS = ("system", "system_instruction", "instructions")
POSITIVE_COLUMNS = ("positive",)
DELIMITERS = (",", ";", "\t", "|")

TRUE_WORDS = {"1", "true", "t", "yes", "y", "+", "+1", "positive", "good"}
FALSE_WORDS = {"0", "false", "f", "no", "n", "-", "-1", "negative", "bad"}

ENCODING_HINT = "save it as UTF-8, or say which encoding it is in (cp1252, latin-1, utf-16 …)"


@dataclass(frozen=True)
class Row:
    """One prompt and one answer; ``positive`` None means "use the reader's default"."""

    prompt: str
    completion: str
    system: str | None = None
    positive: bool | None = None
    source: str = ""
    line: int = 0


@dataclass(frozen=True)
class Skipped:
    source: str
    line: int
    reason: str


@dataclass
class RowSet:
    """What the readers found: rows to shape, examples already in OpenAI's shape, and rows left out."""

    rows: list[Row] = field(default_factory=list)
    supervised: list[dict[str, Any]] = field(default_factory=list)
    preference: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def extend(self, other: RowSet) -> RowSet:
        self.rows += other.rows
        self.supervised += other.supervised
        self.preference += other.preference
        self.skipped += other.skipped
        self.sources += other.sources
        return self

    def __len__(self) -> int:
        return len(self.rows) + len(self.supervised) + len(self.preference)


def parse_positive(value: str, *, source: str, line: int) -> bool | None:
    word = value.strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise DataError(
        f"positive is {value.strip()[:40]!r}; use 1/0, true/false or yes/no (or leave it empty)",
        source=source,
        line=line,
    )


def decode(data: bytes, source: str, encoding: str | None = None) -> str:
    """Bytes → text: UTF-8 (BOM allowed) unless ``encoding`` says otherwise; refuses binary files."""
    if b"\x00" in data[:8192] and not (encoding or "").lower().startswith("utf-16"):
        raise DataError("looks like a binary file, not text; give a CSV or JSONL file", source=source)
    codec = encoding or "utf-8-sig"
    try:
        text = data.decode(codec)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}; use a codec name such as cp1252", source=source) from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        name = "UTF-8" if encoding is None else encoding
        raise DataError(f"is not {name}: byte 0x{bad} on line {line}; {ENCODING_HINT}", source=source).with_hint(
            "--encoding names it") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise DataError("contains NUL characters; give a CSV or JSONL text file", source=source)
    return text


def pick_delimiter(text: str) -> str:
    """The CSV delimiter of ``text``: the one of DELIMITERS its header line holds most of."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _find(columns: list[str], names: Iterable[str]) -> int | None:
    for name in names:
        if name in columns:
            return columns.index(name)
    return None


def read_csv_text(text: str, *, source: str = "<text>") -> RowSet:
    """Rows from CSV text (the first non-empty row is the header)."""
    if "\x00" in text:
        raise DataError("contains NUL characters; give a CSV text file", source=source)
    if not text.strip():
        raise DataError(
            "is empty; a CSV needs a header row such as prompt,completion and one row per example", source=source
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=pick_delimiter(text), strict=False)
    out = RowSet(sources=[source])
    header: list[str] | None = None
    columns: dict[str, int | None] = {}
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip().strip("\ufeff").lower() for cell in record]
                columns = {
                    "prompt": _find(header, PROMPT_COLUMNS),
                    "completion": _find(header, COMPLETION_COLUMNS),
                    "system": _find(header, SYSTEM_COLUMNS),
                    "positive": _find(header, POSITIVE_COLUMNS),
                }
                if columns["prompt"] is None or columns["completion"] is None:
                    found = ", ".join(repr(h[:30]) for h in header[:8] if h) or "none"
                    raise DataError(
                        f"has no usable columns (found {found}); the header needs a prompt column "
                        f"({'/'.join(PROMPT_COLUMNS)}) and a completion column ({'/'.join(COMPLETION_COLUMNS)})",
                        source=source,
                    )
                continue

            def cell(key: str, record: list[str] = record, columns: dict[str, int | None] = columns) -> str:
                index = columns[key]
                return record[index] if index is not None and index < len(record) else ""

            prompt, completion = cell("prompt").strip(), cell("completion").strip()
            if not prompt or not completion:
                missing = "prompt" if not prompt else "completion"
                out.skipped.append(Skipped(source, line, f"empty {missing}"))
                continue
            out.rows.append(
                Row(
                    prompt=prompt,
                    completion=completion,
                    system=cell("system").strip() or None,
                    positive=parse_positive(cell("positive"), source=source, line=line),
                    source=source,
                    line=line,
                )
            )
    except csv.Error as exc:
        raise DataError(f"is not valid CSV: {exc}", source=source, line=reader.line_num) from None
    if header is None:
        raise DataError("is empty; a CSV needs a header row and one row per example", source=source)
    return out


def read_csv_bytes(data: bytes, *, source: str, encoding: str | None = None) -> RowSet:
    return read_csv_text(decode(data, source, encoding), source=source)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; DataError naming the file when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError("does not exist", source=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a directory; give a file", source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=str(path)) from None


def read_csv(path: str | Path, *, encoding: str | None = None) -> RowSet:
    path = Path(path)
    return read_csv_bytes(read_bytes(path), source=str(path), encoding=encoding)


def read_csv_dir(directory: str | Path, *, encoding: str | None = None) -> RowSet:
    """Every ``*.csv`` file directly in ``directory``, in name order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("is not a directory", source=str(directory))
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise DataError("contains no .csv files; put CSV files with prompt and completion columns there",
                        source=str(directory))
    out = RowSet()
    for file in files:
        out.extend(read_csv(file, encoding=encoding))
    return out


def _legacy_row(obj: dict[str, Any], *, source: str, line: int) -> Row | None:
    keys = {str(k).lower(): v for k, v in obj.items()}
    prompt = next((keys[k] for k in PROMPT_COLUMNS if k in keys), None)
    completion = next((keys[k] for k in COMPLETION_COLUMNS if k in keys), None)
    if prompt is None and completion is None:
        return None
    if not isinstance(prompt, str) or not isinstance(completion, str) or not prompt.strip() or not completion.strip():
        raise DataError("needs a non-empty string prompt and completion", source=source, line=line)
    system = next((keys[k] for k in SYSTEM_COLUMNS if k in keys), None)
    positive = keys.get("positive")
    if isinstance(positive, bool) or positive is None:
        flag = positive
    else:
        flag = parse_positive(str(positive), source=source, line=line)
    system = system.strip() if isinstance(system, str) and system.strip() else None
    return Row(prompt.strip(), completion.strip(), system, flag, source, line)


def iter_jsonl(text: str) -> Iterable[tuple[int, Any, str | None]]:
    """(line number, parsed value or None, error text or None) for every non-blank line."""
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw), None
        except (ValueError, RecursionError) as exc:
            yield number, None, str(exc).split(":")[0] if isinstance(exc, ValueError) else "nested too deeply"


def read_jsonl_text(text: str, *, source: str = "<text>") -> RowSet:
    """Examples from JSONL: chat (``messages``), DPO (``input``/``preferred_output``/…) or prompt/completion."""
    out = RowSet(sources=[source])
    if not text.strip():
        raise DataError("is empty; JSONL needs one JSON object per line", source=source)
    for line, obj, error in iter_jsonl(text):
        if error is not None:
            raise DataError(f"is not valid JSON ({error})", source=source, line=line)
        if not isinstance(obj, dict):
            raise DataError(f"is a JSON {type(obj).__name__}, not an object", source=source, line=line)
        if "messages" in obj:
            out.supervised.append(obj)
        elif "preferred_output" in obj or "non_preferred_output" in obj:
            out.preference.append(obj)
        else:
            row = _legacy_row(obj, source=source, line=line)
            if row is None:
                raise DataError(
                    "has none of the keys messages, input/preferred_output/non_preferred_output or "
                    "prompt/completion",
                    source=source,
                    line=line,
                )
            out.rows.append(row)
    return out


def read_jsonl(path: str | Path, *, encoding: str | None = None) -> RowSet:
    path = Path(path)
    return read_jsonl_text(decode(read_bytes(path), str(path), encoding), source=str(path))


def read_source(source: str | Path, *, encoding: str | None = None) -> RowSet:
    """A directory of CSVs, a ``.jsonl``/``.json`` file, or a CSV file (by extension, else by content)."""
    path = Path(source)
    if path.is_dir():
        return read_csv_dir(path, encoding=encoding)
    if not path.exists():
        raise DataError("does not exist; give a CSV file, a directory of CSV files or a JSONL file", source=str(path))
    data = read_bytes(path)
    text = decode(data, str(path), encoding)
    if path.suffix.lower() in (".jsonl", ".json") or (path.suffix.lower() != ".csv" and text.lstrip().startswith("{")):
        return read_jsonl_text(text, source=str(path))
    return read_csv_text(text, source=str(path))
