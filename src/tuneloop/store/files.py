"""Files uploaded for fine-tuning (training and validation data) and the result files jobs write: their metadata
rows; the bytes live under ``$TUNELOOP_HOME/files`` (``tuneloop.util.home.files_dir``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tuneloop.errors import FileNotFoundInStoreError
from tuneloop.store.database import Repository, aware, epoch_seconds, new_id
from tuneloop.store.schema import FileRow, utcnow


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    path: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: FileRow) -> StoredFile:
        return cls(row.id, row.filename, row.purpose, row.bytes, row.path, aware(row.created_at))

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": epoch_seconds(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }



class FileStore(Repository):
    """Files by id; every write is one short transaction."""

    def add(self, *, filename: str, purpose: str, size: int, path: str, file_id: str | None = None) -> StoredFile:
        with self.db.session(write=True) as session:
            row = FileRow(id=file_id or new_id("file"), filename=filename, purpose=purpose, bytes=size, path=path,
                          created_at=utcnow())
            session.add(row)
            session.flush()
            return StoredFile.from_row(row)

    def get(self, file_id: str) -> StoredFile:
        with self.db.session() as session:
            row = session.get(FileRow, file_id)
            if row is None:
                raise FileNotFoundInStoreError(f"no file {file_id!r} in {self.location}", file_id)
            return StoredFile.from_row(row)

    def list(self, purpose: str | None = None) -> list[StoredFile]:
        statement = select(FileRow).order_by(FileRow.created_at.desc())
        if purpose:
            statement = statement.where(FileRow.purpose == purpose)
        with self.db.session() as session:
            return [StoredFile.from_row(r) for r in session.scalars(statement)]

    def delete(self, file_id: str) -> StoredFile:
        with self.db.session(write=True) as session:
            row = session.get(FileRow, file_id)
            if row is None:
                raise FileNotFoundInStoreError(f"no file {file_id!r} in {self.location}", file_id)
            stored = StoredFile.from_row(row)
            session.delete(row)
            return stored
