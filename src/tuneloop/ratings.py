"""Rating a reply over HTTP, through metadata (what OpenAI's APIs let a client set on what it stored).

* A stored chat completion: ``metadata={"rating": "up"}`` (on create or update) rates its reply.
* A response: ``metadata={"rating": "up"}`` through ``POST /v1/responses/{id}`` (tuneloop's own route: OpenAI's
  responses cannot be updated), or on the conversation it belongs to:
* a conversation: ``metadata={"rating:ITEM_OR_RESPONSE_ID": "down"}`` rates that reply of the conversation.

Values: ``up`` (also good, positive, +1, 1) rates up; ``down`` (bad, negative, -1) rates down; ``none`` (or an
empty string, 0) clears the rating. A rating changes only when the new metadata has the key: metadata without it
(an app updating its own keys) leaves the rating as it is, however it was set (metadata, ``tuneloop logs rate``,
a dashboard); to clear a rating, send the key with ``none``. Ratings feed ``data build --from-dialogues`` and
``dynamic_train`` exactly as ``tuneloop logs rate`` does: a rating wins over the sentiment of the next user turn.
"""

from __future__ import annotations

from tuneloop.errors import InputError

KEY = "rating"
PREFIX = "rating:"
UP = {"up", "good", "positive", "+1", "1", "thumbs_up"}
DOWN = {"down", "bad", "negative", "-1", "thumbs_down"}
CLEAR = {"", "none", "0", "clear"}


def parse(value: str, where: str) -> int:
    """+1, -1, or 0 (cleared) for a rating value; InputError naming ``where`` otherwise."""
    text = str(value).strip().lower()
    if text in UP:
        return 1
    if text in DOWN:
        return -1
    if text in CLEAR:
        return 0
    raise InputError(f"{where} is {value!r}; a rating is 'up', 'down' or 'none'")


def rating_of(metadata: dict[str, str] | None, where: str = "metadata") -> int | None:
    """The rating that ``metadata`` sets (``rating``), or None when it sets none."""
    if not metadata or KEY not in metadata:
        return None
    return parse(metadata[KEY], f"{where}.{KEY}")


def item_ratings(metadata: dict[str, str] | None, where: str = "metadata") -> dict[str, int]:
    """``rating:ID`` keys of a conversation's metadata: id → rating."""
    return {key[len(PREFIX):]: parse(value, f"{where}.{key}") for key, value in (metadata or {}).items()
            if key.startswith(PREFIX) and len(key) > len(PREFIX)}
