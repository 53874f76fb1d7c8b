"""Curation: each message's language and a rating's note, the end user of a thread logged by the server,
corrections written beside a reply, and judges with their verdicts per reply

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): SQLite keeps the messages table, and so the FTS triggers of 0004.
    op.add_column("messages", sa.Column("language", sa.String(16), nullable=True))
    op.add_column("messages", sa.Column("feedback_note", sa.Text(), nullable=True))
    op.add_column("threads", sa.Column("end_user", sa.String(256), nullable=True))
    op.create_index("ix_threads_end_user", "threads", ["end_user"])
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_corrections_message", "corrections", ["message_id", "id"])
    op.create_table(
        "judges",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("judge", sa.String(128), sa.ForeignKey("judges.name", ondelete="CASCADE"), nullable=False),
        sa.Column("judge_model", sa.String(256), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", "judge", "judge_model", name="uq_verdicts_message_judge_model"),
    )
    op.create_index("ix_verdicts_judge", "verdicts", ["judge", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_verdicts_judge", "verdicts")
    op.drop_table("verdicts")
    op.drop_table("judges")
    op.drop_index("ix_corrections_message", "corrections")
    op.drop_table("corrections")
    op.drop_index("ix_threads_end_user", "threads")
    op.drop_column("threads", "end_user")
    op.drop_column("messages", "feedback_note")
    op.drop_column("messages", "language")
