"""The local engine: the bundled model's weights and generation with transformers on the CPU."""

from tuneloop.engine.generation import GenerationResult, LocalEngine, TextStream, get_engine
from tuneloop.engine.weights import BASE_MODEL_ID, ensure_checkpoint, find_gguf, is_converted

__all__ = [
    "BASE_MODEL_ID",
    "GenerationResult",
    "LocalEngine",
    "TextStream",
    "ensure_checkpoint",
    "find_gguf",
    "get_engine",
    "is_converted",
]
