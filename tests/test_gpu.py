"""Training and generation on CUDA: bf16/fp16, QLoRA, several GPUs. Marked `gpu`: they run where torch sees a
CUDA GPU (the device machine lent to some sessions) and are skipped on CPU-only machines, where every other
test covers the same code on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import HANG, MODELS_DIR, gadget_facts
from tiny_models import build_tiny_model

from tuneloop.generation import GenerationOptions
from tuneloop.runtime import Runtime
from tuneloop.training import FineTuning
from tuneloop.util.hardware import choose

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")]


def trained_on(ft: FineTuning, job_id: str) -> dict:
    done = [e for e in ft.events(job_id) if e.message.startswith("The job has successfully completed")]
    assert done, [e.message for e in ft.events(job_id)]
    return done[0].data


def test_cuda_is_chosen_with_mixed_precision(home: Path) -> None:
    plan = choose()
    assert plan.device == "cuda" and plan.precision in ("bf16", "fp16") and plan.gpus >= 1


def test_smollm2_trains_and_chats_on_cuda(home: Path, models_dir: Path) -> None:
    ft = FineTuning()
    file = ft.add_file(gadget_facts(), filename="facts.jsonl")
    job = ft.wait(ft.create(file.id, device="cuda", hyperparameters={"n_epochs": 2}).id, timeout=HANG)
    assert job.status == "succeeded", job.error
    numbers = trained_on(ft, job.id)
    assert "NVIDIA" in numbers["device"] or "cuda" in numbers["device"].lower()
    assert numbers["tokens_per_second"] > 0 and numbers["peak_memory_mb"] > 0
    provider, model = Runtime().resolve(job.fine_tuned_model)
    assert provider.complete([{"role": "user", "content": "What is the capital of France?"}],
                             GenerationOptions(max_tokens=12), model=model).text


def test_qlora_4bit_on_cuda(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes: pip install 'tuneloop[gpu]'")
    folder = build_tiny_model("llama", MODELS_DIR / "smollm2-135m-instruct", tmp_path / "tiny")
    runtime = Runtime()
    runtime.registry.add("tiny-llama", folder)
    ft = FineTuning(runtime)
    file = ft.add_file(gadget_facts(), filename="facts.jsonl")
    job = ft.wait(ft.create(file.id, model="tiny-llama", quantize="4bit", hyperparameters={"n_epochs": 2}).id,
                  timeout=HANG)
    assert job.status == "succeeded", job.error
    assert any("4-bit QLoRA" in e.message for e in ft.events(job.id))
