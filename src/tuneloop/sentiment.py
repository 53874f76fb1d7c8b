"""Sentiment of a message with VADER, which ships its own lexicon (no download, no network)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

Label = Literal["positive", "negative", "neutral"]

# VADER's authors' recommended cut-offs on the compound score.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05


@dataclass(frozen=True)
class Sentiment:
    label: Label
    score: float  # VADER compound score in [-1, 1]


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def analyze(text: str) -> Sentiment:
    """Label a text positive, negative or neutral, with VADER's compound score."""
    score = float(_analyzer().polarity_scores(text or "")["compound"])
    if score >= POSITIVE_THRESHOLD:
        return Sentiment("positive", score)
    if score <= NEGATIVE_THRESHOLD:
        return Sentiment("negative", score)
    return Sentiment("neutral", score)

