"""What the log records beside each message, computed here before the store persists it (the store computes
nothing): the sentiment of every message, and so the reaction of each user turn to the reply before it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tuneloop import sentiment
from tuneloop.store import DialogueStore, Exchange
from tuneloop.store.conversations import NewMessage


def labelled(messages: list[NewMessage]) -> list[NewMessage]:
    """``messages`` with their sentiment, ready for ``Conversations.append``/``create`` (labels given are kept)."""
    return [m if m.sentiment is not None else replace(m, sentiment=sentiment.analyze(m.content)) for m in messages]


def log_exchange(store: DialogueStore, thread_id: str, user_content: str, assistant_content: str,
                 **fields: Any) -> Exchange:
    """``store.append_exchange`` with the sentiment of the user turn, the reply and a new system instruction."""
    system = fields.get("system_instruction")
    return store.append_exchange(
        thread_id, user_content, assistant_content,
        user_sentiment=sentiment.analyze(user_content),
        reply_sentiment=sentiment.analyze(assistant_content),
        system_sentiment=sentiment.analyze(system) if system else None,
        **fields,
    )
