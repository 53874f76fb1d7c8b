"""Browsing the log: threads filtered by what their messages say and what people and judges said of them, paged
by the database, with a per-day sentiment count of the same set (the dashboard's log page); and the replies the same
filter selects, for building training data and evals and for judging (:meth:`LogBrowser.reply_ids`).

Every filter is a condition the database evaluates (an indexed column, or a semi-join over a thread's messages), so
a page reads its page of threads and a few rows more, never the whole log. One :class:`LogFilter` means the same in
the CLI, the API and the pages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, and_, case, cast, func, literal_column, select, text
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement, Select

from tuneloop.store.database import Repository
from tuneloop.store.records import Thread
from tuneloop.store.schema import CorrectionRow, MessageRow, ThreadRow, VerdictRow
from tuneloop.store.search import fts5_query, like_pattern, tsquery_text, words

# Where a thread came from, as the log page names it; the values of ThreadRow.kind (None: tuneloop's own chat).
SOURCES = {"chat": None, "conversation": "conversation", "response": "response",
           "chat.completion": "chat.completion", "server": "server"}  # server: an app's traffic, logged not stored
RATINGS = {"up": 1, "down": -1}
SENTIMENTS = ("positive", "negative", "neutral", "unknown")


# The fields of a LogFilter that select replies: together they hold for one reply (a thread is kept for such a reply).
REPLY_FIELDS = ("model", "metadata", "since", "until", "replies", "passed_by")


@dataclass(frozen=True)
class LogFilter:
    """Which replies and threads of the log; every given field must hold.

    Replies (the same reply meets them all; a thread is kept when it has such a reply): ``model``, the model that
    wrote it; ``metadata``, every pair matches the reply's own metadata or, for a key it lacks, its thread's;
    ``since``/``until``, when it was written, in [since, until); ``replies``, only these ids; ``passed_by``, the
    newest readable verdict of that judge on it passed (as :func:`tuneloop.curation.judges.latest_verdicts` keeps).

    Threads: ``query``, every word appears in one of the thread's messages (full text, word prefixes);
    ``assistant``; ``language``, ``sentiment``: some message has it (sentiment: a user turn's); ``rating``: some reply
    was rated ``up``/``down`` (``any``: either, ``none``: no reply rated); ``corrected``, ``judged``, ``excluded``:
    some reply was (True) or none was (False); ``source``: where the thread came from (``SOURCES``)."""

    query: str | None = None
    model: str | None = None
    assistant: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    language: str | None = None
    sentiment: str | None = None
    rating: str | None = None
    corrected: bool | None = None
    judged: bool | None = None
    excluded: bool | None = None
    source: str | None = None
    replies: frozenset[int] | None = None
    passed_by: str | None = None

    def __post_init__(self) -> None:
        if self.metadata is None:  # DialogueFilter(metadata=None), as callers wrote it before
            object.__setattr__(self, "metadata", {})
        if self.replies is not None and not isinstance(self.replies, frozenset):
            object.__setattr__(self, "replies", frozenset(self.replies))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, {}) for f in fields(self))

    @property
    def selects_replies(self) -> bool:
        """Whether any field chooses replies (not only threads)."""
        return any(getattr(self, name) not in (None, {}) for name in REPLY_FIELDS)

    def to_params(self) -> dict[str, Any]:
        """The filter as JSON (a task's parameters): only the fields given, dates as ISO 8601."""
        found: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, {}):
                continue
            found[f.name] = (value.isoformat() if isinstance(value, datetime)
                             else sorted(value) if isinstance(value, frozenset) else value)
        return found

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> LogFilter:
        """The filter :meth:`to_params` wrote."""
        given = dict(params or {})
        for name in ("since", "until"):
            if given.get(name) is not None:
                given[name] = datetime.fromisoformat(given[name])
        if given.get("replies") is not None:
            given["replies"] = frozenset(given["replies"])
        return cls(**given)


@dataclass(frozen=True)
class ThreadSummary:
    thread: Thread
    messages: int
    first_user: str  # the first user turn (what the thread is about), cut short
    rated_up: int
    rated_down: int
    corrected: int


@dataclass(frozen=True)
class LogPage:
    threads: list[ThreadSummary]
    total: int
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.threads) < self.total


def _in_kept(test: Select[Any], keep: bool, thread_id: Any) -> ColumnElement[bool]:
    """The thread (``thread_id``) is (``keep``) or is not among those ``test`` (a select of thread ids) names: a
    semi-join the database drives from the index on the tested column, where EXISTS per thread would read every
    thread's messages. messages.thread_id is never NULL, so NOT IN means NOT EXISTS. Never correlated: the outer
    query may read messages too (the sentiment chart)."""
    test = test.correlate(None)
    return thread_id.in_(test) if keep else thread_id.not_in(test)


def _passed_by(judge: str) -> Select[Any]:
    """Ids of the replies whose newest readable verdict by ``judge`` passed: the newest ``created_at``, then the last
    judge model in the database's order (what :func:`tuneloop.curation.judges.latest_verdicts` keeps)."""
    rank = func.row_number().over(partition_by=VerdictRow.message_id,
                                  order_by=(VerdictRow.created_at.desc(), VerdictRow.judge_model.desc()))
    ranked = (select(VerdictRow.message_id, VerdictRow.passed, rank.label("rank"))
              .where(VerdictRow.judge == judge, VerdictRow.passed.is_not(None)).subquery())
    return select(ranked.c.message_id).where(ranked.c.rank == 1, ranked.c.passed.is_(True))


def _messages_where(*conditions: ColumnElement[bool]) -> Select[Any]:
    return select(MessageRow.thread_id).where(*conditions)


class LogBrowser(Repository):
    def _conditions(self, where: LogFilter) -> list[ColumnElement[bool]]:
        return self._thread_conditions(where) + self._id_conditions(where, ThreadRow.id)

    @staticmethod
    def _thread_conditions(where: LogFilter) -> list[ColumnElement[bool]]:
        """The conditions on the threads' own columns."""
        found: list[ColumnElement[bool]] = []
        if where.assistant:
            found.append(ThreadRow.assistant_id == where.assistant)
        if where.source is not None:
            kind = SOURCES[where.source]
            found.append(ThreadRow.kind.is_(None) if kind is None else ThreadRow.kind == kind)
        return found

    def _id_conditions(self, where: LogFilter, thread_id: Any, *, replies: bool = True) -> list[ColumnElement[bool]]:
        """The conditions on what was said in the thread ``thread_id`` (threads.id, or messages.thread_id where a
        query needs no thread's column)."""
        found: list[ColumnElement[bool]] = []

        def _in_threads(test: Select[Any], keep: bool = True) -> ColumnElement[bool]:
            return _in_kept(test, keep, thread_id)

        if where.language:
            found.append(_in_threads(_messages_where(MessageRow.language == where.language)))
        if where.sentiment:
            found.append(_in_threads(_messages_where(MessageRow.role == "user",
                                                     MessageRow.sentiment_label == where.sentiment)))
        if where.rating in RATINGS:
            found.append(_in_threads(_messages_where(MessageRow.feedback == RATINGS[where.rating])))
        elif where.rating in ("any", "none"):
            found.append(_in_threads(_messages_where(MessageRow.feedback.in_((1, -1))), where.rating == "any"))
        if where.excluded is not None:
            found.append(_in_threads(_messages_where(MessageRow.excluded.is_(True)), where.excluded))
        if where.corrected is not None:
            found.append(_in_threads(select(MessageRow.thread_id).join(
                CorrectionRow, CorrectionRow.message_id == MessageRow.id), where.corrected))
        if where.judged is not None:
            found.append(_in_threads(select(MessageRow.thread_id).join(
                VerdictRow, VerdictRow.message_id == MessageRow.id), where.judged))
        if where.query and (matched := self._matching_threads(where.query)) is not None:
            found.append(_in_threads(matched))
        if replies and where.selects_replies:
            found.append(_in_threads(select(MessageRow.thread_id).where(*self._reply_conditions(where))))
        return found

    @staticmethod
    def _reply_conditions(where: LogFilter) -> list[ColumnElement[bool]]:
        """The conditions that choose a reply (one message row): the fields of ``REPLY_FIELDS``."""
        found: list[ColumnElement[bool]] = [MessageRow.role == "assistant"]
        if where.model:
            found.append(MessageRow.model == where.model)
        if where.since is not None:
            found.append(MessageRow.created_at >= where.since)
        if where.until is not None:
            found.append(MessageRow.created_at < where.until)
        if where.replies is not None:
            found.append(MessageRow.id.in_(sorted(where.replies)))
        if where.passed_by is not None:
            found.append(MessageRow.id.in_(_passed_by(where.passed_by)))
        # The thread's value read from a thread row of its own: the outer query may join threads too (a filter on
        # the assistant or the source), and a subquery over that same table would be correlated with it.
        own_thread = aliased(ThreadRow)
        for key, value in where.metadata.items():
            thread_value = (select(own_thread.metadata_[key].as_string())
                            .where(own_thread.id == MessageRow.thread_id).correlate(MessageRow).scalar_subquery())
            found.append(func.coalesce(MessageRow.metadata_[key].as_string(), thread_value) == value)
        return found

    def _matching_threads(self, query: str) -> Select[Any] | None:
        terms = words(query)
        if not terms:
            return None
        if self.db.dialect == "sqlite":
            ids = text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts").bindparams(
                fts=fts5_query(terms)).columns(literal_column("rowid"))
            return select(MessageRow.thread_id).where(MessageRow.id.in_(ids.subquery().select()))
        if self.db.dialect == "postgresql":
            tsquery = func.to_tsquery("simple", tsquery_text(terms))
            return select(MessageRow.thread_id).where(literal_column("messages.search").op("@@")(tsquery))
        return select(MessageRow.thread_id).where(MessageRow.content.ilike(like_pattern(query), escape="\\"))

    def threads(self, where: LogFilter, *, offset: int = 0, limit: int = 25) -> LogPage:
        """One page of the threads ``where`` keeps, most recently active first, with how many it keeps in all."""
        conditions = self._conditions(where)
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(ThreadRow).where(*conditions)) or 0
            newest = (ThreadRow.updated_at.desc(), ThreadRow.id)
            rows = list(session.scalars(select(ThreadRow).where(*conditions).order_by(*newest)
                                        .offset(offset).limit(limit)))
            ids = [r.id for r in rows]
            stats: dict[str, tuple[int, int, int]] = {}
            if ids:
                for thread_id, n, up, down in session.execute(
                        select(MessageRow.thread_id, func.count(MessageRow.id),
                               func.sum(case((MessageRow.feedback == 1, 1), else_=0)),
                               func.sum(case((MessageRow.feedback == -1, 1), else_=0)))
                        .where(MessageRow.thread_id.in_(ids)).group_by(MessageRow.thread_id)):
                    stats[thread_id] = (int(n), int(up or 0), int(down or 0))
            corrected = dict(session.execute(
                select(MessageRow.thread_id, func.count(func.distinct(CorrectionRow.message_id)))
                .join(MessageRow, MessageRow.id == CorrectionRow.message_id)
                .where(MessageRow.thread_id.in_(ids)).group_by(MessageRow.thread_id)).all()) if ids else {}
            firsts = self._first_user_turns(session, ids)
            summaries = []
            for r in rows:
                n, up, down = stats.get(r.id, (0, 0, 0))
                summaries.append(ThreadSummary(Thread.from_row(r, n), n, firsts.get(r.id, ""), up, down,
                                               int(corrected.get(r.id, 0))))
            return LogPage(summaries, int(total), offset, limit)

    def thread_ids(self, where: LogFilter, *, limit: int | None = None) -> list[str]:
        """The ids of every thread ``where`` keeps (the newest ``limit`` when given), most recently active first:
        what a training set is built from."""
        statement = select(ThreadRow.id).where(*self._conditions(where)).order_by(ThreadRow.updated_at.desc(),
                                                                                  ThreadRow.id)
        if limit is not None:
            statement = statement.limit(limit)
        with self.db.session() as session:
            return list(session.scalars(statement))

    def reply_ids(self, where: LogFilter, *, thread_ids: Iterable[str] | None = None,
                  limit: int | None = None) -> list[int]:
        """The ids of the replies ``where`` selects, in the threads it keeps (and among ``thread_ids`` when given),
        oldest first: what training data, evals and judges are built from."""
        return [reply for reply, _ in self.reply_refs(where, thread_ids=thread_ids, limit=limit)]

    def reply_refs(self, where: LogFilter, *, thread_ids: Iterable[str] | None = None, limit: int | None = None,
                   unjudged_by: tuple[str, str] | None = None, with_text: bool = False) -> list[tuple[int, str]]:
        """(reply id, thread id) of the replies ``where`` selects, oldest first; ``unjudged_by`` (judge, model):
        only those that judge has no readable verdict on from that model; ``with_text``: only replies with text."""
        statement = (select(MessageRow.id, MessageRow.thread_id)
                     .where(*self._reply_conditions(where), *self._id_conditions(where, MessageRow.thread_id,
                                                                                  replies=False))
                     .order_by(MessageRow.id))
        by_thread = self._thread_conditions(where)
        if by_thread:
            statement = statement.join(ThreadRow, ThreadRow.id == MessageRow.thread_id).where(*by_thread)
        if thread_ids is not None:
            statement = statement.where(MessageRow.thread_id.in_(list(thread_ids)))
        if unjudged_by is not None:
            judged = select(VerdictRow.message_id).where(VerdictRow.judge == unjudged_by[0],
                                                         VerdictRow.judge_model == unjudged_by[1],
                                                         VerdictRow.passed.is_not(None))
            statement = statement.where(MessageRow.id.not_in(judged))
        if with_text:
            statement = statement.where(func.length(func.trim(MessageRow.content)) > 0)
        if limit is not None:
            statement = statement.limit(limit)
        with self.db.session() as session:
            return [(int(i), thread) for i, thread in session.execute(statement)]

    @staticmethod
    def _first_user_turns(session: Any, ids: list[str], length: int = 160) -> dict[str, str]:
        if not ids:
            return {}
        first = (select(MessageRow.thread_id, func.min(MessageRow.id).label("id"))
                 .where(MessageRow.thread_id.in_(ids), MessageRow.role == "user")
                 .group_by(MessageRow.thread_id).subquery())
        rows = session.execute(select(MessageRow.thread_id, func.substr(MessageRow.content, 1, length))
                               .join(first, and_(first.c.id == MessageRow.id)))
        return {thread_id: content for thread_id, content in rows}

    def sentiment_by_day(self, where: LogFilter, *, days: int = 60) -> list[tuple[date, dict[str, int]]]:
        """How many user turns of the kept threads were positive, negative, neutral or unknown, per day, for the
        last ``days`` days that had any (oldest first)."""
        by_thread = self._thread_conditions(where)
        by_id = self._id_conditions(where, MessageRow.thread_id)
        day = (func.date(MessageRow.created_at) if self.db.dialect == "sqlite"
               else cast(MessageRow.created_at, Date))
        statement = (select(day.label("day"), MessageRow.sentiment_label, func.count())
                     .where(MessageRow.role == "user", *by_id).group_by(day, MessageRow.sentiment_label))
        if by_thread:  # a join: each thread's columns are tested once, not once per message
            statement = statement.join(ThreadRow, ThreadRow.id == MessageRow.thread_id).where(*by_thread)
        counts: dict[date, dict[str, int]] = defaultdict(dict)
        with self.db.session() as session:
            for when, label, n in session.execute(statement):
                when = date.fromisoformat(when) if isinstance(when, str) else when
                counts[when][label] = int(n)
        return sorted(counts.items())[-days:]

    def facets(self) -> dict[str, list[str]]:
        """The values the filters can take in this log: models, assistants, languages (distinct, sorted)."""
        with self.db.session() as session:
            models = session.scalars(select(ThreadRow.model).distinct().order_by(ThreadRow.model))
            assistants = session.scalars(select(ThreadRow.assistant_id).where(ThreadRow.assistant_id.is_not(None))
                                         .distinct().order_by(ThreadRow.assistant_id))
            return {"models": list(models), "assistants": list(assistants),
                    "languages": self._distinct_languages(session)}

    @staticmethod
    def _distinct_languages(session: Any, most: int = 500) -> list[str]:
        """messages.language's values, in order, one index seek each (the next value above the last), where
        SELECT DISTINCT would read every message: a log has a few languages and many messages."""
        found: list[str] = []
        while len(found) < most:
            following = (select(MessageRow.language).where(MessageRow.language.is_not(None))
                         .order_by(MessageRow.language).limit(1))
            if found:
                following = following.where(MessageRow.language > found[-1])
            value = session.scalar(following)
            if value is None:
                break
            found.append(value)
        return found
