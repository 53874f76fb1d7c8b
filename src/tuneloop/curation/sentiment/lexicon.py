"""tuneloop's own multilingual sentiment: a compact lexicon per language and a small rule engine.

Each ``data/<lang>.txt`` lists, under ``[positive]`` and ``[negative]``, words, stems (``отличн*`` matches every
ending: Slavic, Turkish and Romance inflection), multi-word phrases (``не работает``) and an optional weight
(``шикарно 2``); under ``[negators]``, ``[intensifiers]`` and ``[contrast]`` the words that flip, strengthen or
split a clause. ``data/emoji.txt`` holds the emoji and emoticons every language shares. The rules, after VADER's:
- a negator flips the next sentiment word within three words of the same clause ("не очень помогло");
- a message that opens with a bare "no" ("Нет, ...", "non") leans negative;
- after "but" ("но", "aber", "mais", ...) the clause weighs more and the one before it less;
- an intensifier ("очень", "sehr") strengthens the next word;
- zh, ja and ko match by substring (no spaces between words, or agglutinated endings), with their negations
  ("不", "ない", "안") handled around the match; he and ar strip their one-letter prefixes (ו, ה, ש, ב, ל, ال, ...).
The sum is squashed into [-1, 1] as VADER's compound is, with VADER's thresholds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

LANGUAGES = frozenset({"en", "ru", "uk", "de", "fr", "es", "pt", "it", "nl", "pl", "tr", "he", "ar", "zh", "ja", "ko"})
SUBSTRING_LANGUAGES = frozenset({"zh", "ja", "ko"})
PREFIXES = {
    "he": ("וש", "וה", "וב", "ול", "שה", "כש", "מה", "ו", "ה", "ש", "ב", "ל", "מ", "כ"),
    "ar": ("وال", "بال", "فال", "كال", "لل", "ال", "و", "ف", "ب", "ل", "ك"),
}
NEGATION_SCOPE = 3
NEGATED = -0.74  # VADER's factor for a negated word
CONTRAST_AFTER, CONTRAST_BEFORE = 1.5, 0.5
INTENSIFIED = 1.3
OPENING_NO = -0.8
QUESTION_PRAISE = 1.5  # a question's positive words below this sum are not praise
THRESHOLD = 0.2  # |score| from which a message is positive or negative (a sum of about 0.4: one weak word is not)
ALPHA = 4.0  # squashing: score / sqrt(score^2 + ALPHA)

_TOKENS = re.compile(r"[^\W_]+(?:['’][^\W_]+)*['’]?|[.,;:!?…()\[\]\"«»“”;—–-]+|[^\w\s]", re.UNICODE)
_CLAUSE_BREAK = re.compile(r"^[.,;:!?…()\[\]\"«»“”;—–-]+$")


@dataclass
class Lexicon:
    language: str
    words: dict[str, float] = field(default_factory=dict)
    stems: dict[str, float] = field(default_factory=dict)
    phrases: dict[tuple[str, ...], float] = field(default_factory=dict)  # tokens; a token ending in * is a stem
    substrings: dict[str, float] = field(default_factory=dict)  # zh, ja, ko: every entry, longest matched first
    negators: set[str] = field(default_factory=set)
    intensifiers: set[str] = field(default_factory=set)
    contrast: set[str] = field(default_factory=set)
    common: set[str] = field(default_factory=set)  # frequent words with no sentiment: language detection's evidence
    max_phrase: int = 1


def _data(name: str) -> str:
    return resources.files("tuneloop.curation.sentiment").joinpath("data", name).read_text(encoding="utf-8")


_ELISION = re.compile(r"\b(\w{1,3}')(?=\w)")


def normalize(text: str, language: str | None = None) -> str:
    if language == "tr":
        text = text.replace("İ", "i").replace("I", "ı")
    text = text.lower().replace("ё", "е").replace("’", "'")
    if language in ("fr", "it"):
        text = _ELISION.sub(r"\1 ", text)  # l'ho, n'aime, c'est: the article or negation is a word of its own
    return text


def _entries(text: str, language: str) -> dict[str, list[tuple[str, float]]]:
    sections: dict[str, list[tuple[str, float]]] = {}
    current = "positive"
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        *words, last = line.split()
        try:
            weight = float(last)
        except ValueError:
            words, weight = [*words, last], 1.0
        sections.setdefault(current, []).append((normalize(" ".join(words), language), weight))
    return sections


@cache
def load(language: str) -> Lexicon:
    lexicon = Lexicon(language)
    sections = _entries(_data(f"{language}.txt"), language)
    for sign, section in ((1.0, "positive"), (-1.0, "negative")):
        for entry, weight in sections.get(section, []):
            value = sign * weight
            if language in SUBSTRING_LANGUAGES:
                lexicon.substrings[entry.replace("*", "")] = value
            elif " " in entry:
                tokens = tuple(entry.split())
                lexicon.phrases[tokens] = value
                lexicon.max_phrase = max(lexicon.max_phrase, len(tokens))
            elif entry.endswith("*"):
                lexicon.stems[entry[:-1]] = value
            else:
                lexicon.words[entry] = value
    lexicon.negators = {e for e, _ in sections.get("negators", [])}
    lexicon.intensifiers = {e for e, _ in sections.get("intensifiers", [])}
    lexicon.contrast = {e for e, _ in sections.get("contrast", [])}
    lexicon.common = {e for e, _ in sections.get("common", [])}
    if language in SUBSTRING_LANGUAGES:
        lexicon.substrings = dict(sorted(lexicon.substrings.items(), key=lambda kv: -len(kv[0])))
    return lexicon


@lru_cache(maxsize=1)
def emoji() -> dict[str, float]:
    table: dict[str, float] = {}
    for sign, section in ((1.0, "positive"), (-1.0, "negative")):
        for entry, weight in _entries(_data("emoji.txt"), "").get(section, []):
            table[entry] = sign * weight
    return dict(sorted(table.items(), key=lambda kv: -len(kv[0])))


def _variants(token: str, language: str) -> list[str]:
    out = [token]
    for prefix in PREFIXES.get(language, ()):
        if token.startswith(prefix) and len(token) - len(prefix) >= 2:
            out.append(token[len(prefix):])
    return out


def _token_value(lexicon: Lexicon, token: str) -> float | None:
    for variant in _variants(token, lexicon.language):
        if variant in lexicon.words:
            return lexicon.words[variant]
        for end in range(len(variant), 2, -1):
            if variant[:end] in lexicon.stems:
                return lexicon.stems[variant[:end]]
    return None


def _matches(pattern: str, token: str, language: str) -> bool:
    if pattern.endswith("*"):
        return any(v.startswith(pattern[:-1]) for v in _variants(token, language))
    return pattern in _variants(token, language)


def _phrase_at(lexicon: Lexicon, tokens: list[str], i: int) -> tuple[int, float] | None:
    best: tuple[int, float] | None = None
    for phrase, value in lexicon.phrases.items():
        n = len(phrase)
        if i + n <= len(tokens) and (best is None or n > best[0]) and all(
                _matches(p, t, lexicon.language) for p, t in zip(phrase, tokens[i:i + n], strict=True)):
            best = (n, value)
    return best


def _strip_emoji(text: str) -> tuple[str, float]:
    total = 0.0
    for symbol, value in emoji().items():
        count = text.count(symbol)
        if count:
            total += value * min(count, 2)
            text = text.replace(symbol, " ")
    return text, total


def emoji_score(text: str) -> float:
    """The score of the emoji and emoticons of ``text`` alone."""
    total = _strip_emoji(text)[1]
    return total / math.sqrt(total * total + ALPHA) if total else 0.0


def _space_score(lexicon: Lexicon, text: str) -> tuple[float, int]:
    tokens = _TOKENS.findall(text)
    items: list[tuple[int, float]] = []  # (token index, value)
    negated_phrases: set[int] = set()  # "не работает": the phrase holds its negation already
    i = 0
    while i < len(tokens):
        phrase = _phrase_at(lexicon, tokens, i)
        if phrase:
            items.append((i, phrase[1]))
            if tokens[i] in lexicon.negators:
                negated_phrases.add(i)
            i += phrase[0]
            continue
        value = _token_value(lexicon, tokens[i])
        if value is not None:
            items.append((i, value))
        i += 1
    found = len(items)
    scored: list[tuple[int, float]] = []
    for index, value in items:
        for back in range(1, NEGATION_SCOPE + 1 if index not in negated_phrases else 1):
            j = index - back
            if j < 0 or _CLAUSE_BREAK.match(tokens[j]) or any(k == j for k, _ in items):
                break
            if tokens[j] in lexicon.negators:
                value *= NEGATED
                break
            if tokens[j] in lexicon.intensifiers:
                value *= INTENSIFIED
        scored.append((index, value))
    if tokens and tokens[0] in lexicon.negators and (len(tokens) == 1 or _CLAUSE_BREAK.match(tokens[1])):
        scored.append((0, OPENING_NO))
        found += 1
    cut = max((i for i, t in enumerate(tokens) if t in lexicon.contrast), default=None)
    if cut is not None and any(i > cut for i, _ in scored):
        scored = [(i, v * (CONTRAST_AFTER if i > cut else CONTRAST_BEFORE)) for i, v in scored]
    return sum(v for _, v in scored), found


_ZH_NEGATIONS = ("不是很", "不太", "不够", "没有", "不", "没", "别", "未")
_JA_NEGATIONS = ("じゃない", "ではない", "くない", "ない", "なかった", "ません", "ず")
_KO_NEGATIONS_AFTER = ("지 않", "지않", "지 못", "지못")


def _substring_score(lexicon: Lexicon, text: str) -> tuple[float, int]:
    total, found = 0.0, 0
    taken = [False] * len(text)
    for entry, value in lexicon.substrings.items():
        start = text.find(entry)
        while start != -1:
            end = start + len(entry)
            if not any(taken[start:end]):
                for k in range(start, end):
                    taken[k] = True
                before, after = text[max(0, start - 3):start], text[end:end + 4]
                negated = (
                    (lexicon.language == "zh" and any(before.endswith(n) for n in _ZH_NEGATIONS))
                    or (lexicon.language == "ja" and any(after.startswith(n) for n in _JA_NEGATIONS))
                    or (lexicon.language == "ko" and (before.endswith("안 ") or before.endswith("못 ")
                                                      or any(after.startswith(n) for n in _KO_NEGATIONS_AFTER)))
                )
                total += value * (NEGATED if negated else 1.0)
                found += 1
            start = text.find(entry, end)
    return total, found


def score(text: str, language: str) -> tuple[float, int]:
    """(compound score in [-1, 1], how many lexicon entries and emoji matched) of ``text`` in ``language``."""
    # Lazy: language imports this module (its tie-breaker); the reverse import waits for the first score.
    from tuneloop.curation.sentiment.language import clean

    lexicon = load(language)
    text, total = _strip_emoji(normalize(clean(text), language))
    found = 1 if total else 0
    if language in SUBSTRING_LANGUAGES:
        value, hits = _substring_score(lexicon, text)
    else:
        value, hits = _space_score(lexicon, text)
    if text.rstrip().endswith(("?", "？")) and 0 < value < QUESTION_PRAISE:
        value = 0.0  # "can you explain exactly how?": a question's mild words are not praise
    total += value
    found += hits
    return (total / math.sqrt(total * total + ALPHA) if total else 0.0), found


@lru_cache(maxsize=1)
def _evidence_index() -> dict[str, tuple[set[str], dict[str, float]]]:
    """Per space-separated language: the words that place a text in it (sentiment words, negators, common words),
    and its stems."""
    return {lang: (set(load(lang).words) | load(lang).negators | load(lang).common, load(lang).stems)
            for lang in LANGUAGES if lang not in SUBSTRING_LANGUAGES}


def evidence(text: str) -> dict[str, float]:
    """How many words of ``text`` each space-separated language's lexicon knows (language detection's tie-breaker).
    A word of one or two letters that several lexicons know counts as a share in each ("ok", "de", "na", "mi" say
    little about the language); stems count from five letters on, so that short stems do not claim words of other
    languages."""
    tokens = [t for t in _TOKENS.findall(normalize(text)) if t[0].isalpha()]
    found: dict[str, float] = {}
    for token in tokens:
        knowing = []
        for lang, (words, stems) in _evidence_index().items():
            if token in words or any(token[:end] in stems for end in range(len(token), 4, -1)):
                knowing.append(lang)
        for lang in knowing:
            found[lang] = found.get(lang, 0.0) + (1 / len(knowing) if len(token) <= 2 else 1.0)
    return found
