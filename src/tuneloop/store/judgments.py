"""Judges and their verdicts: a named criterion (instruction, judge model, pass rule) and, per logged reply and judge
model, whether it passed, why, and when. A verdict whose ``passed`` is None is unjudged (the judge's answer could not
be read): running the judge again retries it, and skips every reply already judged."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, delete, func, select
from sqlalchemy.exc import IntegrityError

from tuneloop.errors import InputError, JudgeNotFoundError
from tuneloop.store.database import Repository, aware
from tuneloop.store.schema import JudgeRow, MessageRow, VerdictRow, utcnow


@dataclass(frozen=True)
class Judge:
    name: str
    instruction: str
    model: str | None
    rule: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "instruction": self.instruction, "model": self.model, "rule": self.rule,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class Verdict:
    message_id: int
    judge: str
    judge_model: str
    passed: bool | None
    score: float | None
    reason: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "judge": self.judge, "judge_model": self.judge_model,
                "passed": self.passed, "score": self.score, "reason": self.reason,
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Agreement:
    """The replies people rated (up: a positive rating, down: a negative one) that judge has a readable verdict on,
    counted by rating and its newest readable verdict."""

    both_pass: int = 0  # rated up, judged pass
    judge_only: int = 0  # rated down, judged pass
    people_only: int = 0  # rated up, judged fail
    both_fail: int = 0


def _judge(row: JudgeRow) -> Judge:
    return Judge(row.name, row.instruction, row.model, row.rule, aware(row.created_at), aware(row.updated_at))


def _verdict(row: VerdictRow) -> Verdict:
    return Verdict(row.message_id, row.judge, row.judge_model, row.passed, row.score, row.reason,
                   aware(row.created_at))


class Judgments(Repository):
    # Judges

    def save_judge(self, name: str, instruction: str, *, model: str | None, rule: str, replace: bool = False
                   ) -> Judge:
        """Create judge ``name`` (or, with ``replace``, change it: its verdicts stay, by the model that gave them)."""
        with self.db.session(write=True) as session:
            row = session.get(JudgeRow, name)
            now = utcnow()
            if row is not None and not replace:
                raise InputError(f"a judge named {name!r} exists; pick another name, or replace it",
                                 param="name").with_hint("--replace changes it")
            if row is None:
                row = JudgeRow(name=name, created_at=now)
                session.add(row)
            row.instruction, row.model, row.rule, row.updated_at = instruction, model, rule, now
            try:
                session.flush()
            except IntegrityError:  # another process made it at the same moment
                raise InputError(f"a judge named {name!r} exists; pick another name", param="name") from None
            return _judge(row)

    def judge(self, name: str) -> Judge:
        with self.db.session() as session:
            row = session.get(JudgeRow, name)
            if row is None:
                raise JudgeNotFoundError(f"no judge named {name!r} in {self.location}", name).with_hint(
                    "`tuneloop judge list` lists them, `tuneloop judge add` makes one")
            return _judge(row)

    def judges(self) -> list[Judge]:
        with self.db.session() as session:
            return [_judge(r) for r in session.scalars(select(JudgeRow).order_by(JudgeRow.name))]

    def remove_judge(self, name: str) -> None:
        """The judge and its verdicts."""
        self.judge(name)
        with self.db.session(write=True) as session:
            session.execute(delete(VerdictRow).where(VerdictRow.judge == name))
            session.execute(delete(JudgeRow).where(JudgeRow.name == name))

    # Verdicts

    def judged(self, name: str, judge_model: str) -> set[int]:
        """Ids of the replies judge ``name`` has judged with ``judge_model`` (unjudged ones are not among them)."""
        with self.db.session() as session:
            return set(session.scalars(select(VerdictRow.message_id).where(
                VerdictRow.judge == name, VerdictRow.judge_model == judge_model, VerdictRow.passed.is_not(None))))

    def record(self, name: str, judge_model: str, verdicts: Iterable[tuple[int, bool | None, float | None, str | None]]
               ) -> int:
        """Store (message id, passed, score, reason) verdicts in one transaction, replacing earlier ones by the same
        judge and model; a reply deleted meanwhile is skipped. Returns how many were stored."""
        stored = 0
        with self.db.session(write=True) as session:
            for message_id, passed, score, reason in verdicts:
                if session.get(MessageRow, message_id) is None:
                    continue
                row = session.scalars(select(VerdictRow).where(
                    VerdictRow.message_id == message_id, VerdictRow.judge == name,
                    VerdictRow.judge_model == judge_model)).first()
                if row is None:
                    row = VerdictRow(message_id=message_id, judge=name, judge_model=judge_model)
                    session.add(row)
                row.passed, row.score, row.reason, row.created_at = passed, score, reason, utcnow()
                stored += 1
        return stored

    def verdicts(self, name: str, judge_model: str | None = None) -> list[Verdict]:
        """Judge ``name``'s verdicts (by ``judge_model`` only, when given), oldest reply first."""
        statement = select(VerdictRow).where(VerdictRow.judge == name).order_by(VerdictRow.message_id,
                                                                                 VerdictRow.judge_model)
        if judge_model is not None:
            statement = statement.where(VerdictRow.judge_model == judge_model)
        with self.db.session() as session:
            return [_verdict(r) for r in session.scalars(statement)]

    def _latest(self, name: str, judge_model: str | None) -> Select[Any]:
        """Each rated reply's newest readable verdict by judge ``name`` (``judge_model`` only, when given) with
        whether people rated it up: what :func:`tuneloop.curation.judges.latest_verdicts` keeps (the newest
        ``created_at``, then the last judge model in the database's order), of the replies rated up or down. The rated
        replies lead (an index holds them; far fewer than the verdicts, as a rule), each verdict found by its index."""
        rated = select(MessageRow.id).where(MessageRow.feedback.is_not(None), MessageRow.feedback != 0)
        rank = func.row_number().over(partition_by=VerdictRow.message_id,
                                      order_by=(VerdictRow.created_at.desc(), VerdictRow.judge_model.desc()))
        where = [VerdictRow.judge == name, VerdictRow.message_id.in_(rated), VerdictRow.passed.is_not(None)]
        if judge_model is not None:
            where.append(VerdictRow.judge_model == judge_model)
        ranked = select(VerdictRow.id, VerdictRow.message_id, VerdictRow.passed, rank.label("rank")) \
            .where(*where).subquery()
        up = case((MessageRow.feedback > 0, True), else_=False).label("up")
        return (select(ranked.c.id, ranked.c.message_id, ranked.c.passed, up)
                .join(MessageRow, MessageRow.id == ranked.c.message_id).where(ranked.c.rank == 1))

    def agreement(self, name: str, judge_model: str | None = None) -> Agreement:
        """How judge ``name``'s newest readable verdicts (by ``judge_model`` only, when given) meet people's
        ratings, counted in the database (the rated replies are never read)."""
        latest = self._latest(name, judge_model).subquery()
        statement = select(latest.c.up, latest.c.passed, func.count()).group_by(latest.c.up, latest.c.passed)
        counts: dict[tuple[bool, bool], int] = {}
        with self.db.session() as session:
            for up, passed, n in session.execute(statement):
                counts[bool(up), bool(passed)] = counts.get((bool(up), bool(passed)), 0) + n
        return Agreement(both_pass=counts.get((True, True), 0), judge_only=counts.get((False, True), 0),
                         people_only=counts.get((True, False), 0), both_fail=counts.get((False, False), 0))

    def disagreements(self, name: str, judge_model: str | None = None, limit: int | None = None) -> list[Verdict]:
        """The newest readable verdicts of judge ``name`` (by ``judge_model`` only, when given) that contradict the
        rating (up or down) people gave the reply, oldest reply first (the first ``limit`` of them, when given)."""
        latest = self._latest(name, judge_model).subquery()
        statement = (select(VerdictRow).join(latest, latest.c.id == VerdictRow.id)
                     .where(latest.c.up != latest.c.passed).order_by(VerdictRow.message_id))
        if limit is not None:
            statement = statement.limit(limit)
        with self.db.session() as session:
            return [_verdict(r) for r in session.scalars(statement)]

    def recent(self, names: Iterable[str] | None = None, limit: int = 20) -> list[Verdict]:
        """The ``limit`` newest verdicts (of judges ``names`` only, when given), unreadable ones included, newest
        first."""
        statement = select(VerdictRow).order_by(VerdictRow.created_at.desc(), VerdictRow.message_id.desc(),
                                                VerdictRow.id.desc()).limit(max(0, limit))
        if names is not None:
            statement = statement.where(VerdictRow.judge.in_(list(names)))
        with self.db.session() as session:
            return [_verdict(r) for r in session.scalars(statement)]

    def verdicts_of(self, message_ids: Iterable[int]) -> dict[int, list[Verdict]]:
        """Every verdict on each of ``message_ids``."""
        ids = list(message_ids)
        found: dict[int, list[Verdict]] = {}
        with self.db.session() as session:
            for start in range(0, len(ids), 500):
                rows = session.scalars(select(VerdictRow).where(VerdictRow.message_id.in_(ids[start:start + 500]))
                                       .order_by(VerdictRow.id))
                for row in rows:
                    found.setdefault(row.message_id, []).append(_verdict(row))
        return found
