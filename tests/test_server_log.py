"""The server logs an app's traffic (setting server_log, default all), keeps its metadata and end user, and takes
corrections and rating notes over HTTP. The real server, the unmodified openai SDK, the bundled model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import MODELS_DIR, run_cli, serving

from tuneloop.curation import ratings
from tuneloop.datasets import DialogueFilter, from_dialogues
from tuneloop.store import DialogueStore, Thread

KEY = "sk-server-log-test-key-0123456789"
BASE = "smollm2-135m-instruct"
SHORT = 8  # tokens per reply: what is logged is the point, not the answer


def client_of(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300)


def threads_asking(store: DialogueStore, question: str) -> list[Thread]:
    return [t for t in store.list_threads(limit=1000)
            if any(m.role == "user" and m.content == question for m in store.messages(t.id))]


def ask(client: openai.OpenAI, question: str, **options: Any) -> Any:
    return client.chat.completions.create(model=BASE, max_tokens=SHORT,
                                          messages=[{"role": "user", "content": question}], **options)


def test_an_apps_plain_completion_is_logged_with_its_metadata_and_end_user(server: Any) -> None:
    client = client_of(server)
    question = f"Name a colour, {os.urandom(3).hex()}."
    made = ask(client, question, metadata={"app": "shop", "feature": "faq"}, safety_identifier="user-42")
    (thread,) = threads_asking(server.store, question)
    assert thread.id == made.id and thread.kind == "server"
    assert thread.metadata == {"app": "shop", "feature": "faq"} and thread.end_user == "user-42"
    messages = server.store.messages(thread.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].content == made.choices[0].message.content
    assert all(m.sentiment in ("positive", "negative", "neutral", "unknown") for m in messages)
    # Logged, not stored: the stored-completions API does not know it, as OpenAI would not.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made.id)

    older = f"Name a fruit, {os.urandom(3).hex()}."
    ask(client, older, user="legacy-user")
    assert threads_asking(server.store, older)[0].end_user == "legacy-user"
    assert [t.id for t in server.store.list_threads(end_user="user-42")] == [made.id]


def test_store_false_is_not_logged_and_store_true_is_kept_too(server: Any) -> None:
    client = client_of(server)
    private = f"Keep this to yourself, {os.urandom(3).hex()}."
    ask(client, private, store=False)
    assert threads_asking(server.store, private) == []
    kept = f"Keep this one, {os.urandom(3).hex()}."
    made = ask(client, kept, store=True, metadata={"app": "shop"})
    (thread,) = threads_asking(server.store, kept)
    assert thread.kind == "chat.completion"
    assert client.chat.completions.retrieve(made.id).metadata == {"app": "shop"}


def test_an_apps_conversation_becomes_training_data_filtered_by_metadata(server: Any, tmp_path: Path) -> None:
    """A chat app sends the whole history each time: the user's reaction in the next request marks the reply
    before it, and --metadata picks one app's replies."""
    client = client_of(server)
    tag = os.urandom(3).hex()
    answers = {}
    for app in ("alpha", "beta"):
        question = f"Say something nice about {app} {tag}."
        first = ask(client, question, metadata={"app": app})
        answers[app] = first.choices[0].message.content
        client.chat.completions.create(model=BASE, max_tokens=SHORT, metadata={"app": app}, messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": answers[app]},
            {"role": "user", "content": "Thank you, that is wonderful and exactly what I needed!"},
        ])
    chosen = from_dialogues(server.store, where=DialogueFilter(metadata={"app": "alpha"}))
    taught = [e["messages"][-1]["content"] for e in chosen.supervised if tag in e["messages"][0]["content"]]
    assert taught == [answers["alpha"]]

    env = {"TUNELOOP_HOME": str(server.home), "TUNELOOP_MODELS_DIR": str(MODELS_DIR)}
    out = tmp_path / "beta.jsonl"
    built = run_cli("data", "build", "--from-dialogues", "--metadata", "app=beta", "-o", str(out), env=env)
    assert built.code == 0, built.stderr
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["messages"][-1]["content"] for e in examples if tag in e["messages"][0]["content"]] == [answers["beta"]]
    listed = run_cli("logs", "list", "--metadata", "app=beta", "--json", "-n", "1000", env=env)
    assert listed.code == 0, listed.stderr
    assert {t["metadata"]["app"] for t in json.loads(listed.stdout)} == {"beta"}


@pytest.mark.parametrize(("setting", "plain", "stored"), [("stored", False, True), ("none", False, False)])
def test_the_server_log_setting(setting: str, plain: bool, stored: bool, tmp_path: Path, engine: Any) -> None:
    with serving(tmp_path / "home", KEY, settings={"server_log": setting}) as running:
        client = client_of(running)
        ask(client, "plain request")
        made = ask(client, "stored request", store=True)
        assert bool(threads_asking(running.store, "plain request")) is plain
        assert bool(threads_asking(running.store, "stored request")) is stored
        if not stored:
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.retrieve(made.id)


def test_corrections_and_notes_over_http(server: Any) -> None:
    client = client_of(server)
    question = f"What is two plus two, {os.urandom(3).hex()}?"
    ask(client, question)
    (thread,) = threads_asking(server.store, question)
    user, reply = server.store.messages(thread.id)

    made = client.post(f"/logs/messages/{reply.id}/correction", body={"content": "Four."}, cast_to=dict)
    assert made["source"] == "http" and made["content"] == "Four." and made["message_id"] == reply.id
    rated = client.post(f"/logs/messages/{reply.id}/rating", body={"rating": "down", "note": "too long"},
                        cast_to=dict)
    assert (rated["feedback"], rated["feedback_note"]) == (-1, "too long")
    got = client.get(f"/logs/messages/{reply.id}", cast_to=dict)
    assert got["content"] == reply.content and got["correction"]["content"] == "Four."

    bad = {
        ("/logs/messages/987654/correction", json.dumps({"content": "x"})): (404, "message_id"),
        (f"/logs/messages/{2**128}/correction", json.dumps({"content": "x"})): (404, "message_id"),
        (f"/logs/messages/{user.id}/correction", json.dumps({"content": "x"})): (400, "message_id"),
        (f"/logs/messages/{reply.id}/correction", json.dumps({"content": ""})): (400, "content"),
        (f"/logs/messages/{reply.id}/correction", json.dumps({"text": "x"})): (400, "content"),
        (f"/logs/messages/{reply.id}/rating", json.dumps({"rating": "great"})): (400, "rating"),
        ("/logs/messages/abc/rating", json.dumps({"rating": "up"})): (400, "message_id"),
    }
    for (path, body), (status, param) in bad.items():
        with pytest.raises(openai.APIStatusError) as caught:
            client.post(path, body=json.loads(body), cast_to=dict)
        assert (caught.value.status_code, caught.value.body["param"]) == (status, param), (path, caught.value.body)
    assert [c.content for c in ratings.corrections(server.store, reply.id)] == ["Four."]
