"""What the log records beside each message, computed here before the store persists it (the store computes
nothing): the sentiment and language of every message, and so the reaction of each user turn to the reply before
it. A :class:`Labeller` applies the analyzer the ``sentiment_analyzer`` setting names (:func:`labeller_for`); every
function that labels is handed one, so no message is ever labelled by an analyzer the settings did not choose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuneloop.curation import sentiment
from tuneloop.curation.sentiment import Sentiment
from tuneloop.errors import ConfigError, TuneloopError
from tuneloop.generation import GenerationOptions
from tuneloop.store import DialogueStore, Exchange
from tuneloop.store.conversations import NewMessage

if TYPE_CHECKING:
    from tuneloop.runtime import Runtime

Complete = Callable[[list[dict[str, str]]], str]


class Labeller:
    """Sentiment with one analyzer: ``multilingual`` (the default), ``vader`` or ``judge`` (a chat model, reached
    through ``complete(messages) -> text``). A judge that cannot be reached labels ``unknown``, and the exchange
    is logged all the same."""

    def __init__(self, analyzer: str = "multilingual", complete: Complete | None = None) -> None:
        if analyzer not in sentiment.ANALYZERS:
            raise ConfigError(f"unknown sentiment analyzer {analyzer!r}; use one of {', '.join(sentiment.ANALYZERS)} "
                              "(TUNELOOP_SENTIMENT_ANALYZER)")
        self.analyzer = analyzer
        self._judge = None
        if analyzer == "judge":
            if complete is None:
                raise ConfigError("the judge sentiment analyzer needs a chat model; set sentiment_judge_model")
            self._judge = sentiment.JudgeAnalyzer(complete)

    def __call__(self, text: str) -> Sentiment:
        return self.many([text])[0]

    def many(self, texts: Sequence[str]) -> list[Sentiment]:
        if self._judge is None:
            return sentiment.analyze_many(list(texts), self.analyzer)
        labels = []
        for text in texts:
            try:
                labels.append(self._judge.analyze(text))
            except TuneloopError:  # the judge model failed: the message is logged, its label unknown
                labels.append(Sentiment("unknown", 0.0, sentiment.detect_language(text)))
        return labels


def labeller_for(runtime: Runtime) -> Labeller:
    """The analyzer ``runtime``'s settings name (``sentiment_analyzer``; for ``judge``: ``sentiment_judge_model``,
    else the default model, asked for a label)."""
    settings = runtime.settings
    if settings.sentiment_analyzer != "judge":
        return Labeller(settings.sentiment_analyzer)
    judge = settings.sentiment_judge_model or runtime.default_model()

    def complete(messages: list[dict[str, str]]) -> str:
        provider, model = runtime.resolve(judge)
        return provider.complete(messages, GenerationOptions(max_tokens=48), model=model).text

    return Labeller("judge", complete)


def labelled(messages: list[NewMessage], labeller: Labeller) -> list[NewMessage]:
    """``messages`` with their sentiment, ready for ``Conversations.append``/``create`` (labels given are kept)."""
    label = labeller
    todo = [m for m in messages if m.sentiment is None]
    found = iter(label.many([m.content for m in todo]))
    return [m if m.sentiment is not None else replace(m, sentiment=next(found)) for m in messages]


def log_exchange(store: DialogueStore, thread_id: str, user_content: str, assistant_content: str,
                 labeller: Labeller, **fields: Any) -> Exchange:
    """``store.append_exchange`` with the sentiment of the user turn, the reply and a new system instruction."""
    label = labeller
    system = fields.get("system_instruction")
    user, reply, *rest = label.many([user_content, assistant_content, *([system] if system else [])])
    return store.append_exchange(
        thread_id, user_content, assistant_content,
        user_sentiment=user, reply_sentiment=reply, system_sentiment=rest[0] if rest else None,
        **fields,
    )


def rescore(store: DialogueStore, labeller: Labeller, *, since: datetime | None = None,
            batch: int = 200, on_progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Label every logged message (written at or after ``since``) again and recompute the reactions, a batch per
    transaction: safe to interrupt (what is done stays done) and to run again (the same analyzer gives the same
    labels). ``on_progress(done, total)``. Returns (messages read, labels changed)."""
    label = labeller
    total = store.count_messages(since)
    done = changed = 0
    if on_progress is not None:
        on_progress(0, total)
    for rows in store.message_batches(since, batch):
        found = label.many([content for _, content in rows])
        changed += store.relabel([(message_id, s) for (message_id, _), s in zip(rows, found, strict=True)])
        done += len(rows)
        if on_progress is not None:
            on_progress(min(done, total), total)
    return done, changed
