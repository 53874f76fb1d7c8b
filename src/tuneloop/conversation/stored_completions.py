"""Stored chat completions (``store: true``): each is a thread of the dialogue store (kind ``chat.completion``, id
the completion's) holding the request's messages and the reply, beside the completion as it was returned.
Metadata ``rating`` rates the reply (see tuneloop.curation.ratings).

A completion the server logs without storing it (an app's traffic, setting ``server_log``) is a thread of kind
``server`` with the same messages and metadata, and no completion object: it is in the log, not in the API."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from tuneloop.curation import labels, ratings
from tuneloop.store.api_objects import ApiObject, ApiObjects
from tuneloop.store.conversations import Conversations, NewMessage
from tuneloop.store.dialogue import DialogueStore, Message

KIND = "chat.completion"
LOGGED = "server"  # the thread kind of a completion logged, not stored


class StoredCompletions:
    def __init__(self, store: DialogueStore, labeller: labels.Labeller) -> None:
        self.store = store
        self.labeller = labeller
        self.threads = Conversations(store)
        self.objects = ApiObjects(store)

    def keep(self, body: dict[str, Any], messages: list[dict[str, Any]], reply: NewMessage,
             created_at: datetime | None = None, *, stored: bool = True, end_user: str | None = None) -> None:
        """Log the request's messages and the reply as a new thread and, when ``stored``, keep ``body`` (the
        completion), in one transaction (``created_at``: when it was made, for imported ones; ``end_user``: the
        request's safety_identifier or user). The labels are computed before the transaction opens."""
        ident = body["id"]
        metadata = body.get("metadata") or None
        logged = [NewMessage(m["role"], m["content"] if isinstance(m["content"], str) else _text(m["content"]),
                             item_id=f"{ident}-{i}", tool_calls=m.get("tool_calls"),
                             tool_call_id=m.get("tool_call_id")) for i, m in enumerate(messages)]
        reply = replace(reply, feedback=ratings.rating_of(metadata))
        labelled = labels.labelled([*logged, reply], self.labeller)
        with self.store.db.session(write=True) as session:
            _, added = self.threads.create_in(session, ident, kind=KIND if stored else LOGGED, model=body["model"],
                                              metadata=metadata, messages=labelled, created_at=created_at,
                                              end_user=end_user)
            if stored:
                self.objects.put_in(session, ident, object_=KIND, thread_id=ident, model=body["model"],
                                    metadata=metadata, body=body, message_ids=[m.id for m in added],
                                    created_at=created_at)

    def get(self, ident: str) -> ApiObject:
        return self.objects.get(ident, KIND)

    def list(self, *, model: str | None = None, metadata: dict[str, str] | None = None, after: str | None = None,
             limit: int | None = None, newest_first: bool = False) -> tuple[list[ApiObject], bool]:
        """A page of stored completions (see ApiObjects.list) and whether more follow."""
        return self.objects.list(KIND, model=model, metadata=metadata, after=after, limit=limit,
                                 newest_first=newest_first)

    def update(self, ident: str, metadata: dict[str, str] | None) -> dict[str, Any]:
        """New metadata (it replaces the old); its ``rating`` rates the reply, and metadata without one leaves the
        rating as it is (see tuneloop.curation.ratings)."""
        found = self.get(ident)
        value = ratings.rating_of(metadata)
        if value is not None and found.message_ids:
            self.store.set_feedback(found.message_ids[-1], value)
        self.threads.update_metadata(ident, KIND, metadata)
        body = {**found.body, "metadata": metadata or {}}
        self.objects.update(ident, KIND, metadata=metadata, body=body)
        return body

    def delete(self, ident: str) -> None:
        self.get(ident)
        self.threads.delete(ident, KIND)  # and the stored object with it

    def messages(self, ident: str) -> list[Message]:
        """The request's messages (not the reply), in order."""
        found = self.get(ident)
        return self.threads.messages(ident, found.message_ids[:-1])


def _text(parts: list[dict[str, Any]]) -> str:
    return "\n".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")
