"""The local engines: the reference (transformers) and the fast one (`engine.fast`: onnxruntime, batched)."""

from tuneloop.engine.reference import LocalEngine, get_engine
from tuneloop.engine.weights import BASE_MODEL_ID, ensure_checkpoint, find_gguf, is_converted
from tuneloop.generation import GenerationResult, TextStream

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
