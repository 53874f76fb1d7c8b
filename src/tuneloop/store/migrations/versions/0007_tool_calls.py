"""Function calling in the log: an assistant message's tool calls, a tool message's call id, and what the request
asked of a reply (the tools offered, tool_choice, response_format)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): SQLite keeps the messages table, and so the FTS triggers of 0004.
    op.add_column("messages", sa.Column("tool_calls", sa.JSON(), nullable=True))
    op.add_column("messages", sa.Column("tool_call_id", sa.String(64), nullable=True))
    op.add_column("messages", sa.Column("output_spec", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "output_spec")
    op.drop_column("messages", "tool_call_id")
    op.drop_column("messages", "tool_calls")
