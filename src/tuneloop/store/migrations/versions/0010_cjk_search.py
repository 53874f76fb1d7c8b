"""full-text search finds Chinese, Japanese and Korean words anywhere: each CJK character is indexed as a word

Both word splitters (FTS5's unicode61, PostgreSQL's 'simple') take a run of CJK text for one word, so 首都 was found
only at the start of 首都は… . The index now reads messages through ``tuneloop_cjk_spaced`` (a space either side of
each CJK character; tuneloop.store.search): a Python function on each SQLite connection, an SQL function on
PostgreSQL. SQLite's FTS5 table takes its text from the view ``messages_fts_source`` (so snippets see what was
indexed); PostgreSQL's ``search`` column is computed again. Every existing message is indexed again.
A later migration that rebuilds ``messages`` with batch_alter_table on SQLite must re-create the triggers.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from tuneloop.store.indexing import CJK_SPACED, add_sqlite_functions, postgresql_cjk_pattern

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TRIGGERS = ("insert", "delete", "update")


def sqlite_index(source: str, indexed: str) -> list[str]:
    """The FTS5 table over ``source`` (a table or view with id and content) and the triggers that keep it, each
    message indexed as ``indexed`` makes it of ``{}.content``; then built from every message."""
    new, old = indexed.format("new"), indexed.format("old")
    return [
        f"CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='{source}', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 0')",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        f"INSERT INTO messages_fts(rowid, content) VALUES (new.id, {new}); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        f"INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, {old}); END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
        f"INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO messages_fts(rowid, content) VALUES (new.id, {new}); END",
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    ]


def sqlite_drop() -> list[str]:
    return [*(f"DROP TRIGGER IF EXISTS messages_fts_{name}" for name in TRIGGERS), "DROP TABLE IF EXISTS messages_fts",
            "DROP VIEW IF EXISTS messages_fts_source"]


SQLITE_UP = [
    *sqlite_drop(),
    f"CREATE VIEW messages_fts_source AS SELECT id, {CJK_SPACED}(content) AS content FROM messages",
    *sqlite_index("messages_fts_source", f"{CJK_SPACED}({{}}.content)"),
]
SQLITE_DOWN = [*sqlite_drop(), *sqlite_index("messages", "{}.content")]


def postgresql_search(expression: str) -> list[str]:
    """The ``search`` column computed from ``expression`` (the column is dropped and added: every row again)."""
    return [
        "DROP INDEX IF EXISTS ix_messages_search",
        "ALTER TABLE messages DROP COLUMN IF EXISTS search",
        f"ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', {expression})) "
        "STORED",
        "CREATE INDEX ix_messages_search ON messages USING gin (search)",
    ]


POSTGRES_UP = [
    f"CREATE OR REPLACE FUNCTION {CJK_SPACED}(content text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
    f"AS $$ SELECT regexp_replace(content, '{postgresql_cjk_pattern()}', ' \\& ', 'g') $$",
    *postgresql_search(f"{CJK_SPACED}(content)"),
]
POSTGRES_DOWN = [*postgresql_search("content"), f"DROP FUNCTION IF EXISTS {CJK_SPACED}(text)"]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # The store's connections have it already (tuneloop.store.search adds it to each); this one is sure to.
        add_sqlite_functions(bind.connection.driver_connection)
    for statement in {"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP}.get(bind.dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    for statement in {"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN}.get(op.get_bind().dialect.name, []):
        op.execute(statement)
