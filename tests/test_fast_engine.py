"""The fast engine (onnxruntime, on models converted by onnxruntime-genai's builder): same answers as the reference
where it must, conversions cached and rebuilt, adapters merged, threads that follow a training job, and a cold
``ask`` without torch."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from tuneloop.engine import ensure_checkpoint
from tuneloop.engine.convert import STAMP_FILE, FastConversionError, ensure_fast
from tuneloop.engine.fast import FastEngine, get_fast_engine
from tuneloop.evals import read_eval_file
from tuneloop.generation import GenerationOptions

QUESTIONS = Path(__file__).resolve().parents[1] / "src/tuneloop/data/quality_questions.jsonl"
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in a few words."}, {"role": "user", "content": "What colour is the sky?"}],
    [{"role": "user", "content": "What is two plus two?"}, {"role": "assistant", "content": "Four."},
     {"role": "user", "content": "And what is the capital of Italy?"}],
    [{"role": "user", "content": "Write one sentence about the sea, with ünïcödé and 日本語."}],
]


@pytest.fixture(scope="module")
def fp32_engine(models_dir: Path) -> FastEngine:
    folder = ensure_fast(models_dir, ensure_checkpoint(models_dir), None, "fp32", model_id="smollm2-135m-instruct")
    return get_fast_engine(folder)


def test_prompts_are_the_reference_tokens(engine, fast_engine) -> None:  # noqa: ANN001
    for conversation in CONVERSATIONS:
        assert fast_engine.encode_chat(conversation) == engine.encode_chat(conversation)
    assert fast_engine.eos_token_ids == engine.eos_token_ids
    assert fast_engine.context_window == engine.context_window


@pytest.mark.slow
def test_fp32_mode_answers_token_for_token_as_the_reference(engine, fp32_engine) -> None:  # noqa: ANN001
    assert fp32_engine.batcher.last_only  # converted to give the last position's logits only, as the reference reads
    for conversation in CONVERSATIONS:
        want = engine.stream(conversation, GenerationOptions(max_tokens=40)).read()
        got = fp32_engine.stream(conversation, GenerationOptions(max_tokens=40)).read()
        assert (got.text, got.tokens_out, got.finish_reason) == (want.text, want.tokens_out, want.finish_reason)


@pytest.mark.slow
def test_the_default_int8_mode_is_right_wherever_fp32_is(fp32_engine, fast_engine) -> None:  # noqa: ANN001
    """The quality gate on a part of the question set (bench/generation.py runs all of it against every engine)."""
    items = read_eval_file(QUESTIONS)[:16]
    lost = []
    right = 0
    for item in items:
        reference = item.grade(fp32_engine.stream(list(item.messages), GenerationOptions(max_tokens=64)).read().text)
        answer = fast_engine.stream(list(item.messages), GenerationOptions(max_tokens=64)).read().text
        right += reference
        if reference and not item.grade(answer):
            lost.append((item.question, answer))
    assert right >= 10, "the reference itself got too few right to compare"
    assert not lost


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mistral", "gemma2"])
def test_a_sliding_window_is_kept_past_its_length(kind: str, models_dir: Path, tmp_path: Path) -> None:
    """Mistral's window (every layer; the builder leaves it out) and Gemma 2's (every other layer; the builder keeps
    it): past 64 tokens the fast engine attends over the window as transformers does, reading in chunks too."""
    from tiny_models import build_tiny_model

    from tuneloop.engine.reference import LocalEngine

    checkpoint = build_tiny_model(kind, ensure_checkpoint(models_dir), tmp_path / kind, sliding_window=64)
    fast = FastEngine(ensure_fast(tmp_path / "models", checkpoint, None, "fp32", model_id=kind))
    reference = LocalEngine(checkpoint)
    facts = " ".join(f"Box {i} holds {i * 7 % 13} apples." for i in range(45))
    for conversation in ([{"role": "user", "content": "Hello there!"}], [{"role": "user", "content": facts}]):
        want = reference.stream(conversation, GenerationOptions(max_tokens=40)).read()
        got = fast.stream(conversation, GenerationOptions(max_tokens=40)).read()
        assert (got.text, got.tokens_out) == (want.text, want.tokens_out)
    assert len(fast.encode_chat([{"role": "user", "content": facts}])) > 256  # longer than a chunk, and the window


@pytest.fixture(scope="module")
def tiny(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_model

    return build_tiny_model("llama", ensure_checkpoint(models_dir), tmp_path_factory.mktemp("tiny") / "llama")


@pytest.mark.slow
def test_a_conversion_is_cached_and_rebuilt_when_its_source_changes(tiny: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    steps = []
    folder = ensure_fast(models, tiny, None, "fp32", model_id="tiny", progress=lambda d, t, w: steps.append(w))
    assert (folder / "model.onnx").is_file() and steps  # converted, and said so
    stamp = (folder / STAMP_FILE).stat().st_mtime_ns
    steps.clear()
    assert ensure_fast(models, tiny, None, "fp32", model_id="tiny", progress=lambda d, t, w: steps.append(w)) == folder
    assert not steps and (folder / STAMP_FILE).stat().st_mtime_ns == stamp  # cached: not converted again

    weights = tiny / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # the source changed
    assert ensure_fast(models, tiny, None, "fp32", model_id="tiny") == folder
    assert (folder / STAMP_FILE).stat().st_mtime_ns != stamp
    assert [p.name for p in folder.parent.iterdir() if p.is_dir()] == ["fp32"]  # no temporary folder left behind


@pytest.mark.slow
def test_a_fine_tuned_adapter_is_merged_before_conversion(tiny: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneloop.engine.reference import LocalEngine

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(tiny))
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    adapter = tmp_path / "adapter"
    get_peft_model(base, config).save_pretrained(str(adapter))

    question = [{"role": "user", "content": "Hello there"}]
    want = LocalEngine(tiny, adapter).stream(question, GenerationOptions(max_tokens=12)).read().text
    plain = LocalEngine(tiny).stream(question, GenerationOptions(max_tokens=12)).read().text
    assert want != plain  # the adapter changes the answer, so the comparison below means something

    models = tmp_path / "models"
    merged = FastEngine(ensure_fast(models, tiny, adapter, "fp32", model_id="ft:tiny"))
    assert merged.stream(question, GenerationOptions(max_tokens=12)).read().text == want


@pytest.mark.slow
def test_a_model_that_cannot_be_converted_says_why_once(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(FastConversionError, match="cannot be converted") as first:
        ensure_fast(tmp_path / "models", broken, None, "int8", model_id="broken")
    # Remembered: the next attempt does not run the converter again (until the source changes).
    with pytest.raises(FastConversionError) as again:
        ensure_fast(tmp_path / "models", broken, None, "int8", model_id="broken")
    assert str(again.value) == str(first.value)


def test_threads_follow_a_training_job(fast_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # `make test` sets it to share the cores between workers
    lock = tmp_path / ".local-training.lock"
    engine = FastEngine(fast_engine.folder, training_lock=lock)
    engine.stream([{"role": "user", "content": "Hi"}], GenerationOptions(max_tokens=2)).read()
    assert engine.threads is None  # every core
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # what a training worker holds
        reply = engine.stream([{"role": "user", "content": "Hi"}], GenerationOptions(max_tokens=2)).read()
        assert engine.threads == 1 and reply.tokens_out >= 1
    engine.stream([{"role": "user", "content": "Hi"}], GenerationOptions(max_tokens=2)).read()
    assert engine.threads is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a process told to share the cores
    engine.stream([{"role": "user", "content": "Hi"}], GenerationOptions(max_tokens=2)).read()
    assert engine.threads == 1


def test_a_cold_ask_imports_neither_torch_nor_transformers(home: Path, fast_engine) -> None:  # noqa: ANN001
    first = subprocess.run([sys.executable, "-m", "tuneloop", "ask", "Hi"], capture_output=True, text=True,
                           check=False, timeout=600)  # creates the store: later runs only open it
    assert first.returncode == 0, first.stderr[-2000:]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tuneloop", "ask",
                           "What is the capital of France?"], capture_output=True, text=True, check=False,
                          env={**os.environ}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Paris" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in imported  # the fast engine answered
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "transformers", "peft", "trl", "alembic"))
    assert not heavy, heavy


def test_the_reference_engine_is_one_setting_away(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneloop.engine.reference import LocalEngine
    from tuneloop.runtime import Runtime

    monkeypatch.setenv("TUNELOOP_ENGINE", "reference")
    assert isinstance(Runtime().local.engine("smollm2-135m-instruct"), LocalEngine)
    monkeypatch.setenv("TUNELOOP_ENGINE", "int8")
    assert isinstance(Runtime().local.engine("smollm2-135m-instruct"), FastEngine)


def test_a_process_keeps_at_most_max_loaded_models(tiny: Path, tmp_path: Path) -> None:
    """The engines' cache is bounded: past ``keep`` models the one used least recently is let go, its batch thread
    ends once idle, and a reply it was asked for still comes whole (a later one loads it again)."""
    folders = [ensure_fast(tmp_path / f"m{i}", tiny, None, "fp32", model_id=f"tiny-{i}") for i in range(2)]
    first = get_fast_engine(folders[0], keep=1)
    asked = [{"role": "user", "content": "Hi"}]
    reply = first.stream(asked, GenerationOptions(max_tokens=3)).read()
    assert first.batcher._thread is not None  # noqa: SLF001 - the batch's own thread, which must end
    second = get_fast_engine(folders[1], keep=1)  # the first is let go
    assert second is not first and get_fast_engine(folders[1], keep=1) is second
    wait_until(lambda: first.batcher._thread is None, timeout=60, every=0.05)  # noqa: SLF001
    assert first.stream(asked, GenerationOptions(max_tokens=3)).read().text == reply.text  # still answers
    again = get_fast_engine(folders[0], keep=1)
    assert again is not first and again.stream(asked, GenerationOptions(max_tokens=3)).read().text == reply.text
