"""Sentiment, assistants and configuration: the pieces that need no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop.config import load_settings
from tuneloop.conversation.assistants import DEFAULT_ASSISTANT_ID, load_assistants_file, load_catalog
from tuneloop.curation.sentiment import analyze
from tuneloop.errors import AssistantsFileError, ConfigError, UnknownAssistantError


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Thanks, that is great!", "positive"),
        ("This is wrong and useless.", "negative"),
        ("What is the capital of France?", "neutral"),
        ("", "neutral"),
    ],
)
def test_sentiment_labels(text: str, label: str) -> None:
    result = analyze(text)
    assert result.label == label
    assert -1.0 <= result.score <= 1.0


SEED_ASSISTANTS = [
    {"id": "asst_dr5AgQnhhhnef5OSMzQ9zdk9", "name": "code_assistant", "description": "reviews code",
     "instructions": "You review Python code.", "model": "gpt-4o-mini", "tools": [{"type": "code_interpreter"}]},
    {"name": "translator", "instructions": "Translate to French."},
]


def test_seed_assistants_json_loads_as_is(tmp_path: Path) -> None:
    path = tmp_path / "assistants.json"
    path.write_text(json.dumps(SEED_ASSISTANTS))
    loaded = load_assistants_file(path)
    assert [a.id for a in loaded] == ["asst_dr5AgQnhhhnef5OSMzQ9zdk9", "translator"]
    assert loaded[0].name == "code_assistant"
    assert loaded[0].extra["tools"] == [{"type": "code_interpreter"}]
    catalog = load_catalog(None, tmp_path)  # found in home by name
    assert catalog.get("translator").instructions == "Translate to French."
    assert catalog.get(None).id == DEFAULT_ASSISTANT_ID


def test_toml_and_mapping_shapes(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text('[[assistants]]\nid = "poet"\nname = "Poet"\ntemperature = 0.7\ninstructions = "Rhyme."\n')
    assert load_assistants_file(toml)[0].temperature == 0.7
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"helper": {"name": "Helper"}}))
    assert load_assistants_file(mapping)[0].id == "helper"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('[{"id": "a",}]', "invalid JSON at line 1"),
        ('"just a string"', "expected a list of assistants"),
        ('[{"temperature": 0.5}]', "assistant #1"),
        ('[{"id": "a"}, {"id": "a"}]', "appears twice"),
        ('[{"id": "a", "temperature": 9}]', "temperature"),
    ],
)
def test_bad_assistants_file_names_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "assistants.json"
    path.write_text(content)
    with pytest.raises(AssistantsFileError) as info:
        load_assistants_file(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_and_binary_assistants_file(tmp_path: Path) -> None:
    with pytest.raises(AssistantsFileError, match="not found"):
        load_assistants_file(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AssistantsFileError, match="not UTF-8"):
        load_assistants_file(binary)


def test_unknown_assistant_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownAssistantError) as info:
        load_catalog(None, tmp_path).get("ghost")
    assert "ghost" in str(info.value) and DEFAULT_ASSISTANT_ID in str(info.value)


def test_settings_sources_and_provider_choice(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.default_provider == "local"
    assert settings.resolved_database_url.endswith(str(home / "tuneloop.db"))

    (home / "tuneloop.toml").write_text('model = "from-home"\nmax_tokens = 100\n')
    (tmp_path / "tuneloop.toml").write_text('model = "from-cwd"\n')
    settings = load_settings()
    assert settings.model == "from-cwd" and settings.max_tokens == 100  # cwd wins, home fills in

    monkeypatch.setenv("TUNELOOP_MODEL", "from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    settings = load_settings()
    assert settings.model == "from-env"
    assert settings.default_provider == "openai"
    assert "sk-test-secret-value" not in repr(settings)


def test_invalid_settings_raise_config_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELOOP_PROVIDER", "azure")
    with pytest.raises(ConfigError, match="provider"):
        load_settings()
    monkeypatch.delenv("TUNELOOP_PROVIDER")
    (home / "tuneloop.toml").write_text("model = [unclosed\n")
    with pytest.raises(ConfigError, match="tuneloop.toml"):
        load_settings()
