"""Sentiment and language of a message, offline.

Analyzers (``ANALYZERS``):
- ``multilingual`` (the default): English through VADER exactly as before; the languages of
  ``COVERED_LANGUAGES`` through tuneloop's own lexicons (``lexicon.py``); any other language ``unknown``, never a
  silent ``neutral``;
- ``vader``: VADER for English and for text with no language (emoji, "ok"), ``unknown`` for any other language;
- ``judge``: a chat model asked for a label (``judge.JudgeAnalyzer``, built with the model to call).
The language comes from ``language.detect_language`` (scripts, fastText's compressed model, lexicon words).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from tuneloop.curation.sentiment.judge import JudgeAnalyzer
from tuneloop.curation.sentiment.language import detect, detect_language
from tuneloop.curation.sentiment.lexicon import LANGUAGES
from tuneloop.errors import InputError

if TYPE_CHECKING:
    from tuneloop.curation.sentiment.language import Detection

__all__ = ["ANALYZERS", "COVERED_LANGUAGES", "JudgeAnalyzer", "Label", "Sentiment", "analyze", "analyze_many",
           "detect_language"]

Label = Literal["positive", "negative", "neutral", "unknown"]
ANALYZERS = ("multilingual", "vader", "judge")
COVERED_LANGUAGES: frozenset[str] = LANGUAGES

# VADER's authors' recommended cut-offs on the compound score (the lexicons' score uses them too).
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05


@dataclass(frozen=True)
class Sentiment:
    label: Label
    score: float  # in [-1, 1] (VADER's compound, or the lexicons' score); 0.0 for unknown
    language: str | None = None  # ISO 639-1 code; None when undetermined (empty text, emoji only, digits, ...)


@lru_cache(maxsize=1)
def _vader() -> Any:
    # Lazy: VADER's lexicon loads with the first message, not with every `tuneloop` command.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _labelled(score: float, language: str | None, threshold: float = POSITIVE_THRESHOLD) -> Sentiment:
    if score >= threshold:
        return Sentiment("positive", score, language)
    if score <= -threshold:
        return Sentiment("negative", score, language)
    return Sentiment("neutral", score, language)


def vader(text: str, language: str | None = None) -> Sentiment:
    """VADER's label and compound score, as tuneloop always labelled English."""
    return _labelled(float(_vader().polarity_scores(text or "")["compound"]), language)


def _analyze(text: str, analyzer: str, found: Detection) -> Sentiment:
    language = found.language
    if language == "en":
        return vader(text, "en")
    if language is None:
        if analyzer == "multilingual":
            # Lazy: the emoji table loads with the first message that needs it.
            from tuneloop.curation.sentiment.lexicon import emoji_score

            value = emoji_score(text)
            if value:
                return _labelled(round(value, 4), None)  # 👍, 🔥, 🤦: VADER reads some as words ("fire")
        labelled = vader(text)
        if found.has_letters and labelled.label == "neutral":
            return Sentiment("unknown", 0.0, None)  # words of a language nothing could place
        return labelled
    if analyzer == "vader" or language not in COVERED_LANGUAGES:
        return Sentiment("unknown", 0.0, language)
    # Lazy: the lexicon engine's data loads with the first non-English message.
    from tuneloop.curation.sentiment.lexicon import THRESHOLD, score

    value, _ = score(text, language)
    return _labelled(round(value, 4), language, THRESHOLD)


def analyze(text: str, analyzer: str = "multilingual") -> Sentiment:
    """Label ``text`` positive, negative, neutral or unknown with ``analyzer`` (``multilingual`` or ``vader``)."""
    return analyze_many([text], analyzer)[0]


def analyze_many(texts: list[str], analyzer: str = "multilingual") -> list[Sentiment]:
    if analyzer not in ("multilingual", "vader"):
        raise InputError(f"analyze() takes 'multilingual' or 'vader', not {analyzer!r}; the judge needs a model: "
                         "JudgeAnalyzer(complete)", param="analyzer")
    return [_analyze(text or "", analyzer, detect(text or "")) for text in texts]
