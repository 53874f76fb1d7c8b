"""OpenAIModel, the seed's class, on the local model: every method the seed had."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop import OpenAIModel
from tuneloop.errors import ModelCannotSeeError, UnknownAssistantError, UnknownModelError
from tuneloop.store import DialogueStore


def test_ask_keeps_the_thread_and_logs_sentiment(home: Path, engine) -> None:  # noqa: ANN001
    model = OpenAIModel()
    assert model.model == "smollm2-135m-instruct"
    assert model.dialogue == [] and model.thread_id is None
    answer = model.ask("What is the capital of France?")
    assert "Paris" in answer
    thread_id = model.thread_id
    model.ask("Thanks, that is great! And what is the capital of Italy?")
    assert model.thread_id == thread_id
    dialogue = model.dialogue
    assert [d["role"] for d in dialogue] == ["user", "assistant", "user", "assistant"]
    assert dialogue[2]["sentiment"] == "positive"
    assert all(d["sentiment"] in ("positive", "negative", "neutral") for d in dialogue)

    store = DialogueStore(f"sqlite:///{home / 'tuneloop.db'}")
    messages = store.messages(thread_id)
    assert messages[1].reaction == "positive"
    assert messages[1].tokens_out and messages[1].latency_ms is not None

    # A new object continues the thread from the store: the model sees the earlier turns.
    again = OpenAIModel(thread_id=thread_id)
    assert len(again.dialogue) == 4


def test_system_instruction_is_sent_and_logged(home: Path, engine) -> None:  # noqa: ANN001
    model = OpenAIModel(system_instruction="Answer with exactly one word.")
    model.ask("What is the capital of France?")
    model.ask("And of Spain?", system_instruction="Answer in French.")
    roles = [(d["role"], d["content"]) for d in model.dialogue if d["role"] == "system"]
    assert roles == [("system", "Answer with exactly one word."), ("system", "Answer in French.")]


def test_assistants_models_and_sentiment(home: Path, engine) -> None:  # noqa: ANN001
    (home / "assistants.json").write_text(json.dumps([
        {"id": "geo", "name": "Geographer", "instructions": "You answer geography questions in one sentence."},
    ]))
    model = OpenAIModel(assistant_id="geo")
    assert model.list_assistants == ["Default assistant", "Geographer"]
    assert model.list_models == ["smollm2-135m-instruct"]
    assert model.determine_sentiment("I love it, wonderful!") == "positive"
    assert model.determine_sentiment("This is terrible.") == "negative"
    assert model.determine_sentiment("The box is on the table.") == "neutral"
    model.ask("Where is Paris?")
    first_thread = model.thread_id
    model.set_assistant("default")
    assert model.assistant_id == "default" and model.thread_id is None
    model.ask("Hello")
    assert model.thread_id != first_thread
    with pytest.raises(UnknownAssistantError, match="ghost"):
        model.set_assistant("ghost")
    with pytest.raises(UnknownModelError, match="gpt-4o-mini"):
        OpenAIModel(model_name="gpt-4o-mini")


def test_save_dialogue_writes_the_seed_json(home: Path, engine, tmp_path: Path) -> None:  # noqa: ANN001
    model = OpenAIModel()
    assert model._save_dialogue() is None
    model.ask("What is the capital of France?")
    path = model._save_dialogue()
    assert path is not None and path.parent == home / "dialogues"
    saved = json.loads(path.read_text())
    assert saved == model.dialogue
    assert list(path.parent.glob(".*tmp")) == []


def test_the_local_model_refuses_images_before_reading_them(home: Path) -> None:
    model = OpenAIModel()
    with pytest.raises(ModelCannotSeeError, match="smollm2-135m-instruct"):
        model.describe_image("x.png")
    with pytest.warns(DeprecationWarning), pytest.raises(ModelCannotSeeError):
        model.describe_image_by_requests("x.png")
