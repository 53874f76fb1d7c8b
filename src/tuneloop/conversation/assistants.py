"""Assistant definitions: local files now that OpenAI's Assistants API is gone.

A file is JSON or TOML. Accepted shapes (the seed's ``assistants.json`` loads as is):

- a list of objects: ``[{"id": "...", "name": "...", "model": "...", "instructions": "..."}]``
- an object with an ``assistants`` list (TOML: ``[[assistants]]`` tables)
- an object mapping ids to definitions: ``{"coder": {"name": "...", ...}}``

Only ``id`` or ``name`` is required; an assistant without ``id`` takes its name as id. Unknown keys
(``tools``, ``description``, ...) are kept in ``extra`` and otherwise ignored.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneloop.config import Settings
from tuneloop.errors import AssistantsFileError, UnknownAssistantError

DEFAULT_ASSISTANT_ID = "default"


class Assistant(BaseModel):
    """One assistant: a name, an optional model, instructions and a sampling temperature."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    model: str | None = None
    instructions: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @model_validator(mode="before")
    @classmethod
    def _fill_id_and_name(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("id") and data.get("name"):
                data["id"] = data["name"]
            if not data.get("name") and data.get("id"):
                data["name"] = data["id"]
            if data.get("temperature") is None:
                data.pop("temperature", None)
        return data

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


DEFAULT_ASSISTANT = Assistant(
    id=DEFAULT_ASSISTANT_ID,
    name="Default assistant",
    model=None,
    instructions=None,
    temperature=0.0,
)


class AssistantCatalog:
    """The built-in default assistant plus those of an assistants file."""

    def __init__(self, assistants: list[Assistant], source: Path | None = None) -> None:
        self.source = source
        self._by_id: dict[str, Assistant] = {DEFAULT_ASSISTANT_ID: DEFAULT_ASSISTANT}
        for assistant in assistants:
            self._by_id[assistant.id] = assistant

    @property
    def source_label(self) -> str:
        return str(self.source) if self.source else "the built-in list"

    def all(self) -> list[Assistant]:
        return list(self._by_id.values())

    def get(self, assistant_id: str | None) -> Assistant:
        if not assistant_id:
            return self._by_id[DEFAULT_ASSISTANT_ID]
        try:
            return self._by_id[assistant_id]
        except KeyError:
            raise UnknownAssistantError(assistant_id, list(self._by_id), self.source_label) from None


def _entries(data: Any, path: Path) -> list[Any]:
    if isinstance(data, dict) and "assistants" in data:
        data = data["assistants"]
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        entries = []
        for key, value in data.items():
            if not isinstance(value, dict):
                raise AssistantsFileError(
                    f"{path}: entry {key!r} is not an object; expected a list of assistants "
                    "or an object mapping ids to assistant definitions"
                )
            entries.append({"id": key, **value})
        return entries
    raise AssistantsFileError(
        f"{path}: expected a list of assistants, found {type(data).__name__}; "
        'write [{"id": "...", "name": "...", "instructions": "..."}]'
    )


def load_assistants_file(path: Path) -> list[Assistant]:
    """Parse one assistants file; every problem raises :class:`AssistantsFileError` naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AssistantsFileError(
            f"{path}: assistants file not found; create it or unset TUNELOOP_ASSISTANTS_FILE"
        ) from None
    except OSError as exc:
        raise AssistantsFileError(f"{path}: cannot read the assistants file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AssistantsFileError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save the file as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssistantsFileError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise AssistantsFileError(f"{path}: invalid TOML: {exc}") from None

    assistants: list[Assistant] = []
    seen: set[str] = set()
    for index, entry in enumerate(_entries(data, path)):
        try:
            assistant = Assistant.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise AssistantsFileError(
                f"{path}: assistant #{index + 1}: {where}: {first['msg']} (each assistant needs an id or a name)"
            ) from None
        if assistant.id in seen:
            raise AssistantsFileError(f"{path}: assistant id {assistant.id!r} appears twice; ids must be unique")
        seen.add(assistant.id)
        assistants.append(assistant)
    return assistants


def find_assistants_file(configured: Path | None, home: Path) -> Path | None:
    if configured is not None:
        return configured
    for name in ("assistants.json", "assistants.toml"):
        candidate = home / name
        if candidate.exists():
            return candidate
    return None


def catalog(settings: Settings) -> AssistantCatalog:
    """The assistants ``settings`` name (``assistants_file``, else assistants.json/.toml in the home)."""
    return load_catalog(settings.assistants_file, settings.home)


def load_catalog(configured: Path | None, home: Path) -> AssistantCatalog:
    path = find_assistants_file(configured, home)
    if path is None:
        return AssistantCatalog([])
    return AssistantCatalog(load_assistants_file(path), source=path)
