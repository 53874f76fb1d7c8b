"""Tables of the store (SQLAlchemy 2 declarative). Changes to them go through an Alembic migration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class AssistantRow(Base):
    """The definition an assistant had when a thread last used it (definitions live in a file)."""

    __tablename__ = "assistants"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    model: Mapped[str | None] = mapped_column(String(256))
    instructions: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ThreadRow(Base):
    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_kind_updated", "kind", "updated_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    assistant_id: Mapped[str | None] = mapped_column(String(128), ForeignKey("assistants.id"))
    model: Mapped[str] = mapped_column(String(256))
    title: Mapped[str | None] = mapped_column(String(200))
    # The system instruction in force; each change is also logged as a system message.
    system_instruction: Mapped[str | None] = mapped_column(Text)
    # None: a tuneloop chat; "conversation", "response" (a previous_response_id chain) or "chat.completion" (a
    # stored completion) when it came over OpenAI's HTTP APIs.
    kind: Mapped[str | None] = mapped_column(String(32))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    # Who the app served, as it named them (a chat completion's safety_identifier or user), when the server logged it.
    end_user: Mapped[str | None] = mapped_column(String(256), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_thread_id_id", "thread_id", "id"),
        # The log page's filters (0008): threads with a message in a language, or a rated reply; and the
        # languages the filter offers (an index seek per distinct value).
        Index("ix_messages_language", "language", "thread_id"),
        Index("ix_messages_feedback", "feedback", "thread_id", sqlite_where=text("feedback IS NOT NULL"),
              postgresql_where=text("feedback IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(String(64), ForeignKey("threads.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(256))
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    sentiment_label: Mapped[str] = mapped_column(String(16))  # positive, negative, neutral or unknown
    sentiment_score: Mapped[float] = mapped_column(Float)
    language: Mapped[str | None] = mapped_column(String(16))  # ISO 639-1, as detected; None: undetermined
    # Sentiment of the user's next turn, filled in when that turn arrives (assistant messages only).
    reaction_label: Mapped[str | None] = mapped_column(String(16))
    reaction_score: Mapped[float | None] = mapped_column(Float)
    feedback: Mapped[int | None] = mapped_column(Integer)  # +1 rated up, -1 rated down
    feedback_note: Mapped[str | None] = mapped_column(Text)  # why, in the rater's words
    item_id: Mapped[str | None] = mapped_column(String(64), index=True)  # msg_…: the message as an API item
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)  # the response's, on its reply
    # Function calling: an assistant message's calls (chat completions' tool_calls), the call a tool message answers,
    # and on a reply what its request asked of it (tools, tool_choice, parallel_tool_calls, response_format).
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    tool_call_id: Mapped[str | None] = mapped_column(String(64))
    output_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Left out of training by someone (the dashboard's "exclude"): never selected as an example or a pair's side.
    excluded: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class CorrectionRow(Base):
    """The reply someone wrote for a logged assistant message: kept beside it, never over it (the newest counts)."""

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_message", "message_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Integer, ForeignKey("messages.id", ondelete="CASCADE"))
    content: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))  # cli, library, http, ui
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JudgeRow(Base):
    """A named criterion: the instruction a judge model checks replies against, and the rule that says pass."""

    __tablename__ = "judges"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    instruction: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(256))  # None: the default model
    rule: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VerdictRow(Base):
    """A judge's verdict on one reply, by one judge model; passed None: the judge's answer could not be read."""

    __tablename__ = "verdicts"
    __table_args__ = (
        UniqueConstraint("message_id", "judge", "judge_model", name="uq_verdicts_message_judge_model"),
        Index("ix_verdicts_judge", "judge", "message_id"),
        Index("ix_verdicts_created_at", "created_at"),  # the judges page's recent verdicts
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Integer, ForeignKey("messages.id", ondelete="CASCADE"))
    judge: Mapped[str] = mapped_column(String(128), ForeignKey("judges.name", ondelete="CASCADE"))
    judge_model: Mapped[str] = mapped_column(String(256))
    passed: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileRow(Base):
    """An uploaded or built training file; the bytes live under $TUNELOOP_HOME/files/."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TaskRow(Base):
    """Long work of any kind (a fine-tuning job, a judge run, an eval run…): its lifecycle, taken by one worker at a
    time. What a kind needs beyond it lives in the kind's own table (a fine-tuning job's in ``jobs``, same id)."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_created", "status", "created_at"),
                      Index("ix_tasks_kind_created", "kind", "created_at"))

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # "fine_tune", "judge_run", "eval_run"…
    status: Mapped[str] = mapped_column(String(32))  # queued, running, succeeded, failed, cancelled
    title: Mapped[str | None] = mapped_column(Text)  # what it is, for people: "judge helpful over 100 replies"
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what it was asked to do
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what it produced, once succeeded
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # where a resumed run takes up again
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(256))  # the model it needs (a worker's --models)
    device: Mapped[str | None] = mapped_column(String(16))  # requested: auto (None), cpu, cuda, mps
    quantize: Mapped[str | None] = mapped_column(String(16))  # "4bit" (QLoRA) or None
    worker: Mapped[str | None] = mapped_column(String(256))  # "host:pid" of the worker that took it
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # One-task workers started for it since a worker last took it: those that all ended first fail it.
    spawns: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TaskEventRow(Base):
    """What a task said while it ran (progress, metrics, messages), in order: ``ftevent-ID`` for a fine-tuning job."""

    __tablename__ = "task_events"
    __table_args__ = (Index("ix_task_events_task", "task_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(128), ForeignKey("tasks.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRow(Base):
    """A fine-tuning job, local or remote: OpenAI's fields. Its lifecycle (status, worker, events) is its task's
    (``tasks``, same id)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    backend: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(256))
    method: Mapped[str] = mapped_column(String(16))
    training_file: Mapped[str] = mapped_column(String(128))
    validation_file: Mapped[str | None] = mapped_column(String(128))
    suffix: Mapped[str | None] = mapped_column(String(64))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(256), index=True)
    model_path: Mapped[str | None] = mapped_column(Text)
    trained_tokens: Mapped[int | None] = mapped_column(Integer)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    origin: Mapped[str | None] = mapped_column(String(16))  # "import": copied from a vendor by `tuneloop import`


class ApiObjectRow(Base):
    """A stored response or chat completion: the object as the API returned it, and the messages it logged."""

    __tablename__ = "api_objects"
    __table_args__ = (Index("ix_api_objects_object_created", "object", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    object: Mapped[str] = mapped_column(String(32))  # "response" or "chat.completion"
    thread_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("threads.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    message_ids: Mapped[list[int]] = mapped_column(JSON)  # input messages, then the reply
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BaseModelRow(Base):
    """A base model registered with `tuneloop models add`: an id and where its weights live."""

    __tablename__ = "base_models"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(128), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(256))
    path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalRunRow(Base):
    """An eval run kept for the dashboard: which file, the models' totals (for the list) and every answer graded."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)  # the eval file's name as given (an upload's, or the bundled demo's)
    questions: Mapped[int] = mapped_column(Integer)
    max_tokens: Mapped[int] = mapped_column(Integer)
    summary: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # EvalReport.to_json()["models"]
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # EvalReport.to_json()["items"]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


def schema_head() -> str:
    """The newest migration's revision: migrations are named ``NNNN_what.py`` with revision ``"NNNN"``."""
    versions = Path(__file__).parent / "migrations" / "versions"
    return max(p.name[:4] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
