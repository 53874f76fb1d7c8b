"""Providers of chat completions, and which one serves a given model id."""

from __future__ import annotations

from tuneloop.providers.base import GenerationResult, ModelInfo, Provider, TextStream
from tuneloop.providers.local import LocalProvider
from tuneloop.providers.openai import DEFAULT_OPENAI_MODEL, OpenAIProvider

__all__ = [
    "DEFAULT_OPENAI_MODEL",
    "GenerationResult",
    "LocalProvider",
    "ModelInfo",
    "OpenAIProvider",
    "Provider",
    "TextStream",
]
