"""The log as the shells read it: one :class:`LogFilter` (the CLI's options, the API's parameters and the pages'
query mean the same), a page of threads, a thread with its messages and verdicts, the newest verdicts, search. The
record types the shells show come from here, so that no shell reaches into the store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tuneloop.errors import MessageNotFoundError
from tuneloop.store import Store
from tuneloop.store.browse import RATINGS, SENTIMENTS, SOURCES, LogFilter, LogPage, ThreadSummary
from tuneloop.store.judgments import Verdict
from tuneloop.store.records import Correction, Message, Thread
from tuneloop.store.search import START, STOP, SearchHit, words

__all__ = [
    "RATINGS", "SENTIMENTS", "SOURCES", "START", "STOP", "Correction", "LogFilter", "LogPage", "Message",
    "SearchHit", "Thread", "ThreadSummary", "ThreadView", "Verdict", "export", "recent_verdicts", "thread_view",
    "words",
]


@dataclass(frozen=True)
class ThreadView:
    """A thread as a page shows it: its messages, each reply's verdicts, and each tool call's result by call id."""

    thread: Thread
    messages: list[Message]
    verdicts: dict[int, list[Verdict]]
    results: dict[str, Message]


def thread_view(db: Store, thread_id: str) -> ThreadView:
    thread = db.dialogue.get_thread(thread_id)
    messages = db.dialogue.messages(thread_id)
    verdicts = db.judgments.verdicts_of(m.id for m in messages if m.role == "assistant")
    results = {m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id}
    return ThreadView(thread, messages, verdicts, results)


@dataclass(frozen=True)
class RecentVerdict:
    verdict: Verdict
    message: Message


def recent_verdicts(db: Store, judges: Iterable[str], limit: int) -> list[RecentVerdict]:
    """The ``limit`` newest verdicts of ``judges``, each with the reply it is about (one bounded query; a verdict
    whose reply was deleted meanwhile is left out)."""
    names = set(judges)
    found = []
    for verdict in db.judgments.recent(None, limit) if names else []:
        if verdict.judge not in names:
            continue
        try:
            found.append(RecentVerdict(verdict, db.dialogue.get_message(verdict.message_id)))
        except MessageNotFoundError:
            continue
    return found


def export(db: Store, thread_ids: list[str] | None = None) -> Iterator[tuple[Thread, list[Message]]]:
    """Every thread (or those named) with its messages, oldest thread first."""
    return db.dialogue.export(thread_ids)
