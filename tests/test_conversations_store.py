"""What the stateful HTTP APIs keep, at the store level, on real SQLite and real PostgreSQL: response chains and
forks, conversations and their items, stored completions with metadata filters and ratings, deletes that take
what belongs to them, and the selection of training data from all of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import LABELLER

from tuneloop.conversation.responses import (
    Invalid,
    ResponseLog,
    ResponseRequest,
    new_response_id,
    read_items,
    response_object,
)
from tuneloop.conversation.stored_completions import StoredCompletions
from tuneloop.datasets import DialogueFilter, from_dialogues
from tuneloop.store import DialogueStore
from tuneloop.store.api_objects import ObjectNotFoundError
from tuneloop.store.conversations import NewMessage, new_item_id


@pytest.fixture
def store(database_url: str) -> DialogueStore:
    return DialogueStore(database_url, busy_timeout=2)


def respond(log: ResponseLog, text: str, answer: str, *, previous: str | None = None, conversation: str | None = None,
            metadata: dict[str, str] | None = None, finish: str = "stop", store: bool = True) -> dict:
    request = ResponseRequest(model="m1", items=read_items(text), instructions="Be brief.",
                              previous_response_id=previous, conversation=conversation, store=store,
                              metadata=metadata, max_output_tokens=None, temperature=None, top_p=None)
    history = log.history(request)
    reply = NewMessage("assistant", answer, item_id=new_item_id(), model="m1", finish_reason=finish,
                       metadata=metadata)
    body = response_object(request, new_response_id(), 0, status="completed", output=[], tokens=(1, 1))
    log.record(request, body, reply)
    return {"body": body, "history": history}


def test_chains_fork_and_read_back_only_their_own_branch(store: DialogueStore) -> None:
    log = ResponseLog(store, LABELLER)
    first = respond(log, "What is 2+2?", "4.")["body"]
    second = respond(log, "And 3+3?", "6.", previous=first["id"])
    assert second["history"] == [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}]
    fork = respond(log, "And 5+5?", "10.", previous=first["id"])
    assert fork["history"] == second["history"]  # the fork never sees "And 3+3?"
    third = respond(log, "And 4+4?", "8.", previous=second["body"]["id"])
    assert [m["content"] for m in third["history"]] == ["What is 2+2?", "4.", "And 3+3?", "6."]
    chain = log.response(second["body"]["id"]).thread_id
    assert log.response(first["id"]).thread_id == chain == log.response(third["body"]["id"]).thread_id
    assert log.response(fork["body"]["id"]).thread_id != chain
    logged = store.messages(chain)
    assert [m.content for m in logged] == ["What is 2+2?", "4.", "And 3+3?", "6.", "And 4+4?", "8."]
    assert store.get_thread(chain).system_instruction == "Be brief." and store.get_thread(chain).kind == "response"
    assert [m.content for m in log.input_items(third["body"]["id"])] == ["And 4+4?"]
    # Deleting a response takes its exchange out of the log; the chain before it stays readable.
    log.delete(second["body"]["id"])
    with pytest.raises(ObjectNotFoundError):
        log.response(second["body"]["id"])
    assert [m.content for m in store.messages(chain)] == ["What is 2+2?", "4.", "And 4+4?", "8."]
    with pytest.raises(Invalid):
        respond(log, "Hi", "Hello.", previous=second["body"]["id"])
    unstored = respond(log, "Hi", "Hello.", store=False)["body"]
    with pytest.raises(ObjectNotFoundError):
        log.response(unstored["id"])


def test_conversations_keep_items_ratings_and_deletes(store: DialogueStore) -> None:
    log = ResponseLog(store, LABELLER)
    thread, items = log.new_conversation({"team": "a"}, read_items([{"role": "user", "content": "Hello, I am Ada."}]))
    answered = respond(log, "What is my name?", "Ada.", conversation=thread.id)
    assert answered["history"] == [{"role": "user", "content": "Hello, I am Ada."}]
    logged = log.threads.messages(thread.id)
    assert [m.role for m in logged] == ["user", "user", "assistant"]
    reply = logged[-1]
    log.rate_conversation_items(thread.id, {"team": "a", f"rating:{answered['body']['id']}": "up"})
    assert store.messages(thread.id)[-1].feedback == 1
    log.rate_conversation_items(thread.id, {f"rating:{reply.item_id}": "down"})
    assert store.messages(thread.id)[-1].feedback == -1
    for wrong in ({f"rating:{items[0].item_id}": "up"}, {"rating:msg_nope": "up"}, {"rating:resp_nope": "up"},
                  {f"rating:{reply.item_id}": "great"}):
        with pytest.raises(Invalid):
            log.rate_conversation_items(thread.id, wrong)
    log.threads.delete_item(thread.id, items[0].item_id)
    assert len(log.threads.messages(thread.id)) == 2
    log.threads.delete(thread.id, "conversation")
    with pytest.raises(ObjectNotFoundError):  # its responses went with it
        log.response(answered["body"]["id"])


def test_stored_completions_filter_rate_and_feed_training(store: DialogueStore) -> None:
    kept = StoredCompletions(store, LABELLER)
    long_ago = datetime(2025, 1, 1, tzinfo=UTC)
    for i, (model, app) in enumerate([("m1", "x"), ("m1", "y"), ("m2", "x")]):
        body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 0, "model": model,
                "metadata": {"app": app, **({"rating": "up"} if i == 0 else {})}, "choices": []}
        kept.keep(body, [{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"Question {i}?"}],
                  NewMessage("assistant", f"Answer {i}.", model=model, finish_reason="stop"),
                  created_at=long_ago if i == 2 else None)
    assert [o.id for o in kept.list(model="m1")[0]] == ["chatcmpl-0", "chatcmpl-1"]
    assert [o.id for o in kept.list(metadata={"app": "x"})[0]] == ["chatcmpl-2", "chatcmpl-0"]  # by date
    assert [o.id for o in kept.list(metadata={"app": "x", "rating": "up"})[0]] == ["chatcmpl-0"]
    assert kept.list(metadata={"nothing": "x"}) == ([], False)
    page, more = kept.list(limit=2)
    assert [o.id for o in page] == ["chatcmpl-2", "chatcmpl-0"] and more
    assert [o.id for o in kept.list(limit=2, after="chatcmpl-0")[0]] == ["chatcmpl-1"]
    assert [o.id for o in kept.list(limit=1, after="chatcmpl-1", newest_first=True)[0]] == ["chatcmpl-0"]
    with pytest.raises(ObjectNotFoundError):
        kept.list(after="chatcmpl-nope")
    assert [m.content for m in kept.messages("chatcmpl-1")] == ["Be kind.", "Question 1?"]
    kept.update("chatcmpl-1", {"app": "y", "rating": "up"})
    kept.update("chatcmpl-2", {"app": "x", "rating": "up"})
    everything = from_dialogues(store)
    assert sorted(e["messages"][-1]["content"] for e in everything.supervised) == ["Answer 0.", "Answer 1.",
                                                                                  "Answer 2."]
    assert everything.supervised[0]["messages"][0] == {"role": "system", "content": "Be kind."}
    cases = [(DialogueFilter(model="m1"), ["Answer 0.", "Answer 1."]),
             (DialogueFilter(metadata={"app": "x"}), ["Answer 0.", "Answer 2."]),
             (DialogueFilter(since=datetime.now(UTC) - timedelta(days=1)), ["Answer 0.", "Answer 1."]),
             (DialogueFilter(until=datetime(2026, 1, 1, tzinfo=UTC)), ["Answer 2."]),
             (DialogueFilter(model="m2", metadata={"app": "y"}), [])]
    for where, expected in cases:
        chosen = from_dialogues(store, where=where)
        assert sorted(e["messages"][-1]["content"] for e in chosen.supervised) == expected, where
    kept.update("chatcmpl-0", {"app": "x"})  # metadata without the key leaves the rating: still chosen
    assert "Answer 0." in [e["messages"][-1]["content"] for e in from_dialogues(store).supervised]
    kept.update("chatcmpl-0", {"app": "x", "rating": "none"})  # the rating cleared: no longer chosen
    assert "Answer 0." not in [e["messages"][-1]["content"] for e in from_dialogues(store).supervised]
    kept.delete("chatcmpl-0")
    with pytest.raises(ObjectNotFoundError):
        kept.get("chatcmpl-0")
    assert [t.id for t in store.list_threads()].count("chatcmpl-0") == 0
