"""Threads that arrive over OpenAI's stateful HTTP APIs: conversations and their items, response chains and stored
chat completions. They are ordinary threads and messages of the dialogue store (so `tuneloop logs`, sentiment,
reactions, ratings and `data build --from-dialogues` see them); this module adds what those APIs need on top: a
thread kind and metadata, items with public ids (``msg_…``), several messages appended at once, paging."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from tuneloop.errors import ItemNotFoundError, ThreadNotFoundError
from tuneloop.store.database import Repository
from tuneloop.store.records import TITLE_LENGTH, Label, Message, Thread, language_of
from tuneloop.store.schema import MessageRow, ThreadRow, utcnow

# conversation, response (a previous_response_id chain), chat.completion (stored with store: true), server (a chat
# completion the server logged without storing it: an app's traffic, see the server_log setting).
KINDS = ("conversation", "response", "chat.completion", "server")


def new_item_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


@dataclass(frozen=True)
class NewMessage:
    """A message to log: ``role`` is system, user, assistant or tool (developer is logged as system). ``sentiment`` is
    computed above the store (``tuneloop.curation.sentiment.labelled``) before the message is handed down."""

    role: str
    content: str
    item_id: str | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_ms: int | None = None
    finish_reason: str | None = None
    metadata: dict[str, str] | None = None
    attachments: list[dict[str, Any]] | None = field(default=None)
    feedback: int | None = None  # +1 / -1: rated when it is logged (a rating in the request's metadata)
    sentiment: Label | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant message's function calls
    tool_call_id: str | None = None  # the call a tool message answers
    output_spec: dict[str, Any] | None = None  # on a reply: the tools, tool_choice, response_format asked for


class Conversations(Repository):
    """Threads of a kind (``KINDS``) with metadata, and their messages as items."""

    def _row(self, session: Any, thread_id: str, kind: str | None) -> ThreadRow:
        """The thread's row; ThreadNotFoundError when there is none (of ``kind``, when given)."""
        row = session.get(ThreadRow, thread_id)
        if row is None or (kind is not None and row.kind != kind):
            raise ThreadNotFoundError(f"no {kind or 'thread'} {thread_id!r} in {self.location}", thread_id, kind=kind)
        return row

    def create(self, thread_id: str, *, kind: str, model: str, metadata: dict[str, str] | None = None,
               messages: list[NewMessage] | None = None, created_at: datetime | None = None
               ) -> tuple[Thread, list[Message]]:
        """A new thread of ``kind`` with its first messages, in one transaction (``created_at``: when it was
        first said, for imported history; default now)."""
        with self.db.session(write=True) as session:
            return self.create_in(session, thread_id, kind=kind, model=model, metadata=metadata,
                                  messages=messages, created_at=created_at)

    def create_in(self, session: Any, thread_id: str, *, kind: str, model: str,
                  metadata: dict[str, str] | None = None, messages: list[NewMessage] | None = None,
                  created_at: datetime | None = None, system_instruction: str | None = None,
                  end_user: str | None = None) -> tuple[Thread, list[Message]]:
        """``create`` inside the caller's transaction (``end_user``: who the app served, as it named them)."""
        assert kind in KINDS, kind
        now = created_at or utcnow()
        row = ThreadRow(id=thread_id, model=model, kind=kind, metadata_=metadata or None, created_at=now,
                        updated_at=now, end_user=end_user)
        session.add(row)
        session.flush()
        added = self._append(session, row, messages or [], now)
        if system_instruction is not None:
            row.system_instruction = system_instruction
        return Thread.from_row(row, len(added)), added

    def get(self, thread_id: str, kind: str | None = None) -> Thread:
        with self.db.session() as session:
            row = self._row(session, thread_id, kind)
            return Thread.from_row(row)

    def update_metadata(self, thread_id: str, kind: str, metadata: dict[str, str] | None) -> Thread:
        with self.db.session(write=True) as session:
            row = self._row(session, thread_id, kind)
            row.metadata_ = metadata or None
            session.flush()
            return Thread.from_row(row)

    def delete(self, thread_id: str, kind: str) -> None:
        """The thread, its messages and the stored objects that point at it."""
        with self.db.session(write=True) as session:
            row = self._row(session, thread_id, kind)
            session.execute(delete(MessageRow).where(MessageRow.thread_id == thread_id))
            session.delete(row)

    def append(self, thread_id: str, messages: list[NewMessage], *, kind: str | None = None) -> list[Message]:
        """Log ``messages`` at the end of the thread in one transaction. A user message after an assistant message
        records its sentiment as that reply's reaction, as every exchange does."""
        with self.db.session(write=True) as session:
            return self.append_in(session, thread_id, messages, kind=kind)

    def append_in(self, session: Any, thread_id: str, messages: list[NewMessage], *, kind: str | None = None,
                  system_instruction: str | None = None) -> list[Message]:
        """``append`` inside the caller's transaction; ``system_instruction`` (when given) is then in force."""
        row = self._row(session, thread_id, kind)
        added = self._append(session, row, messages, utcnow())
        if system_instruction is not None:
            row.system_instruction = system_instruction
        return added

    def _append(self, session: Any, thread: ThreadRow, messages: list[NewMessage], now: datetime
                ) -> list[Message]:
        last = session.scalars(select(MessageRow).where(MessageRow.thread_id == thread.id)
                               .order_by(MessageRow.id.desc()).limit(1)).first()
        rows = []
        for new in messages:
            role = "system" if new.role == "developer" else new.role
            said = new.sentiment
            if said is None:
                raise ValueError("a message is logged with its sentiment: label it first "
                                 "(tuneloop.curation.labels.labelled)")
            if role == "user" and last is not None and last.role == "assistant":
                last.reaction_label, last.reaction_score = said.label, said.score
            row = MessageRow(thread_id=thread.id, role=role, content=new.content, item_id=new.item_id,
                             feedback=new.feedback or None,
                             model=new.model, tokens_in=new.tokens_in, tokens_out=new.tokens_out,
                             latency_ms=new.latency_ms, finish_reason=new.finish_reason, attachments=new.attachments,
                             metadata_=new.metadata, sentiment_label=said.label, sentiment_score=said.score,
                             language=language_of(said), tool_calls=new.tool_calls or None,
                             tool_call_id=new.tool_call_id, output_spec=new.output_spec or None, created_at=now)
            session.add(row)
            rows.append(row)
            last = row
            if role == "system":
                thread.system_instruction = new.content
            elif role == "user" and thread.title is None:
                thread.title = " ".join(new.content.split())[:TITLE_LENGTH]
            if role == "assistant" and new.model:
                thread.model = new.model
        thread.updated_at = now
        session.flush()
        return [Message.from_row(r) for r in rows]

    def messages(self, thread_id: str, ids: list[int] | None = None) -> list[Message]:
        """The thread's messages in order (only those with ``ids`` when given)."""
        statement = select(MessageRow).where(MessageRow.thread_id == thread_id).order_by(MessageRow.id)
        if ids is not None:
            statement = statement.where(MessageRow.id.in_(ids))
        with self.db.session() as session:
            return [Message.from_row(r) for r in session.scalars(statement)]

    def by_ids(self, ids: list[int]) -> dict[int, Message]:
        """Messages by their ids, wherever they are, in one read."""
        with self.db.session() as session:
            rows = session.scalars(select(MessageRow).where(MessageRow.id.in_(ids)))
            return {r.id: Message.from_row(r) for r in rows}

    def last_id(self, thread_id: str) -> int | None:
        """The id of the thread's last message (None when it has none)."""
        with self.db.session() as session:
            return session.scalar(select(func.max(MessageRow.id)).where(MessageRow.thread_id == thread_id))

    def item(self, thread_id: str, item_id: str) -> Message:
        with self.db.session() as session:
            row = session.scalars(select(MessageRow).where(MessageRow.thread_id == thread_id,
                                                           MessageRow.item_id == item_id)).first()
            if row is None:
                raise ItemNotFoundError(f"no item {item_id!r} in {thread_id!r}", item_id, within=thread_id)
            return Message.from_row(row)

    def delete_item(self, thread_id: str, item_id: str) -> None:
        with self.db.session(write=True) as session:
            row = session.scalars(select(MessageRow).where(MessageRow.thread_id == thread_id,
                                                           MessageRow.item_id == item_id)).first()
            if row is None:
                raise ItemNotFoundError(f"no item {item_id!r} in {thread_id!r}", item_id, within=thread_id)
            session.delete(row)

    def find_item(self, item_id: str) -> Message | None:
        """The message with public id ``item_id``, wherever it is."""
        with self.db.session() as session:
            row = session.scalars(select(MessageRow).where(MessageRow.item_id == item_id)).first()
            return Message.from_row(row) if row else None

    def delete_messages(self, ids: list[int]) -> None:
        with self.db.session(write=True) as session:
            session.execute(delete(MessageRow).where(MessageRow.id.in_(ids)))
