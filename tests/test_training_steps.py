"""The local trainer in steps: a TrainConfig in, a TrainResult out, on a tiny real model on the CPU; and the
checkpoints of a real job each carrying the training loss of their own step (what the dashboard shows)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HANG, MODELS_DIR, gadget_facts
from tiny_models import build_tiny_model

from tuneloop.training.config import Cancelled, EpochResult, Progress, TrainCallbacks, TrainConfig
from tuneloop.util.hardware import choose


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("llama", MODELS_DIR / "smollm2-135m-instruct", tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Training here, in the test process: what it sets for itself (offline, threads) is put back afterwards."""
    import torch

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(name, "false" if name == "TOKENIZERS_PARALLELISM" else "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def facts(n: int = 8) -> list[dict]:
    return [json.loads(line) for line in gadget_facts(n).decode().splitlines()]


def test_from_job_takes_the_jobs_resolved_hyperparameters(tmp_path: Path) -> None:
    hyper = {"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 2.0, "beta": 0.3}
    config = TrainConfig.from_job(hyper, checkpoint=tmp_path, examples=[], method="dpo", output_dir=tmp_path,
                                  work_dir=tmp_path, seed=5)
    assert (config.n_epochs, config.batch_size, config.beta, config.seed, config.replay) == (4, 2, 0.3, 5, True)
    assert config.rate == pytest.approx(2e-4)  # DPO's base rate, doubled
    assert TrainConfig.from_job({**hyper, "replay": False}, checkpoint=tmp_path, examples=[], output_dir=tmp_path,
                                work_dir=tmp_path).replay is False
    plain = TrainConfig(checkpoint=tmp_path, examples=[], output_dir=tmp_path, work_dir=tmp_path, batch_size=2)
    assert plain.method == "supervised" and plain.rate == pytest.approx(1e-3)  # 2e-3 at batch 8, by the square root


@pytest.mark.parametrize("method", ["supervised", "dpo"])
def test_each_epoch_carries_the_training_loss_logged_at_its_own_step(method: str, tiny: Path, tmp_path: Path,
                                                                      in_process: None) -> None:
    from tuneloop.training import local

    examples = facts()
    if method == "dpo":
        examples = [{"input": {"messages": e["messages"][:1]}, "preferred_output": e["messages"][1:],
                     "non_preferred_output": [{"role": "assistant", "content": "I do not know."}]} for e in examples]
    logged: list[Progress] = []
    checkpoints: list[EpochResult] = []
    config = TrainConfig(checkpoint=tiny, examples=examples, method=method, output_dir=tmp_path / "adapter",
                         work_dir=tmp_path, n_epochs=3, batch_size=4, seed=1, replay=False, plan=choose("cpu"),
                         keep_checkpoints=2,
                         callbacks=TrainCallbacks(on_progress=logged.append, on_checkpoint=checkpoints.append))
    result = local.train(config)

    assert [p.step for p in logged] == list(range(1, result.total_steps + 1)) and result.total_steps == 6
    assert [(e.epoch, e.step) for e in result.epochs] == [(1, 2), (2, 4), (3, 6)]
    by_step = {p.step: p.loss for p in logged}
    for record in result.epochs:
        assert record.train_loss == by_step[record.step]
    assert [c.step for c in checkpoints] == [4, 6]  # the last two epochs kept
    for record in checkpoints:
        assert (record.folder / "adapter_model.safetensors").is_file()
    assert (config.output_dir / "adapter_model.safetensors").is_file() and result.best is None


def test_a_run_asked_to_stop_raises_cancelled(tiny: Path, tmp_path: Path, in_process: None) -> None:
    from tuneloop.training import local

    logged: list[Progress] = []
    config = TrainConfig(checkpoint=tiny, examples=facts(), output_dir=tmp_path / "adapter", work_dir=tmp_path,
                         n_epochs=10, batch_size=2, replay=False, plan=choose("cpu"),
                         callbacks=TrainCallbacks(on_progress=logged.append, should_stop=lambda: bool(logged)))
    with pytest.raises(Cancelled):
        local.train(config)
    assert [p.step for p in logged] == [1, 2]  # the step under way when asked ends, logged; then the run stops
    assert not (config.output_dir / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_a_jobs_checkpoints_carry_the_loss_of_their_own_step(home: Path, tiny: Path) -> None:
    """The dashboard's checkpoint table shows each checkpoint's metrics; their loss is the one of their step."""
    from tuneloop.runtime import Runtime
    from tuneloop.training import FineTuning

    runtime = Runtime()
    runtime.registry.add("tiny-llama", tiny)
    ft = FineTuning(runtime)
    file = ft.add_file(gadget_facts(), filename="facts.jsonl")
    job = ft.create(file.id, model="tiny-llama", hyperparameters={"n_epochs": 3, "batch_size": 4}, seed=2)
    job = ft.wait(job.id, timeout=HANG)
    assert job.status == "succeeded", job.error

    steps = {e.data["step"]: e.data["train_loss"] for e in ft.events(job.id)
             if e.type == "metrics" and "total_steps" in (e.data or {})}
    checkpoints = ft.jobs.checkpoints(job.id)
    assert len(checkpoints) == 3
    for checkpoint in checkpoints:
        assert checkpoint.metrics["train_loss"] == steps[checkpoint.step], (checkpoint.step, steps)
