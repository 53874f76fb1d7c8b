"""Base models registered with ``tuneloop models add``: an id and where its weights are, shared by every process
and worker over the same store. What a model is (and whether it loads) is ``tuneloop.models``' business."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tuneloop.store.database import Repository, aware
from tuneloop.store.schema import BaseModelRow


@dataclass(frozen=True)
class RegisteredModel:
    id: str
    path: str
    added_at: datetime


class BaseModels(Repository):
    def all(self) -> list[RegisteredModel]:
        """Every registration, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(select(BaseModelRow).order_by(BaseModelRow.added_at))
            return [RegisteredModel(r.id, r.path, aware(r.added_at)) for r in rows]

    def put(self, model_id: str, path: str, added_at: datetime) -> None:
        """Register ``model_id`` (again: the new path wins)."""
        with self.db.session(write=True) as session:
            session.merge(BaseModelRow(id=model_id, path=path, added_at=added_at))

    def remove(self, model_id: str) -> None:
        """Forget ``model_id``; nothing happens when it is not registered."""
        with self.db.session(write=True) as session:
            row = session.get(BaseModelRow, model_id)
            if row is not None:
                session.delete(row)
