"""Base models: the registry (ids → folders or GGUF files) and what can be read from a model's files."""

from tuneloop.engine.inspection import (
    Description,
    ModelTooLargeError,
    ModelUnusableError,
    check_fits,
    check_usable,
    describe,
    lora_targets,
    parameters_text,
)
from tuneloop.models.registry import BaseModel, ModelRegistry, base_of, check_id

__all__ = [
    "BaseModel",
    "Description",
    "ModelRegistry",
    "ModelTooLargeError",
    "ModelUnusableError",
    "base_of",
    "check_fits",
    "check_id",
    "check_usable",
    "describe",
    "lora_targets",
    "parameters_text",
]
