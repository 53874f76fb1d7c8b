"""Stored responses and chat completions: the object as the API returned it, beside the messages it logged in the
dialogue store (``message_ids``). Listing filters by model and metadata and pages by id, in creation order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from tuneloop.errors import ObjectNotFoundError
from tuneloop.store.database import Repository, aware
from tuneloop.store.schema import ApiObjectRow, utcnow


@dataclass(frozen=True)
class ApiObject:
    id: str
    object: str
    thread_id: str | None
    model: str
    metadata: dict[str, str] | None
    body: dict[str, Any]
    message_ids: list[int]
    created_at: datetime

    @classmethod
    def from_row(cls, row: ApiObjectRow) -> ApiObject:
        return cls(id=row.id, object=row.object, thread_id=row.thread_id, model=row.model, metadata=row.metadata_,
                   body=row.body, message_ids=list(row.message_ids), created_at=aware(row.created_at))


class ApiObjects(Repository):
    """Stored responses and chat completions, as the API returned them."""

    def put(self, ident: str, *, object_: str, thread_id: str | None, model: str, metadata: dict[str, str] | None,
            body: dict[str, Any], message_ids: list[int], created_at: datetime | None = None) -> ApiObject:
        with self.db.session(write=True) as session:
            return self.put_in(session, ident, object_=object_, thread_id=thread_id, model=model, metadata=metadata,
                               body=body, message_ids=message_ids, created_at=created_at)

    @staticmethod
    def put_in(session: Any, ident: str, *, object_: str, thread_id: str | None, model: str,
               metadata: dict[str, str] | None, body: dict[str, Any], message_ids: list[int],
               created_at: datetime | None = None) -> ApiObject:
        """``put`` inside the caller's transaction."""
        row = ApiObjectRow(id=ident, object=object_, thread_id=thread_id, model=model, metadata_=metadata or None,
                           body=body, message_ids=message_ids, created_at=created_at or utcnow())
        row = session.merge(row)
        session.flush()
        return ApiObject.from_row(row)

    def exists(self, ident: str) -> bool:
        with self.db.session() as session:
            return session.get(ApiObjectRow, ident) is not None

    def _row(self, session: Any, ident: str, object_: str) -> ApiObjectRow:
        row = session.get(ApiObjectRow, ident)
        if row is None or row.object != object_:
            raise ObjectNotFoundError(f"no stored {object_} {ident!r} in {self.location}", ident, kind=object_)
        return row

    def get(self, ident: str, object_: str) -> ApiObject:
        with self.db.session() as session:
            row = self._row(session, ident, object_)
            return ApiObject.from_row(row)

    def chain(self, ident: str, link: str = "previous_response_id") -> list[ApiObject]:
        """``ident`` and the objects its body's ``link`` leads to, newest first, in one read (it stops at the first
        missing one); ObjectNotFoundError when ``ident`` itself is missing."""
        found: list[ApiObject] = []
        seen: set[str] = set()
        with self.db.session() as session:
            next_id: str | None = ident
            while next_id and next_id not in seen:
                row = session.get(ApiObjectRow, next_id)
                if row is None:
                    break
                seen.add(next_id)
                found.append(ApiObject.from_row(row))
                next_id = row.body.get(link)
        if not found:
            raise ObjectNotFoundError(f"no stored object {ident!r} in {self.location}", ident)
        return found

    def update(self, ident: str, object_: str, *, metadata: dict[str, str] | None,
               body: dict[str, Any] | None = None) -> ApiObject:
        with self.db.session(write=True) as session:
            row = self._row(session, ident, object_)
            row.metadata_ = metadata or None
            if body is not None:
                row.body = body
            session.flush()
            return ApiObject.from_row(row)

    def delete(self, ident: str, object_: str) -> ApiObject:
        with self.db.session(write=True) as session:
            row = self._row(session, ident, object_)
            gone = ApiObject.from_row(row)
            session.delete(row)
            return gone

    def list(self, object_: str, *, model: str | None = None, metadata: dict[str, str] | None = None,
             thread_id: str | None = None, after: str | None = None, limit: int | None = None,
             newest_first: bool = False) -> tuple[list[ApiObject], bool]:
        """Stored objects of a kind in creation order (or newest first), with ``model`` and every ``metadata`` pair
        when given (filtered by the database), the ``limit`` after the one with id ``after``; and whether more
        follow. ``after`` naming no such object raises ObjectNotFoundError."""
        order = (ApiObjectRow.created_at.desc(), ApiObjectRow.id.desc()) if newest_first else (
            ApiObjectRow.created_at, ApiObjectRow.id)
        statement = select(ApiObjectRow).where(ApiObjectRow.object == object_).order_by(*order)
        if model:
            statement = statement.where(ApiObjectRow.model == model)
        if thread_id:
            statement = statement.where(ApiObjectRow.thread_id == thread_id)
        for key, value in (metadata or {}).items():
            statement = statement.where(ApiObjectRow.metadata_[key].as_string() == value)
        with self.db.session() as session:
            if after is not None:
                anchor = session.get(ApiObjectRow, after)
                if anchor is None or anchor.object != object_:
                    raise ObjectNotFoundError(f"no stored {object_} {after!r} to list after", after, kind=object_,
                                              param="after")
                when = anchor.created_at
                if newest_first:
                    statement = statement.where(or_(ApiObjectRow.created_at < when, and_(
                        ApiObjectRow.created_at == when, ApiObjectRow.id < anchor.id)))
                else:
                    statement = statement.where(or_(ApiObjectRow.created_at > when, and_(
                        ApiObjectRow.created_at == when, ApiObjectRow.id > anchor.id)))
            if limit is not None:
                statement = statement.limit(limit + 1)
            found = [ApiObject.from_row(r) for r in session.scalars(statement)]
        if limit is not None and len(found) > limit:
            return found[:limit], True
        return found, False
