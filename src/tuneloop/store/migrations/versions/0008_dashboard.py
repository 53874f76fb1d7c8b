"""The dashboard: a reply can be left out of training ("exclude"), and the log page's filters get indexes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): SQLite keeps the messages table, and so the FTS triggers of 0004.
    op.add_column("messages", sa.Column("excluded", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_index("ix_threads_kind_updated", "threads", ["kind", "updated_at"])
    op.create_index("ix_messages_language", "messages", ["language", "thread_id"])
    op.create_index("ix_messages_feedback", "messages", ["feedback", "thread_id"],
                    sqlite_where=sa.text("feedback IS NOT NULL"), postgresql_where=sa.text("feedback IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_messages_feedback", "messages")
    op.drop_index("ix_messages_language", "messages")
    op.drop_index("ix_threads_kind_updated", "threads")
    op.drop_index("ix_messages_created_at", "messages")
    op.drop_column("messages", "excluded")
