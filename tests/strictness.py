"""Strict validation of answers with the openai SDK's generated types: every required field present (pydantic
raises) and no field the type does not know, at any depth (the SDK's models accept unknown fields silently)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter


def _no_unknown(value: Any, path: str) -> None:
    if isinstance(value, BaseModel):
        extra = value.model_extra or {}
        assert not extra, f"{path} ({type(value).__name__}) has fields the SDK does not know: {sorted(extra)}"
        for name in type(value).model_fields:
            _no_unknown(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _no_unknown(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_unknown(item, f"{path}[{key!r}]")


def strict(kind: Any, data: Any) -> Any:
    """``data`` validated as ``kind`` (a model class or a typing union such as ResponseStreamEvent)."""
    value = TypeAdapter(kind).validate_python(data)
    _no_unknown(value, getattr(kind, "__name__", "answer"))
    return value
