"""What people say of a logged reply: a rating (up or down, with a note saying why) and a correction (the reply it
should have been). :func:`rate` and :func:`correct` are what the CLI, the library, the HTTP routes and the dashboard
call; a correction is kept beside the reply, never over it, and becomes a supervised example and a DPO pair
(correction over original) in ``data build --from-dialogues``.

Rating a reply over HTTP, through metadata (what OpenAI's APIs let a client set on what it stored):

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
from tuneloop.store import DialogueStore, Message
from tuneloop.store.corrections import Corrections
from tuneloop.store.records import Correction

NOTE_LENGTH = 2000  # a short note: why, not an essay

KEY = "rating"
PREFIX = "rating:"
UP = {"up", "good", "positive", "+1", "1", "thumbs_up"}
DOWN = {"down", "bad", "negative", "-1", "thumbs_down"}
CLEAR = {"", "none", "0", "clear"}


def parse(value: str, where: str, param: str | None = None) -> int:
    """+1, -1, or 0 (cleared) for a rating value; InputError naming ``where`` (its ``param``: ``param``, else
    ``where``) otherwise."""
    text = str(value).strip().lower()
    if text in UP:
        return 1
    if text in DOWN:
        return -1
    if text in CLEAR:
        return 0
    raise InputError(f"{where} is {value!r}; a rating is 'up', 'down' or 'none'", param=param or where)


def rating_of(metadata: dict[str, str] | None, where: str = "metadata") -> int | None:
    """The rating that ``metadata`` sets (``rating``), or None when it sets none."""
    if not metadata or KEY not in metadata:
        return None
    return parse(metadata[KEY], f"{where}.{KEY}", param=where)  # the request's field is the metadata


def item_ratings(metadata: dict[str, str] | None, where: str = "metadata") -> dict[str, int]:
    """``rating:ID`` keys of a conversation's metadata: id → rating."""
    return {key[len(PREFIX):]: parse(value, f"{where}.{key}", param=where) for key, value in (metadata or {}).items()
            if key.startswith(PREFIX) and len(key) > len(PREFIX)}


def rate(store: DialogueStore, message_id: int, rating: str | int, note: str | None = None) -> Message:
    """Rate assistant reply ``message_id`` (``up``/``down``/``none`` or +1/-1/0), with an optional short ``note``
    saying why; clearing a rating clears its note."""
    value = rating if isinstance(rating, int) and rating in (-1, 0, 1) else parse(str(rating), "rating")
    if note is not None and len(note) > NOTE_LENGTH:
        raise InputError(f"the note has {len(note):,} characters; a rating's note takes up to {NOTE_LENGTH:,} "
                         "(say why in a sentence or two; write the right reply as a correction)", param="note")
    if note and not value:
        raise InputError("a note goes with a rating: rate the reply up or down to say why", param="note")
    return store.set_feedback(message_id, value, note)


def exclude(store: DialogueStore, message_id: int, excluded: bool = True) -> Message:
    """Leave assistant reply ``message_id`` out of training (``excluded=False`` lets it back in): `data build
    --from-dialogues` and ``dynamic_train`` then never select it, whatever its rating, reaction or correction."""
    return store.set_excluded(message_id, excluded)


def correct(store: DialogueStore, message_id: int, text: str, *, source: str = "library") -> Correction:
    """Write the reply assistant message ``message_id`` should have been; the original stays as it was."""
    return Corrections(store).add(message_id, text, source=source)


def corrections(store: DialogueStore, message_id: int) -> list[Correction]:
    """Every correction of the reply, oldest first; the last one is in force."""
    return Corrections(store).history(message_id)
