"""Eval runs kept for the dashboard: the file, the models' totals, and every question's answers graded; verdicts by
time (the judges page's recent verdicts)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_eval_runs_created_at", "eval_runs", ["created_at"])
    op.create_index("ix_verdicts_created_at", "verdicts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_verdicts_created_at", "verdicts")
    op.drop_index("ix_eval_runs_created_at", "eval_runs")
    op.drop_table("eval_runs")
