"""The local trainer: TRL's SFTTrainer / DPOTrainer with a PEFT LoRA adapter on any local base model, on the
device chosen for the job (CUDA in bf16 or fp16, MPS, or the CPU in fp32), QLoRA (4-bit, bitsandbytes) on CUDA.

Runs in the job's training process (``tuneloop.training.run``, under ``accelerate launch`` for several GPUs);
the CLI and the server never import it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.engine.inspection import lora_modules, lora_targets
from tuneloop.engine.reference import greedy_batch
from tuneloop.engine.template import given_template
from tuneloop.engine.weights import offline_environment
from tuneloop.evals import EvalItem
from tuneloop.training.hyper import learning_rate
from tuneloop.training.replay import replay_rows, replay_share
from tuneloop.training.tokenize import as_text, render, supervised_row, tools_of
from tuneloop.util.hardware import DevicePlan, choose, peak_memory_bytes, thread_limit

# LoRA goes on every linear layer (found per architecture) of the upper half of the blocks; never on the embeddings
# or lm_head. Measured on two made-up fact sets: as many held-out phrasings learned as with every block, more general
# answers kept, and each step about a third faster (no backward pass through the lower half).
LORA_RANK = 16
LORA_BLOCKS = 0.5
MAX_LENGTH = 1024
SCHEDULE = "cosine"
WARMUP = 0.1  # the share of the steps the learning rate warms up over
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
class EpochResult:
    """What the validation file said at the end of one epoch."""

    epoch: int
    step: int
    train_loss: float | None
    valid_loss: float | None = None
    valid_score: float | None = None  # share of the validation questions answered right
    folder: Path | None = None  # the epoch's adapter, when kept as a checkpoint


@dataclass
class TrainResult:
    losses: list[tuple[int, float]] = field(default_factory=list)
    total_steps: int = 0
    seconds: float = 0.0
    targets: list[str] = field(default_factory=list)
    peak_memory_bytes: int = 0
    epochs: list[EpochResult] = field(default_factory=list)
    best: EpochResult | None = None  # the epoch registered, when a validation file chose it
    replayed: int = 0  # the base model's own answers mixed in to keep what it knew


def _checkpointing_option() -> str:
    """The name of TrainingArguments' checkpointing switch: ``activation_checkpointing`` in recent transformers 5
    releases, ``gradient_checkpointing`` in earlier ones (5.17 on the GPU machine refused the new name)."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def dpo_rows(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "prompt": as_text(e["input"]["messages"], tools_of(e["input"])),
            "chosen": as_text(e["preferred_output"]),
            "rejected": as_text(e["non_preferred_output"]),
        }
        for e in examples
    ]


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
    on_checkpoint: Callable[[EpochResult], None] | None = None,
    plan: DevicePlan | None = None,
    quantize: str | None = None,
    on_start: Callable[[], None] | None = None,
    validation: list[dict[str, Any]] | None = None,
    eval_items: list[EvalItem] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    replay_cache: Path | None = None,
) -> TrainResult:
    """Train a LoRA adapter and save it (PEFT format, with the tokenizer) in ``output_dir``.

    Supervised examples train on every assistant message, padding-free (each batch is one sequence of its
    examples, attention kept within each), with the base model's own answers to general questions mixed in
    (:mod:`tuneloop.training.replay`) so that it keeps what it knew. At the end of each epoch the
    ``validation`` examples give a validation loss and the ``eval_items`` a score (``on_epoch``). The adapters of
    the last ``KEEP_CHECKPOINTS`` epochs (of every epoch, with validation data) are saved in
    ``output_dir/checkpoints/step-N`` (``on_checkpoint``); with validation data the best epoch's adapter is the
    one left in ``output_dir``. ``on_start`` is called as the first step begins (everything is loaded).
    """

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
        # Every core, unless OMP_NUM_THREADS asks this process to share them.
        torch.set_num_threads(thread_limit() or max(1, os.cpu_count() or 1))

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
    # This process's device (one GPU per process under accelerate launch): replay and scoring generate there.
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if plan.device == "cuda" else plan.device
    if plan.device != "cpu" and quantize is None:
        model.to(device)
    targets = lora_targets(model)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0,
                      target_modules=lora_modules(model, LORA_BLOCKS), task_type="CAUSAL_LM")
    epochs = int(hyperparameters["n_epochs"])
    batch = int(hyperparameters["batch_size"])
    result = TrainResult(targets=targets)
    rows: list[dict[str, list[int]]] = []
    valid_rows: list[dict[str, list[int]]] = []
    blocks: list[int] = []  # supervised: the number of rows of each epoch, trained in order
    if method != "dpo":
        limit = context_length(model)
        facts = [_truncate(supervised_row(tokenizer, e), limit) for e in examples]
        valid_rows = [_truncate(supervised_row(tokenizer, e), limit) for e in validation or []]
        pool: list[dict[str, list[int]]] = []
        if hyperparameters.get("replay", True):

            pool = replay_rows(model, tokenizer, cache=replay_cache, device=device)
        rows, blocks = epoch_blocks(facts, pool, epochs, seed)
        result.replayed = sum(blocks) - len(facts) * epochs
    common = {
        "output_dir": str(work_dir / "trainer"),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch,
        "learning_rate": learning_rate(method, hyperparameters),
        "lr_scheduler_type": SCHEDULE,
        "warmup_steps": WARMUP,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": plan.device == "cpu",
        "seed": seed,
        "data_seed": seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # Mixed precision where the GPU has it (fp16 brings loss scaling); TRL's bf16 default would run autocast on
        # a CPU about 20x slower. Checkpointing trades time for memory these small adapters do not need.
        "bf16": plan.precision == "bf16",
        "fp16": plan.precision == "fp16",
        _checkpointing_option(): False,
        "ddp_find_unused_parameters": False,  # under accelerate launch: every adapter weight takes part
    }
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = batch * processes
    if blocks:
        total_steps = math.ceil(len(rows) / per_step)
        ends = {math.ceil(sum(blocks[: k + 1]) / per_step): k + 1 for k in range(len(blocks))}  # step → epoch
    else:
        total_steps = epochs * math.ceil(len(examples) / per_step)
        ends = {}
    result.total_steps = total_steps
    started = time.monotonic()
    keep_all = bool(valid_rows or eval_items)

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            logs = logs or {}
            if "loss" in logs and state.is_world_process_zero:
                loss = float(logs["loss"])
                result.losses.append((state.global_step, loss))
                epoch = epochs * state.global_step / total_steps if ends else float(state.epoch or 0)
                on_progress(Progress(state.global_step, state.max_steps or total_steps, loss,
                                     logs.get("learning_rate"), epoch, time.monotonic() - started))

        def on_epoch_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
            if not ends:
                end_epoch(round(state.epoch or 0), state, model)
            return control

        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
            if should_stop():
                control.should_training_stop = True
            elif state.global_step in ends:
                end_epoch(ends[state.global_step], state, model)
            return control

    def end_epoch(epoch: int, state: Any, model: Any) -> None:
        if model is None or should_stop() or not state.is_world_process_zero:
            return
        record = EpochResult(epoch, state.global_step, result.losses[-1][1] if result.losses else None)
        if valid_rows:
            record.valid_loss = validation_loss(model, valid_rows, device)
        if eval_items:
            record.valid_score = score(model, tokenizer, eval_items, device)
        if on_checkpoint is not None and (keep_all or epoch > epochs - KEEP_CHECKPOINTS):
            record.folder = output_dir / "checkpoints" / f"step-{state.global_step}"
            model.save_pretrained(str(record.folder))
            on_checkpoint(record)
        result.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)

    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**common, max_length=MAX_LENGTH, beta=float(hyperparameters["beta"]))
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(dpo_rows(examples)),
                             processing_class=tokenizer, peft_config=lora, callbacks=[Report()])
    else:
        from trl import SFTConfig

        # The rows are planned epoch by epoch (each shuffled, with its own share of replayed answers): one pass,
        # in order.
        config = SFTConfig(**{**common, "num_train_epochs": 1}, padding_free=True, max_length=None,
                           train_sampling_strategy="sequential")
        trainer = _sft_trainer()(model=model, args=config, train_dataset=Dataset.from_list(rows),
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
        tokenizer.chat_template = given_template(tokenizer)  # as trained: no default system prompt added
        tokenizer.save_pretrained(str(output_dir))
        result.best = best_epoch(result.epochs)
        if result.best is not None and result.best.folder is not None and result.best is not result.epochs[-1]:
            for name in ("adapter_model.safetensors", "adapter_config.json"):
                shutil.copyfile(result.best.folder / name, output_dir / name)
    return result


def epoch_blocks(facts: list[dict[str, list[int]]], pool: list[dict[str, list[int]]], epochs: int,
                 seed: int) -> tuple[list[dict[str, list[int]]], list[int]]:
    """Every epoch's rows, in training order: all the examples and the next ``replay_share`` of the replay pool
    (so each epoch replays different answers at the cost of a few), shuffled with the job's seed."""
    import random

    share = min(len(pool), replay_share(len(facts)))
    rows: list[dict[str, list[int]]] = []
    blocks = []
    for epoch in range(epochs):
        block = facts + [pool[(epoch * share + k) % len(pool)] for k in range(share)]
        random.Random(seed * 1000 + epoch).shuffle(block)
        rows += block
        blocks.append(len(block))
    return rows, blocks


def best_epoch(epochs: list[EpochResult]) -> EpochResult | None:
    """The epoch a validation file prefers: the highest score, then the lowest validation loss, then the later."""
    scored = [e for e in epochs if e.valid_score is not None or e.valid_loss is not None]
    if not scored:
        return None
    return max(scored, key=lambda e: (e.valid_score if e.valid_score is not None else 0.0,
                                      -(e.valid_loss if e.valid_loss is not None else 0.0), e.epoch))


def context_length(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return min(int(getattr(config, "max_position_embeddings", MAX_LENGTH) or MAX_LENGTH), 8192)


def _truncate(row: dict[str, list[int]], limit: int) -> dict[str, list[int]]:
    return {key: value[:limit] for key, value in row.items()}


def _sft_trainer() -> type:
    """SFTTrainer whose loss projects onto the vocabulary only the positions that are trained.

    In a padding-free batch (one row) the LM head runs on the positions whose next token is in the loss, through
    the model's own ``logits_to_keep`` (soft-capping and scaling included); the prompt tokens, most of a short
    example, never reach the 50k-wide projection. Other batches take TRL's path.
    """
    from trl import SFTTrainer

    class Trainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            if inputs["input_ids"].shape[0] != 1 or "position_ids" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            total, count, outputs = masked_loss(model, inputs)
            loss = total / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    return Trainer


_MODEL_KEYS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def masked_loss(model: Any, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(summed cross-entropy, trained tokens, model outputs) of one padding-free batch."""
    import torch

    labels = inputs["labels"]
    keep = (labels[0, 1:] != -100).nonzero().flatten()
    outputs = model(**{k: v for k, v in inputs.items() if k in _MODEL_KEYS}, use_cache=False, logits_to_keep=keep)
    targets = labels[0, keep + 1]
    total = torch.nn.functional.cross_entropy(outputs.logits[0].float(), targets, reduction="sum")
    return total, torch.as_tensor(targets.numel(), device=total.device), outputs


def packed(rows: list[dict[str, list[int]]], device: str) -> dict[str, Any]:
    """Rows → one padding-free batch: ids end to end, positions restarting at each row, labels on the mask."""
    import torch

    ids = [t for row in rows for t in row["input_ids"]]
    positions = [p for row in rows for p in range(len(row["input_ids"]))]
    labels = [t if m else -100 for row in rows for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)]
    return {"input_ids": torch.tensor([ids], device=device), "position_ids": torch.tensor([positions], device=device),
            "labels": torch.tensor([labels], device=device)}


def validation_loss(model: Any, rows: list[dict[str, list[int]]], device: str, batch: int = 8) -> float | None:
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            summed, n, _ = masked_loss(model, packed(rows[start:start + batch], device))
            total += float(summed)
            count += int(n)
    model.train(was_training)
    return total / count if count else None


def score(model: Any, tokenizer: Any, items: list[EvalItem], device: str, batch: int = 16) -> float:
    """The share of ``items`` the model in training answers right (greedy, batched)."""

    longest = max(len(tokenizer.encode(e, add_special_tokens=False)) for item in items for e in item.expected)
    max_tokens = min(64, max(32, 2 * longest + 16))
    was_training = model.training
    model.eval()
    passed = 0
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        prompts = [render(tokenizer, list(item.messages), prompt=True) for item in chunk]
        for ids, item in zip(greedy_batch(model, tokenizer, prompts, max_tokens, device), chunk, strict=True):
            passed += item.grade(tokenizer.decode(ids, skip_special_tokens=True).strip())
    model.train(was_training)
    return passed / len(items)


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
