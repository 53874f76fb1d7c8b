"""The store: one database for dialogue (and, later, files and jobs), migrated with Alembic."""

from tuneloop.store.dialogue import DialogueStore, Exchange, Message, Thread

__all__ = ["DialogueStore", "Exchange", "Message", "Thread"]
