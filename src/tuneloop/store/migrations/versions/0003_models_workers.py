"""registered base models; jobs claimed by workers (worker, attempts, device, quantize, started_at)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("device", sa.String(16), nullable=True))
        batch.add_column(sa.Column("quantize", sa.String(16), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(256), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_created", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("started_at", "attempts", "worker", "quantize", "device"):
            batch.drop_column(column)
    op.drop_table("base_models")
