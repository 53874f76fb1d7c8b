"""OpenAI's stateful APIs in the dialogue store: thread kind and metadata, message item ids and metadata,
stored responses and chat completions (api_objects), where an imported job came from (jobs.origin)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): SQLite keeps the messages table, and so the FTS triggers of 0004.
    op.add_column("threads", sa.Column("kind", sa.String(32), nullable=True))
    op.add_column("threads", sa.Column("metadata", sa.JSON(), nullable=True))
    op.add_column("messages", sa.Column("item_id", sa.String(64), nullable=True))
    op.add_column("messages", sa.Column("metadata", sa.JSON(), nullable=True))
    op.create_index("ix_messages_item_id", "messages", ["item_id"])
    op.add_column("jobs", sa.Column("origin", sa.String(16), nullable=True))
    op.create_table(
        "api_objects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("object", sa.String(32), nullable=False),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("message_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_objects_object_created", "api_objects", ["object", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_api_objects_object_created", "api_objects")
    op.drop_table("api_objects")
    op.drop_column("jobs", "origin")
    op.drop_index("ix_messages_item_id", "messages")
    op.drop_column("messages", "metadata")
    op.drop_column("messages", "item_id")
    op.drop_column("threads", "metadata")
    op.drop_column("threads", "kind")
