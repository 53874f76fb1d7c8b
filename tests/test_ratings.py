"""One rule for ratings through metadata, on stored chat completions and on responses alike (the real server, the
unmodified openai SDK): a rating changes only when the new metadata has a ``rating`` key; metadata without it
leaves the rating as it is, whoever set it (metadata, or `tuneloop logs rate`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import openai
import pytest
from conftest import MODELS_DIR, run_cli
from openai.types.responses import Response

from tuneloop.store import DialogueStore

KEY = "sk-ratings-test-key-0123456789"
BASE = "smollm2-135m-instruct"
SHORT = 8  # tokens per reply: the rating is the point, not the answer


class Kind:
    """How a client makes one kind of stored reply and replaces its metadata."""

    def __init__(self, client: openai.OpenAI, kind: str) -> None:
        self.client, self.kind = client, kind

    def create(self, question: str, metadata: dict[str, str]) -> tuple[str, str]:
        """(the object's id, its reply's text)."""
        if self.kind == "chat.completion":
            made = self.client.chat.completions.create(model=BASE, store=True, max_tokens=SHORT, metadata=metadata,
                                                       messages=[{"role": "user", "content": question}])
            return made.id, made.choices[0].message.content or ""
        response = self.client.responses.create(model=BASE, input=question, max_output_tokens=SHORT,
                                                metadata=metadata)
        return response.id, response.output_text

    def update(self, ident: str, metadata: dict[str, str]) -> dict[str, str]:
        """The metadata the server answers with."""
        if self.kind == "chat.completion":
            return dict(self.client.chat.completions.update(ident, metadata=metadata).metadata or {})
        return dict(self.client.post(f"/responses/{ident}", body={"metadata": metadata}, cast_to=Response).metadata
                    or {})


def reply_in_log(store: DialogueStore, kind: str, question: str) -> Callable[[], tuple[int, int | None]]:
    """The logged reply to ``question`` (its thread is the only one asking it): () → (message id, rating)."""
    threads = [t for t in store.list_threads(limit=1000) if t.kind == kind
               and any(m.role == "user" and m.content == question for m in store.messages(t.id))]
    assert len(threads) == 1, threads

    def read() -> tuple[int, int | None]:
        reply = [m for m in store.messages(threads[0].id) if m.role == "assistant"][-1]
        return reply.id, reply.feedback

    return read


@pytest.mark.parametrize("kind", ["chat.completion", "response"])
def test_a_rating_changes_only_with_a_rating_key(kind: str, client: openai.OpenAI, server: Any) -> None:
    api = Kind(client, kind)
    question = f"Say hello to {os.urandom(3).hex()}."
    ident, _ = api.create(question, {"app": "a", "rating": "up"})
    reply = reply_in_log(server.store, kind, question)
    message_id, rating = reply()
    assert rating == 1

    # Metadata without the key: the rating stays; the metadata itself is replaced.
    assert api.update(ident, {"app": "b"}) == {"app": "b"}
    assert reply() == (message_id, 1)
    assert api.update(ident, {}) == {}
    assert reply() == (message_id, 1)

    # With the key: up and down set it; none, empty and 0 clear it.
    api.update(ident, {"app": "b", "rating": "down"})
    assert reply() == (message_id, -1)
    for cleared in ("none", "", "0"):
        api.update(ident, {"rating": "up"})
        assert reply() == (message_id, 1)
        api.update(ident, {"app": "c", "rating": cleared})
        assert reply() == (message_id, None), cleared
    api.update(ident, {"app": "d"})
    assert reply() == (message_id, None)  # nothing to keep, nothing set

    # A rating from `tuneloop logs rate` (a dashboard, a person) survives an app's unrelated metadata.
    rated = run_cli("logs", "rate", str(message_id), "down",
                    env={"TUNELOOP_HOME": str(server.home), "TUNELOOP_MODELS_DIR": str(MODELS_DIR)})
    assert rated.code == 0, rated.stderr
    assert reply() == (message_id, -1)
    assert api.update(ident, {"app": "e", "step": "2"}) == {"app": "e", "step": "2"}
    assert reply() == (message_id, -1)


def test_a_bad_rating_is_refused_and_changes_nothing(client: openai.OpenAI, server: Any) -> None:
    for kind in ("chat.completion", "response"):
        api = Kind(client, kind)
        question = f"Say goodbye to {os.urandom(3).hex()}."
        ident, _ = api.create(question, {"rating": "up"})
        with pytest.raises(openai.BadRequestError) as caught:
            api.update(ident, {"app": "x", "rating": "great"})
        assert caught.value.body["param"] == "metadata" and "'up', 'down' or 'none'" in caught.value.body["message"]
        assert reply_in_log(server.store, kind, question)()[1] == 1
