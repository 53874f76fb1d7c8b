"""One task runner for long work: ``tasks`` (every kind's lifecycle: status, worker, heartbeat, attempts, cancel,
progress, result, resume state) and ``task_events``. A fine-tuning job keeps OpenAI's fields in ``jobs`` under its
task's id; its lifecycle columns and ``job_events`` move to the task (event ids kept: ``ftevent-ID`` stay valid).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

LIFECYCLE = ("status", "error", "pid", "heartbeat_at", "cancel_requested", "progress", "created_at", "finished_at",
             "device", "quantize", "worker", "attempts", "started_at")
CHECKPOINT_COLUMNS = "id, job_id, step, metrics, fine_tuned_model_checkpoint, path, created_at"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("device", sa.String(16), nullable=True),
        sa.Column("quantize", sa.String(16), nullable=True),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("spawns", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tasks_status_created", "tasks", ["status", "created_at"])
    op.create_index("ix_tasks_kind_created", "tasks", ["kind", "created_at"])
    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(128), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_task_events_task", "task_events", ["task_id", "id"])
    op.execute(
        "INSERT INTO tasks (id, kind, status, error, progress, model, device, quantize, worker, pid, heartbeat_at, "
        "attempts, cancel_requested, created_at, started_at, finished_at) "
        "SELECT id, CASE WHEN backend = 'local' THEN 'fine_tune' ELSE 'remote_fine_tune' END, status, error, "
        "progress, model, device, quantize, worker, pid, heartbeat_at, COALESCE(attempts, 0), cancel_requested, "
        "created_at, started_at, finished_at FROM jobs")
    op.execute("INSERT INTO task_events (id, task_id, level, message, type, data, created_at) "
               "SELECT id, job_id, level, message, type, data, created_at FROM job_events")
    if op.get_bind().dialect.name == "postgresql":  # the ids were copied: the sequence goes on after them
        op.execute("SELECT setval(pg_get_serial_sequence('task_events', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM task_events), 0) + 1, false)")
    op.drop_table("job_events")
    op.drop_index("ix_jobs_status_created", "jobs")
    op.drop_index("ix_jobs_status", "jobs")
    _drop_lifecycle()


def _drop_lifecycle() -> None:
    """The jobs' lifecycle columns go. SQLite rebuilds the table to drop a column, and dropping the old table with
    foreign keys on deletes its rows' checkpoints (ON DELETE CASCADE): they are kept aside and put back."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(f"CREATE TEMPORARY TABLE kept_checkpoints AS SELECT {CHECKPOINT_COLUMNS} FROM checkpoints")
    with op.batch_alter_table("jobs") as batch:
        for column in LIFECYCLE:
            batch.drop_column(column)
    if sqlite:
        op.execute("DELETE FROM checkpoints")
        op.execute(f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) SELECT {CHECKPOINT_COLUMNS} FROM kept_checkpoints")
        op.execute("DROP TABLE kept_checkpoints")


def downgrade() -> None:
    """Back to 0010: the fine-tuning jobs' lifecycle and events return to ``jobs`` and ``job_events``; tasks of
    other kinds are dropped."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("status", sa.String(32), nullable=False, server_default="queued"))
        batch.add_column(sa.Column("error", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("device", sa.String(16), nullable=True))
        batch.add_column(sa.Column("quantize", sa.String(16), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(256), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    for column in LIFECYCLE:
        op.execute(f"UPDATE jobs SET {column} = (SELECT t.{column} FROM tasks t WHERE t.id = jobs.id) "
                   "WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = jobs.id)")
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(128), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])
    op.execute("INSERT INTO job_events (id, job_id, level, message, type, data, created_at) "
               "SELECT e.id, e.task_id, e.level, e.message, e.type, e.data, e.created_at FROM task_events e "
               "JOIN jobs j ON j.id = e.task_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('job_events', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM job_events), 0) + 1, false)")
    op.drop_table("task_events")
    op.drop_table("tasks")
