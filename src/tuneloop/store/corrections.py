"""Corrections: the reply someone wrote for a logged assistant message, kept beside the original (never over it).

Each correction is a row of its own, with when and from where it came; the newest one is the message's correction.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneloop.errors import InputError, MessageNotFoundError, NotAReplyError
from tuneloop.store.database import Repository, row_id_in_range
from tuneloop.store.records import Correction, correction_from_row
from tuneloop.store.schema import CorrectionRow, MessageRow, utcnow

SOURCES = ("cli", "library", "http", "ui")


def reply_row(session: Session, message_id: int, location: str, doing: str) -> MessageRow:
    """The assistant message ``message_id``, or MessageNotFoundError saying what ``doing`` needs."""
    row = session.get(MessageRow, message_id) if row_id_in_range(message_id) else None
    if row is None:
        raise MessageNotFoundError(f"no message #{message_id} in {location}", str(message_id)).with_hint(
            "`tuneloop logs show THREAD` lists a thread's messages with their numbers")
    if row.role != "assistant":
        raise NotAReplyError(f"message #{message_id} is a {row.role} turn; {doing} needs an assistant reply",
                             param="message_id").with_hint(
            "`tuneloop logs show THREAD` lists a thread's messages with their numbers")
    return row


class Corrections(Repository):
    def add(self, message_id: int, content: str, *, source: str = "library") -> Correction:
        """Write the right reply for assistant message ``message_id``; the original stays as it was."""
        if not isinstance(content, str) or not content.strip():
            raise InputError("a correction needs text: write the reply the model should have given", param="content")
        if source not in SOURCES:
            raise InputError(f"unknown correction source {source!r}; use one of {', '.join(SOURCES)}", param="source")
        with self.db.session(write=True) as session:
            reply_row(session, message_id, self.location, "a correction")
            row = CorrectionRow(message_id=message_id, content=content, source=source, created_at=utcnow())
            session.add(row)
            session.flush()
            return correction_from_row(row)

    def history(self, message_id: int) -> list[Correction]:
        """Every correction of the message, oldest first (the last one is in force)."""
        with self.db.session() as session:
            reply_row(session, message_id, self.location, "a correction")
            rows = session.scalars(select(CorrectionRow).where(CorrectionRow.message_id == message_id)
                                   .order_by(CorrectionRow.id))
            return [correction_from_row(r) for r in rows]


def latest_in(session: Session, message_ids: Iterable[int]) -> dict[int, Correction]:
    """The correction in force (the newest) of each of ``message_ids`` that has one."""
    ids = list(message_ids)
    found: dict[int, Correction] = {}
    for start in range(0, len(ids), 500):  # bound the IN list
        rows = session.scalars(select(CorrectionRow).where(CorrectionRow.message_id.in_(ids[start:start + 500]))
                               .order_by(CorrectionRow.id))
        for row in rows:
            found[row.message_id] = correction_from_row(row)
    return found
