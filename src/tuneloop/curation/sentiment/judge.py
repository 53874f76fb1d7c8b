"""The ``judge`` analyzer: a chat model asked for the label, in JSON.

The model is any ``complete(messages) -> text`` callable (the caller injects a local or remote chat model); its
answer is parsed leniently (code fences, text around the JSON object). An answer with no valid label gives
``unknown``, with the language detected offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from tuneloop.curation.sentiment.language import detect_language

if TYPE_CHECKING:
    from tuneloop.curation.sentiment import Sentiment

Complete = Callable[[list[dict[str, str]]], str]
LABELS = ("positive", "negative", "neutral")
SYSTEM = (
    "You label the sentiment of one chat message written by a user to an AI assistant, in any language. "
    "positive: thanks, praise, satisfaction, agreement; negative: complaint, disagreement, saying the answer is "
    "wrong or useless, frustration; neutral: a plain question, request or statement. Answer with JSON only: "
    '{"label": "positive|negative|neutral", "language": "<ISO 639-1 code>"}'
)
_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_SCORES = {"positive": 1.0, "negative": -1.0, "neutral": 0.0}


def parse(answer: str) -> tuple[str, str | None] | None:
    """(label, language) from a judge's answer, or None when it holds no valid label."""
    for candidate in _OBJECT.findall(answer or ""):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        label = str(data.get("label", "")).strip().lower()
        if label in LABELS:
            language = data.get("language")
            code = str(language).strip().lower()[:2] if isinstance(language, str) and language.strip() else None
            return label, code if code and code.isalpha() else None
    return None


class JudgeAnalyzer:
    """Sentiment from a chat model: one request per text."""

    def __init__(self, complete: Complete) -> None:
        self.complete = complete

    def messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Message:\n{text}"}]

    def analyze(self, text: str) -> Sentiment:
        # Lazy: Sentiment lives in the package's __init__, which imports this module.
        from tuneloop.curation.sentiment import Sentiment

        detected = detect_language(text)
        parsed = parse(self.complete(self.messages(text)))
        if parsed is None:
            return Sentiment("unknown", 0.0, detected)
        label, language = parsed
        return Sentiment(label, _SCORES[label], detected or language)  # type: ignore[arg-type]

    def analyze_many(self, texts: list[str]) -> list[Sentiment]:
        return [self.analyze(text) for text in texts]
