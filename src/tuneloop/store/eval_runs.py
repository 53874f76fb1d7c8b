"""Eval runs kept for the dashboard: an eval file asked of models side by side (``tuneloop.evals``' report as
JSON), listed newest first with each model's total, and read back whole for the page of one run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from tuneloop.errors import EvalRunNotFoundError
from tuneloop.store.database import Repository, aware
from tuneloop.store.schema import EvalRunRow, utcnow


@dataclass(frozen=True)
class EvalRun:
    id: str
    name: str
    questions: int
    max_tokens: int
    summary: list[dict[str, Any]]  # per model: model, passed, score (0-1), seconds
    created_at: datetime
    items: list[dict[str, Any]] | None = None  # per question: question, expected, grader, answers{model: …}

    @property
    def models(self) -> list[str]:
        return [m["model"] for m in self.summary]


class EvalRuns(Repository):
    def add(self, name: str, report: dict[str, Any], *, max_tokens: int, run_id: str | None = None) -> EvalRun:
        """Keep a run: ``report`` is ``EvalReport.to_json()``. Given ``run_id``, a run already kept under it is
        returned as it is (a task that stopped after keeping its run and runs again keeps it once)."""
        row = EvalRunRow(id=run_id or f"evalrun-{secrets.token_hex(8)}", name=name, questions=int(report["questions"]),
                         max_tokens=max_tokens, summary=report["models"], items=report["items"], created_at=utcnow())
        with self.db.session(write=True) as session:
            if run_id is not None and session.get(EvalRunRow, run_id) is not None:
                return self.get(run_id)
            session.add(row)
        return EvalRun(row.id, name, row.questions, max_tokens, row.summary, row.created_at, row.items)

    def recent(self, limit: int = 50) -> list[EvalRun]:
        """The newest ``limit`` runs, newest first, without their answers."""
        columns = (EvalRunRow.id, EvalRunRow.name, EvalRunRow.questions, EvalRunRow.max_tokens, EvalRunRow.summary,
                   EvalRunRow.created_at)
        with self.db.session() as session:
            rows = session.execute(select(*columns).order_by(EvalRunRow.created_at.desc(), EvalRunRow.id.desc())
                                   .limit(limit)).all()
            return [EvalRun(r.id, r.name, r.questions, r.max_tokens, r.summary, aware(r.created_at)) for r in rows]

    def count(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(EvalRunRow)) or 0

    def get(self, run_id: str) -> EvalRun:
        with self.db.session() as session:
            row = session.get(EvalRunRow, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run has the id {run_id!r}", run_id)
            return EvalRun(row.id, row.name, row.questions, row.max_tokens, row.summary, aware(row.created_at),
                           row.items)
