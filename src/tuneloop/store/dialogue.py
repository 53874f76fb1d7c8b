"""The dialogue store: threads and their messages, each with the sentiment it was handed, in the shared database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tuneloop.errors import InputError, MessageNotFoundError, ThreadNotFoundError
from tuneloop.store.corrections import latest_in, reply_row
from tuneloop.store.database import Database, Repository, row_id_in_range
from tuneloop.store.records import TITLE_LENGTH, Exchange, Label, Message, Thread, language_of
from tuneloop.store.schema import AssistantRow, MessageRow, ThreadRow, utcnow
from tuneloop.store.search import SearchHit, search

__all__ = ["TITLE_LENGTH", "DialogueStore", "Exchange", "Label", "Message", "Thread", "new_thread_id"]


def new_thread_id() -> str:
    return f"thread_{secrets.token_hex(12)}"


class DialogueStore(Repository):
    """Threads and their messages. ``DialogueStore(url)`` opens (and migrates) the database at ``url``; given a
    :class:`Database` or another repository, it shares that one."""

    def __init__(self, db: str | Database | Repository, *, busy_timeout: float = 5.0) -> None:
        super().__init__(Database(db, busy_timeout=busy_timeout) if isinstance(db, str) else db)

    def check_writable(self) -> None:
        """Fail now, with StoreLockedError, if another process holds the write lock too long."""
        self.db.check_writable()

    def close(self) -> None:
        self.db.close()

    def _no_thread(self, thread_id: str) -> ThreadNotFoundError:
        return ThreadNotFoundError(f"no thread {thread_id!r} in {self.location}", thread_id).with_hint(
            "`tuneloop logs list` lists the threads")

    # Threads

    def create_thread(
        self,
        *,
        model: str,
        assistant: dict[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        """Create an empty thread. ``assistant`` (the definition in use) is recorded beside it."""
        with self.db.session(write=True) as session:
            row = self._insert_thread(session, thread_id or new_thread_id(), model, assistant)
            return Thread.from_row(row, 0)

    def _insert_thread(
        self, session: Session, thread_id: str, model: str, assistant: dict[str, Any] | None
    ) -> ThreadRow:
        now = utcnow()
        if assistant is not None:
            session.merge(
                AssistantRow(
                    id=assistant["id"],
                    name=assistant.get("name") or assistant["id"],
                    model=assistant.get("model"),
                    instructions=assistant.get("instructions"),
                    temperature=float(assistant.get("temperature") or 0.0),
                    updated_at=now,
                )
            )
        row = ThreadRow(
            id=thread_id,
            assistant_id=assistant["id"] if assistant else None,
            model=model,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def get_thread(self, thread_id: str) -> Thread:
        with self.db.session() as session:
            row = session.get(ThreadRow, thread_id)
            if row is None:
                raise self._no_thread(thread_id)
            return Thread.from_row(row)

    def latest_thread(self) -> Thread | None:
        with self.db.session() as session:
            row = session.scalars(select(ThreadRow).order_by(ThreadRow.updated_at.desc()).limit(1)).first()
            return Thread.from_row(row) if row else None

    def list_threads(self, limit: int = 20, offset: int = 0, *, kind: str | None = None,
                     metadata: dict[str, str] | None = None, end_user: str | None = None) -> list[Thread]:
        """Threads, most recently active first; only those of ``kind`` (``chat`` for tuneloop's own), with every
        ``metadata`` pair and of ``end_user``, when given (filtered by the database)."""
        counts = (
            select(MessageRow.thread_id, func.count(MessageRow.id).label("n"))
            .group_by(MessageRow.thread_id)
            .subquery()
        )
        query = (
            select(ThreadRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.thread_id == ThreadRow.id)
            .order_by(ThreadRow.updated_at.desc(), ThreadRow.id)
            .limit(limit)
            .offset(offset)
        )
        if kind is not None:
            query = query.where(ThreadRow.kind.is_(None) if kind == "chat" else ThreadRow.kind == kind)
        for key, value in (metadata or {}).items():
            query = query.where(ThreadRow.metadata_[key].as_string() == value)
        if end_user is not None:
            query = query.where(ThreadRow.end_user == end_user)
        with self.db.session() as session:
            return [Thread.from_row(row, int(n)) for row, n in session.execute(query)]

    # Messages

    def messages(self, thread_id: str) -> list[Message]:
        with self.db.session() as session:
            if session.get(ThreadRow, thread_id) is None:
                raise self._no_thread(thread_id)
            rows = list(session.scalars(
                select(MessageRow).where(MessageRow.thread_id == thread_id).order_by(MessageRow.id)
            ))
            corrections = latest_in(session, [r.id for r in rows if r.role == "assistant"])
            return [Message.from_row(row, corrections.get(row.id)) for row in rows]

    def append_exchange(
        self,
        thread_id: str,
        user_content: str,
        assistant_content: str,
        *,
        model: str,
        system_instruction: str | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        latency_ms: int | None = None,
        finish_reason: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        create: bool = False,
        assistant: dict[str, Any] | None = None,
        user_sentiment: Label,
        reply_sentiment: Label,
        system_sentiment: Label | None = None,
    ) -> Exchange:
        """Log one user turn and the reply in one short transaction, whatever the thread's length.

        The user turn's sentiment is also recorded as the reaction to the thread's previous reply;
        a system instruction different from the one in force is logged as a system message first.
        With ``create``, a thread that does not exist yet is created in the same transaction. The sentiments are
        computed by the caller (``system_sentiment`` is needed when ``system_instruction`` changes).
        """
        now = utcnow()
        with self.db.session(write=True) as session:
            thread = session.get(ThreadRow, thread_id)
            if thread is None and create:
                thread = self._insert_thread(session, thread_id, model, assistant)
            if thread is None:
                raise self._no_thread(thread_id)
            last = session.scalars(
                select(MessageRow)
                .where(MessageRow.thread_id == thread_id)
                .order_by(MessageRow.id.desc())
                .limit(1)
            ).first()
            if last is not None and last.role == "assistant":
                last.reaction_label = user_sentiment.label
                last.reaction_score = user_sentiment.score
            if system_instruction and system_instruction != thread.system_instruction:
                if system_sentiment is None:
                    raise ValueError("a new system instruction is logged with its sentiment: pass system_sentiment")
                session.add(_labelled_row(thread_id, "system", system_instruction, system_sentiment, now))
                thread.system_instruction = system_instruction
            user_row = _labelled_row(thread_id, "user", user_content, user_sentiment, now, attachments=attachments)
            reply_row = _labelled_row(thread_id, "assistant", assistant_content, reply_sentiment, now, model=model,
                                      tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=latency_ms,
                                      finish_reason=finish_reason)
            session.add_all([user_row, reply_row])
            if thread.title is None:
                thread.title = " ".join(user_content.split())[:TITLE_LENGTH]
            thread.model = model
            thread.updated_at = now
            session.flush()
            return Exchange(Message.from_row(user_row), Message.from_row(reply_row))

    def set_feedback(self, message_id: int, value: int, note: str | None = None) -> Message:
        """Rate an assistant message up (+1) or down (-1), with an optional ``note`` saying why; 0 clears the rating
        (and its note)."""
        if value not in (-1, 0, 1):
            raise InputError(f"a rating is 1 (up), -1 (down) or 0 (clear), not {value!r}", param="rating")
        if note is not None and not isinstance(note, str):
            raise InputError("a rating's note is text", param="note")
        with self.db.session(write=True) as session:
            row = reply_row(session, message_id, self.location, "a rating")
            row.feedback = value or None
            row.feedback_note = ((note or "").strip() or None) if value else None
            session.flush()
            return Message.from_row(row, latest_in(session, [row.id]).get(row.id))

    def set_excluded(self, message_id: int, excluded: bool) -> Message:
        """Leave an assistant reply out of training (``excluded``), or let it back in: `data build` and
        ``dynamic_train`` never select an excluded reply, nor make it either side of a DPO pair."""
        with self.db.session(write=True) as session:
            row = reply_row(session, message_id, self.location, "leaving out of training")
            row.excluded = bool(excluded)
            session.flush()
            return Message.from_row(row, latest_in(session, [row.id]).get(row.id))

    def get_message(self, message_id: int) -> Message:
        """One logged message, with its correction if it has one."""
        with self.db.session() as session:
            row = session.get(MessageRow, message_id) if row_id_in_range(message_id) else None
            if row is None:
                raise MessageNotFoundError(f"no message #{message_id} in {self.location}", str(message_id)).with_hint(
                    "`tuneloop logs show THREAD` lists a thread's messages with their numbers")
            return Message.from_row(row, latest_in(session, [row.id]).get(row.id))

    # Relabelling (``tuneloop logs rescore``)

    def count_messages(self, since: datetime | None = None) -> int:
        statement = select(func.count(MessageRow.id))
        if since is not None:
            statement = statement.where(MessageRow.created_at >= since)
        with self.db.session() as session:
            return int(session.scalar(statement) or 0)

    def message_batches(self, since: datetime | None = None, batch: int = 500) -> Iterator[list[tuple[int, str]]]:
        """(id, content) of every message (written at or after ``since``), in id order, ``batch`` at a time; each
        batch is read in its own short transaction, so writers are never held up."""
        after = 0
        while True:
            statement = select(MessageRow.id, MessageRow.content).where(MessageRow.id > after)
            if since is not None:
                statement = statement.where(MessageRow.created_at >= since)
            with self.db.session() as session:
                rows = [(int(i), c) for i, c in session.execute(statement.order_by(MessageRow.id).limit(batch))]
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def relabel(self, labels: list[tuple[int, Label]]) -> int:
        """New labels for messages (id, label), in one transaction; a relabelled user turn also becomes the reaction
        of the reply just before it in its thread, as when it was logged. Returns how many labels changed."""
        changed = 0
        with self.db.session(write=True) as session:
            for message_id, label in labels:
                row = session.get(MessageRow, message_id)
                if row is None:  # deleted meanwhile
                    continue
                language = language_of(label)
                if (row.sentiment_label, row.sentiment_score, row.language) != (label.label, label.score, language):
                    changed += 1
                row.sentiment_label, row.sentiment_score, row.language = label.label, label.score, language
                if row.role != "user":
                    continue
                before = session.scalars(select(MessageRow).where(
                    MessageRow.thread_id == row.thread_id, MessageRow.id < row.id).order_by(MessageRow.id.desc())
                    .limit(1)).first()
                if before is not None and before.role == "assistant":
                    before.reaction_label, before.reaction_score = label.label, label.score
        return changed

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages holding every word of ``query`` (as word prefixes), best match first (full-text search)."""
        return search(self.db, query, limit)

    def export(self, thread_ids: list[str] | None = None) -> Iterator[tuple[Thread, list[Message]]]:
        """Every thread (or those named) with its messages, oldest thread first."""
        if thread_ids is None:
            with self.db.session() as session:
                thread_ids = list(session.scalars(select(ThreadRow.id).order_by(ThreadRow.created_at)))
        for thread_id in thread_ids:
            yield self.get_thread(thread_id), self.messages(thread_id)


def _labelled_row(thread_id: str, role: str, content: str, label: Label, when: datetime, **fields: Any) -> MessageRow:
    """A message's row with the label computed for it (its sentiment and language)."""
    return MessageRow(thread_id=thread_id, role=role, content=content, sentiment_label=label.label,
                      sentiment_score=label.score, language=language_of(label), created_at=when, **fields)
