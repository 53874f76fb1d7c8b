"""Hygiene of examples taken from a production log: duplicates collapsed, personal data and secrets masked.

* :func:`collapse_duplicates`: an example whose request and answer repeat an earlier one's is dropped: exactly
  (``duplicate``), or after folding case, spaces, punctuation and the order of nothing else (``near-duplicate``),
  or with an answer to the same request that differs only slightly (``similar answer``: a similarity ratio of at
  least ``SIMILAR``). The first (oldest) example stays. DPO pairs are collapsed the same way on their input and
  both answers.
* :func:`redact` (opt-in: ``data build --redact``): e-mail addresses, phone numbers, card numbers (Luhn-checked),
  IBANs (checksum-checked) and API-key shapes become ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IBAN]``, ``[SECRET]``
  in every message of every example before it is written.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from difflib import SequenceMatcher
from typing import Any

SIMILAR = 0.92  # difflib ratio of two folded answers to one request at which they count as the same answer

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def fold(text: str) -> str:
    """``text`` for comparison: NFKC, case-folded, every run of spaces and punctuation one space."""
    return _PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _said(message: dict[str, Any]) -> str:
    """A message's text, with its tool calls (two calls differing in one argument are different answers)."""
    text = str(message.get("content") or "")
    if message.get("tool_calls"):
        text += " " + json.dumps([c.get("function") for c in message["tool_calls"]], sort_keys=True)
    return text


def _parts(example: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(request messages, answers) of a supervised example or a DPO pair."""
    if "messages" in example:
        messages = example["messages"]
        return messages[:-1], [_said(messages[-1])]
    answers = [_said(example[k][0]) for k in ("preferred_output", "non_preferred_output")]
    return example["input"]["messages"], answers


def _request_key(messages: list[dict[str, Any]]) -> str:
    return "\x1e".join(f"{m.get('role')}\x1f{fold(_said(m))}" for m in messages)


def collapse_duplicates(examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """``examples`` without repeats (the first of each kept), and how many were dropped for each reason."""
    kept: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    exact: set[str] = set()
    near: set[tuple[str, ...]] = set()
    by_request: dict[str, list[list[str]]] = {}
    for example in examples:
        raw = json.dumps(example, sort_keys=True, ensure_ascii=False)
        if raw in exact:
            dropped["duplicate"] += 1
            continue
        request, answers = _parts(example)
        key = _request_key(request)
        folded = [fold(a) for a in answers]
        if (key, *folded) in near:
            dropped["near-duplicate"] += 1
            continue
        earlier = by_request.setdefault(key, [])
        if any(len(seen) == len(folded) and all(_similar(a, b) for a, b in zip(seen, folded, strict=True))
               for seen in earlier):
            dropped["similar answer"] += 1
            continue
        exact.add(raw)
        near.add((key, *folded))
        earlier.append(folded)
        kept.append(example)
    return kept, dropped


def _similar(a: str, b: str) -> bool:
    if a == b:
        return True
    longest = max(len(a), len(b))
    if not longest or min(len(a), len(b)) / longest < SIMILAR:  # the ratio cannot reach SIMILAR
        return False
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= SIMILAR


# --- redaction ------------------------------------------------------------------------------------------------

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
SECRET = re.compile(
    r"\b(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|"
    r"github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|"
    r"(?:r|s)k_(?:live|test)_[A-Za-z0-9]{16,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# International (+CC …), a bracketed area code ((555) 123-4567), or the NNN-NNN-NNNN shape; dates and versions are
# not phones. National numbers without any of these shapes are left alone (their format depends on the country).
PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,4}){2,4}(?!\w)"
                   r"|(?<![\w(])\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)"
                   r"|(?<![\w.-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w.-])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def redact_text(text: str, counts: Counter[str] | None = None) -> str:
    """``text`` with e-mail addresses, secrets, IBANs, card numbers and phone numbers masked (in that order)."""
    counts = counts if counts is not None else Counter()

    def mask(label: str, check: Any = None) -> Any:
        def replace(match: re.Match[str]) -> str:
            if check is not None and not check(match.group(0)):
                return match.group(0)
            counts[label] += 1
            return f"[{label}]"
        return replace

    text = EMAIL.sub(mask("EMAIL"), text)
    text = SECRET.sub(mask("SECRET"), text)
    text = IBAN.sub(mask("IBAN", _iban_ok), text)
    text = CARD.sub(mask("CARD", lambda s: _luhn(re.sub(r"\D", "", s))), text)
    return PHONE.sub(mask("PHONE", lambda s: 7 <= len(re.sub(r"\D", "", s)) <= 15), text)


def redact(examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Every message of every example with personal data and secrets masked; how many of each were masked."""
    counts: Counter[str] = Counter()

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, counts)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) if k in ("content", "messages", "input", "preferred_output", "non_preferred_output",
                                         "text") else v for k, v in value.items()}
        return value

    return [clean(e) for e in examples], counts
