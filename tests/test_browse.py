"""The log page's store queries (tuneloop.store.browse): each filter keeps what LogFilter says, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert

from tuneloop.store.browse import LogBrowser, LogFilter
from tuneloop.store.database import Database
from tuneloop.store.schema import AssistantRow, CorrectionRow, JudgeRow, MessageRow, ThreadRow, VerdictRow

DAY = datetime(2026, 11, 1, 9, tzinfo=UTC)


MODELS = {"a": "m1", "b": "m2", "c": "m1", "d": "m2"}  # the model that wrote each thread's replies


def message(mid: int, thread: str, role: str, content: str, *, day: int, language: str | None = "en",
            sentiment: str = "neutral", feedback: int | None = None, excluded: bool = False) -> dict:
    return {"id": mid, "thread_id": thread, "role": role, "content": content, "sentiment_label": sentiment,
            "model": MODELS[thread] if role == "assistant" else None,
            "sentiment_score": 0.5, "language": language, "feedback": feedback, "excluded": excluded,
            "created_at": DAY + timedelta(days=day, minutes=mid)}


@pytest.fixture
def browser(database_url: str) -> LogBrowser:
    db = Database(database_url)
    threads = [("a", None, "m1", None, 0), ("b", "conversation", "m2", {"team": "x"}, 1),
               ("c", "response", "m1", None, 2), ("d", "chat.completion", "m2", None, 3)]
    messages = [
        message(1, "a", "user", "my password is lost", day=0, sentiment="negative"),
        message(2, "a", "assistant", "reset it here", day=0, feedback=-1),
        message(3, "b", "user", "bonjour le mot de passe", day=1, language="fr", sentiment="positive"),
        message(4, "b", "assistant", "voici", day=1, language="fr", feedback=1),
        message(5, "c", "user", "a refund please", day=2),
        message(6, "c", "assistant", "refunded", day=2, excluded=True),
        message(7, "d", "user", "passwords again", day=3, language=None, sentiment="negative"),
        message(8, "d", "assistant", "sure", day=3, language=None),
    ]
    with db.engine.begin() as conn:
        conn.execute(insert(AssistantRow.__table__), [{"id": "helper", "name": "Helper", "temperature": 0.0,
                                                       "updated_at": DAY}])
        conn.execute(insert(ThreadRow.__table__), [
            {"id": i, "kind": kind, "model": model, "metadata": meta, "created_at": DAY + timedelta(days=d),
             "assistant_id": "helper" if i == "b" else None,
             "updated_at": DAY + timedelta(days=d, hours=1)} for i, kind, model, meta, d in threads])
        conn.execute(insert(MessageRow.__table__), messages)
        conn.execute(insert(CorrectionRow.__table__), [{"message_id": 2, "content": "better", "source": "ui",
                                                        "created_at": DAY}])
        conn.execute(insert(JudgeRow.__table__), [{"name": "polite", "instruction": "?", "rule": "pass",
                                                   "created_at": DAY, "updated_at": DAY}])
        conn.execute(insert(VerdictRow.__table__), [{"message_id": 8, "judge": "polite", "judge_model": "j",
                                                     "passed": True, "created_at": DAY}])
    return LogBrowser(db)


@pytest.mark.parametrize(("where", "kept"), [
    (LogFilter(), "dcba"),
    (LogFilter(language="fr"), "b"),
    (LogFilter(sentiment="negative"), "da"),
    (LogFilter(rating="up"), "b"),
    (LogFilter(rating="down"), "a"),
    (LogFilter(rating="any"), "ba"),
    (LogFilter(rating="none"), "dc"),
    (LogFilter(corrected=True), "a"),
    (LogFilter(corrected=False), "dcb"),
    (LogFilter(judged=True), "d"),
    (LogFilter(judged=False), "cba"),
    (LogFilter(excluded=True), "c"),
    (LogFilter(excluded=False), "dba"),
    (LogFilter(source="chat"), "a"),
    (LogFilter(source="conversation", metadata={"team": "x"}), "b"),
    (LogFilter(assistant="helper", metadata={"team": "x"}), "b"),
    (LogFilter(source="chat", metadata={"team": "x"}), ""),
    (LogFilter(passed_by="polite"), "d"),
    (LogFilter(passed_by="polite", model="m1"), ""),
    (LogFilter(model="m2"), "db"),
    (LogFilter(since=DAY + timedelta(days=1), until=DAY + timedelta(days=3)), "cb"),
    (LogFilter(query="passw"), "da"),
    (LogFilter(query="password lost"), "a"),
    (LogFilter(query="refund", excluded=True), "c"),
    (LogFilter(query="password", rating="none", language="en"), ""),
])
def test_each_filter_keeps_what_it_says(browser: LogBrowser, where: LogFilter, kept: str) -> None:
    page = browser.threads(where, limit=10)
    assert "".join(s.thread.id for s in page.threads) == kept
    assert page.total == len(kept)
    assert browser.thread_ids(where) == list(kept)


def test_pages_facets_and_the_sentiment_chart(browser: LogBrowser) -> None:
    page = browser.threads(LogFilter(), offset=1, limit=2)
    assert [s.thread.id for s in page.threads] == ["c", "b"] and page.total == 4 and page.has_more
    first = page.threads[0]
    assert (first.messages, first.first_user) == (2, "a refund please")
    assert browser.threads(LogFilter(), offset=0, limit=4).threads[3].corrected == 1
    assert browser.facets() == {"models": ["m1", "m2"], "assistants": ["helper"], "languages": ["en", "fr"]}
    assert browser.sentiment_by_day(LogFilter(sentiment="negative")) == [
        (date(2026, 11, 1), {"negative": 1}), (date(2026, 11, 4), {"negative": 1})]
    assert browser.sentiment_by_day(LogFilter(), days=2) == [
        (date(2026, 11, 3), {"neutral": 1}), (date(2026, 11, 4), {"negative": 1})]


def test_server_traffic_is_a_source_of_its_own(browser: LogBrowser) -> None:
    with browser.db.engine.begin() as conn:
        conn.execute(insert(ThreadRow.__table__), [{"id": "e", "kind": "server", "model": "m1", "created_at": DAY,
                                                    "updated_at": DAY}])
    assert browser.thread_ids(LogFilter(source="server")) == ["e"]
    assert "e" not in browser.thread_ids(LogFilter(source="chat"))


def test_replies_chosen_by_their_thread_and_their_own_fields_at_once(browser: LogBrowser) -> None:
    """A thread's column (assistant, source) and a reply's metadata in one query: the thread row the metadata falls
    back to is the reply's own, not the joined one's (it once made the query fail)."""
    assert browser.reply_ids(LogFilter(assistant="helper", metadata={"team": "x"})) == [4]
    assert browser.reply_ids(LogFilter(source="conversation", metadata={"team": "x"}, model="m2")) == [4]
    assert browser.reply_ids(LogFilter(source="chat", metadata={"team": "x"})) == []
    assert browser.reply_ids(LogFilter(passed_by="polite", source="chat.completion")) == [8]
