"""The local trainer: TRL's SFTTrainer / DPOTrainer with a PEFT LoRA adapter on any local base model, on the
device chosen for the job (CUDA in bf16 or fp16, MPS, or the CPU in fp32), QLoRA (4-bit, bitsandbytes) on CUDA.

Runs in the job's training process (``tuneloop.training.run``, under ``accelerate launch`` for several GPUs);
the CLI and the server never import it. What a run is asked is a :class:`TrainConfig`
(:mod:`tuneloop.training.config`); :func:`train` takes the named steps of :mod:`tuneloop.training.steps` in order,
with :class:`tuneloop.training.observe.Observer` watching the trainer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tuneloop.training.config import (
    KEEP_CHECKPOINTS,
    LORA_BLOCKS,
    LORA_RANK,
    MAX_LENGTH,
    Cancelled,
    EpochResult,
    Progress,
    TrainCallbacks,
    TrainConfig,
    TrainResult,
)
from tuneloop.training.measure import best_epoch, masked_loss, packed, score, validation_loss
from tuneloop.training.steps import (
    build_rows,
    context_length,
    dpo_rows,
    epoch_blocks,
    load_model,
    make_trainer,
    plan_steps,
    prepare,
    save_adapter,
)
from tuneloop.util.hardware import peak_memory_bytes

__all__ = [
    "KEEP_CHECKPOINTS", "LORA_BLOCKS", "LORA_RANK", "MAX_LENGTH", "Cancelled", "EpochResult", "Progress",
    "TrainCallbacks", "TrainConfig", "TrainResult", "best_epoch", "context_length", "dpo_rows", "epoch_blocks",
    "masked_loss", "packed", "read_examples", "score", "train", "validation_loss", "write_results",
]


def read_examples(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def train(config: TrainConfig) -> TrainResult:
    """Train a LoRA adapter and save it (PEFT format, with the tokenizer) in ``config.output_dir``.

    Supervised examples train on every assistant message, padding-free (each batch is one sequence of its
    examples, attention kept within each), with the base model's own answers to general questions mixed in
    (:mod:`tuneloop.training.replay`) so that it keeps what it knew. At the end of each epoch the validation
    examples give a validation loss and the eval items a score (``on_epoch``). The adapters of the last
    ``keep_checkpoints`` epochs (of every epoch, with validation data) are saved in ``output_dir/checkpoints/step-N``
    (``on_checkpoint``), each with the training loss logged at its step; with validation data the best epoch's
    adapter is the one left in ``output_dir``. ``on_start`` is called as the first step begins (everything is
    loaded). Raises :class:`Cancelled` when ``should_stop`` says so.
    """
    plan = prepare(config)
    loaded = load_model(config, plan)
    rows = build_rows(config, loaded)
    schedule = plan_steps(config, rows)
    result = TrainResult(targets=loaded.targets, replayed=rows.replayed, total_steps=schedule.total_steps)
    from tuneloop.training.observe import Observer  # imports transformers: only now that the process is offline

    observer = Observer(config, loaded, rows, schedule, result)
    trainer = make_trainer(config, plan, loaded, rows, [observer])
    callbacks = config.callbacks
    if callbacks.should_stop():
        raise Cancelled
    if callbacks.on_start is not None:
        callbacks.on_start()
    trainer.train()
    if callbacks.should_stop():
        raise Cancelled
    result.total_steps = trainer.state.max_steps or schedule.total_steps
    result.seconds = time.monotonic() - observer.started
    result.peak_memory_bytes = peak_memory_bytes(plan)
    if trainer.is_world_process_zero():
        save_adapter(config, trainer, loaded.tokenizer, result)
    return result


def write_results(result: TrainResult, directory: Path, title: str) -> list[Path]:
    """The per-step metrics CSV (as OpenAI's result file) and a loss-curve PNG."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "step_metrics.csv"
    by_step = {e.step: e for e in result.epochs}
    validated = any(e.valid_loss is not None or e.valid_score is not None for e in result.epochs)

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.6f}"

    lines = ["step,train_loss" + (",valid_loss,valid_score" if validated else "")]
    for step, loss in result.losses:
        line = f"{step},{loss:.6f}"
        if validated:
            epoch = by_step.get(step)
            line += f",{cell(epoch.valid_loss if epoch else None)},{cell(epoch.valid_score if epoch else None)}"
        lines.append(line)
    csv_path.write_text("\n".join(lines) + "\n")
    png_path = directory / "loss_curve.png"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if result.losses:
        steps, losses = zip(*result.losses, strict=True)
        axes.plot(steps, losses, marker="o", markersize=2, linewidth=1.2, label="training")
    valid = [(e.step, e.valid_loss) for e in result.epochs if e.valid_loss is not None]
    if valid:
        axes.plot(*zip(*valid, strict=True), marker="s", markersize=4, linewidth=1.2, label="validation")
        axes.legend(fontsize=8)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png_path)
    plt.close(figure)
    return [csv_path, png_path]
