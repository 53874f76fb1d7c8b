"""Helpers the tests share (fixtures are in conftest.py): logging an exchange with the default analyzer, named."""

from __future__ import annotations

from typing import Any

from tuneloop.curation.labels import Labeller
from tuneloop.curation.labels import log_exchange as log_labelled
from tuneloop.store import DialogueStore, Exchange

# The analyzer the settings choose by default, handed over explicitly: the library never picks one silently.
LABELLER = Labeller("multilingual")


def log_exchange(store: DialogueStore, thread_id: str, user: str, reply: str, labeller: Labeller = LABELLER,
                 **fields: Any) -> Exchange:
    """Log one exchange, labelled by ``labeller`` (the default analyzer unless given)."""
    return log_labelled(store, thread_id, user, reply, labeller, **fields)
