"""The local trainer: TRL's SFTTrainer / DPOTrainer with a PEFT LoRA adapter on any local base model, on the
device chosen for the job (CUDA in bf16 or fp16, MPS, or the CPU in fp32), QLoRA (4-bit, bitsandbytes) on CUDA.

Runs in the job's training process (``tuneloop.training.run``, under ``accelerate launch`` for several GPUs);
the CLI and the server never import it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.hardware import DevicePlan
from tuneloop.training.hyper import learning_rate

# LoRA goes on every linear layer of the blocks (found per architecture); never on the embeddings or lm_head.
LORA_RANK = 16
MAX_LENGTH = 1024
KEEP_CHECKPOINTS = 3  # like OpenAI: the adapters of the last three epochs are kept as checkpoints


class Cancelled(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The job was cancelled while training."""


@dataclass
class Progress:
    step: int
    total_steps: int
    loss: float | None
    learning_rate: float | None
    epoch: float
    elapsed: float

    @property
    def eta(self) -> float | None:
        if self.step <= 0:
            return None
        return self.elapsed / self.step * max(0, self.total_steps - self.step)


@dataclass
class TrainResult:
    losses: list[tuple[int, float]] = field(default_factory=list)
    total_steps: int = 0
    seconds: float = 0.0
    targets: list[str] = field(default_factory=list)
    peak_memory_bytes: int = 0


def sft_rows(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat examples → TRL conversational prompt/completion rows (loss on the last assistant turn)."""
    rows = []
    for example in examples:
        messages = [{"role": m["role"], "content": _text(m.get("content"))} for m in example["messages"]]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"prompt": messages[:last], "completion": [messages[last]]})
    return rows


def dpo_rows(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def clean(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": _text(m.get("content"))} for m in messages]

    return [
        {
            "prompt": clean(e["input"]["messages"]),
            "chosen": clean(e["preferred_output"]),
            "rejected": clean(e["non_preferred_output"]),
        }
        for e in examples
    ]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def read_examples(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def train(
    *,
    checkpoint: Path,
    examples: list[dict[str, Any]],
    method: str,
    hyperparameters: dict[str, Any],
    seed: int,
    output_dir: Path,
    work_dir: Path,
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    on_checkpoint: Callable[[int, Path, float | None], None] | None = None,
    plan: DevicePlan | None = None,
    quantize: str | None = None,
    on_start: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter and save it (PEFT format, with the tokenizer) in ``output_dir``.

    At the end of each of the last ``KEEP_CHECKPOINTS`` epochs the adapter is also saved in
    ``output_dir/checkpoints/step-N`` and ``on_checkpoint(step, folder, last loss)`` is called. ``on_start`` is
    called as the first step begins (everything is loaded).
    """
    from tuneloop.engine.weights import offline_environment
    from tuneloop.hardware import choose, peak_memory_bytes
    from tuneloop.models.inspection import lora_targets

    offline_environment()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    plan = plan or choose()
    torch.manual_seed(seed)
    if plan.device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    if tokenizer.pad_token is None:  # Llama 3 and others have none; padding is masked out of the loss anyway
        tokenizer.pad_token = tokenizer.eos_token
    load: dict[str, Any] = {"dtype": plan.torch_dtype}
    if quantize == "4bit":
        from transformers import BitsAndBytesConfig

        load["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=plan.torch_dtype)
        load["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), local_files_only=True, **load)
    if quantize == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    targets = lora_targets(model)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")
    epochs = int(hyperparameters["n_epochs"])
    batch = int(hyperparameters["batch_size"])
    common = {
        "output_dir": str(work_dir / "trainer"),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch,
        "learning_rate": learning_rate(method, hyperparameters),
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": plan.device == "cpu",
        "seed": seed,
        "data_seed": seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "max_length": MAX_LENGTH,
        # Mixed precision where the GPU has it (fp16 brings loss scaling); TRL's bf16 default would run autocast on
        # a CPU about 20x slower. Checkpointing trades time for memory these small adapters do not need.
        "bf16": plan.precision == "bf16",
        "fp16": plan.precision == "fp16",
        "activation_checkpointing": False,
        "ddp_find_unused_parameters": False,  # under accelerate launch: every adapter weight takes part
    }
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    total_steps = epochs * math.ceil(len(examples) / (batch * processes))
    result = TrainResult(total_steps=total_steps, targets=targets)
    started = time.monotonic()

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            logs = logs or {}
            if "loss" in logs and state.is_world_process_zero:
                loss = float(logs["loss"])
                result.losses.append((state.global_step, loss))
                on_progress(Progress(state.global_step, state.max_steps or total_steps, loss,
                                     logs.get("learning_rate"), float(state.epoch or 0), time.monotonic() - started))

        def on_epoch_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
            epoch = round(state.epoch or 0)
            if (on_checkpoint is None or model is None or epoch <= epochs - KEEP_CHECKPOINTS or should_stop()
                    or not state.is_world_process_zero):
                return control
            folder = output_dir / "checkpoints" / f"step-{state.global_step}"
            model.save_pretrained(str(folder))
            on_checkpoint(state.global_step, folder, result.losses[-1][1] if result.losses else None)
            return control

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if should_stop():
                control.should_training_stop = True
            return control

    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**common, beta=float(hyperparameters["beta"]))
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(dpo_rows(examples)),
                             processing_class=tokenizer, peft_config=lora, callbacks=[Report()])
    else:
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(**common, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(sft_rows(examples)),
                             processing_class=tokenizer, peft_config=lora, callbacks=[Report()])
    if should_stop():
        raise Cancelled
    if on_start is not None:
        on_start()
    trainer.train()
    if should_stop():
        raise Cancelled
    result.total_steps = trainer.state.max_steps or total_steps
    result.seconds = time.monotonic() - started
    result.peak_memory_bytes = peak_memory_bytes(plan)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
    return result


def write_results(result: TrainResult, directory: Path, title: str) -> list[Path]:
    """The per-step metrics CSV (as OpenAI's result file) and a loss-curve PNG."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "step_metrics.csv"
    lines = ["step,train_loss"] + [f"{step},{loss:.6f}" for step, loss in result.losses]
    csv_path.write_text("\n".join(lines) + "\n")
    png_path = directory / "loss_curve.png"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if result.losses:
        steps, losses = zip(*result.losses, strict=True)
        axes.plot(steps, losses, marker="o", markersize=2, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png_path)
    plt.close(figure)
    return [csv_path, png_path]
