"""The named steps of a local training run (:func:`tuneloop.training.local.train` calls them in order): prepare the
process, load the model and its LoRA setup, build the rows (the datasets TRL takes), plan the steps, make the
trainer, and save the adapter (the best epoch's, when a validation file chose one).

Machine-learning libraries are imported inside the steps, after :func:`prepare` has made the process offline.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from tuneloop.engine.inspection import lora_modules, lora_targets
from tuneloop.engine.template import given_template
from tuneloop.engine.weights import offline_environment
from tuneloop.training.config import LORA_BLOCKS, LORA_RANK, MAX_LENGTH, SCHEDULE, WARMUP, TrainConfig, TrainResult
from tuneloop.training.measure import best_epoch, masked_loss
from tuneloop.training.replay import replay_rows, replay_share
from tuneloop.training.tokenize import as_text, supervised_row, tools_of
from tuneloop.util.hardware import DevicePlan, choose, thread_limit

Row = dict[str, list[int]]


def prepare(config: TrainConfig) -> DevicePlan:
    """Make this process offline and quiet, seed it, size its threads; the device plan it trains on."""
    offline_environment()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    plan = config.plan or choose()
    torch.manual_seed(config.seed)
    if plan.device == "cpu":
        # Every core, unless OMP_NUM_THREADS asks this process to share them.
        torch.set_num_threads(thread_limit() or max(1, os.cpu_count() or 1))
    return plan


@dataclass
class Loaded:
    """The base model on its device, its tokenizer, and the LoRA adapter to train on it."""

    model: Any
    tokenizer: Any
    device: str  # this process's device: replay and scoring generate there
    lora: Any  # peft.LoraConfig
    targets: list[str]  # the kinds of layer LoRA goes on


def load_model(config: TrainConfig, plan: DevicePlan) -> Loaded:
    """The tokenizer and the base model (4-bit for QLoRA), on this process's device, with the LoRA config."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(config.checkpoint), local_files_only=True)
    if tokenizer.pad_token is None:  # Llama 3 and others have none; padding is masked out of the loss anyway
        tokenizer.pad_token = tokenizer.eos_token
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    load: dict[str, Any] = {"dtype": plan.torch_dtype}
    if config.quantize == "4bit":
        from transformers import BitsAndBytesConfig

        load["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=plan.torch_dtype)
        load["device_map"] = {"": rank}
    model = AutoModelForCausalLM.from_pretrained(str(config.checkpoint), local_files_only=True, **load)
    if config.quantize == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    # One GPU per process under accelerate launch.
    device = f"cuda:{rank}" if plan.device == "cuda" else plan.device
    if plan.device != "cpu" and config.quantize is None:
        model.to(device)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0,
                      target_modules=lora_modules(model, LORA_BLOCKS), task_type="CAUSAL_LM")
    return Loaded(model, tokenizer, device, lora, lora_targets(model))


@dataclass
class Rows:
    """The rows TRL trains on, and how they split into epochs."""

    train: list[dict[str, Any]]  # supervised: token rows of every epoch in order; DPO: prompt/chosen/rejected texts
    valid: list[Row] = field(default_factory=list)  # supervised: the validation examples' token rows
    blocks: list[int] = field(default_factory=list)  # supervised: the number of rows of each epoch
    replayed: int = 0  # the base model's answers among ``train``, all epochs together


def build_rows(config: TrainConfig, loaded: Loaded) -> Rows:
    """DPO: the preference pairs as texts. Supervised: every epoch's token rows (examples and replayed answers,
    shuffled per epoch), truncated to the model's context, and the validation examples'."""
    if config.method == "dpo":
        return Rows(dpo_rows(config.examples))
    limit = context_length(loaded.model)
    facts = [_truncate(supervised_row(loaded.tokenizer, e), limit) for e in config.examples]
    valid = [_truncate(supervised_row(loaded.tokenizer, e), limit) for e in config.validation]
    pool: list[Row] = []
    if config.replay:
        pool = replay_rows(loaded.model, loaded.tokenizer, cache=config.replay_cache, device=loaded.device)
    rows, blocks = epoch_blocks(facts, pool, config.n_epochs, config.seed)
    return Rows(rows, valid, blocks, replayed=sum(blocks) - len(facts) * config.n_epochs)


def dpo_rows(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "prompt": as_text(e["input"]["messages"], tools_of(e["input"])),
            "chosen": as_text(e["preferred_output"]),
            "rejected": as_text(e["non_preferred_output"]),
        }
        for e in examples
    ]


def epoch_blocks(facts: list[Row], pool: list[Row], epochs: int, seed: int) -> tuple[list[Row], list[int]]:
    """Every epoch's rows, in training order: all the examples and the next ``replay_share`` of the replay pool
    (so each epoch replays different answers at the cost of a few), shuffled with the job's seed."""
    import random

    share = min(len(pool), replay_share(len(facts)))
    rows: list[Row] = []
    blocks = []
    for epoch in range(epochs):
        block = facts + [pool[(epoch * share + k) % len(pool)] for k in range(share)]
        random.Random(seed * 1000 + epoch).shuffle(block)
        rows += block
        blocks.append(len(block))
    return rows, blocks


def context_length(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return min(int(getattr(config, "max_position_embeddings", MAX_LENGTH) or MAX_LENGTH), 8192)


def _truncate(row: Row, limit: int) -> Row:
    return {key: value[:limit] for key, value in row.items()}


@dataclass
class Schedule:
    """How many optimizer steps the run takes, and at which steps the supervised epochs end."""

    total_steps: int
    ends: dict[int, int]  # step → the epoch that ends there; empty for DPO, whose epochs are the trainer's own


def plan_steps(config: TrainConfig, rows: Rows) -> Schedule:
    per_step = config.batch_size * int(os.environ.get("WORLD_SIZE", "1"))
    if not rows.blocks:
        return Schedule(config.n_epochs * math.ceil(len(config.examples) / per_step), {})
    ends = {math.ceil(sum(rows.blocks[: k + 1]) / per_step): k + 1 for k in range(len(rows.blocks))}
    return Schedule(math.ceil(len(rows.train) / per_step), ends)


def trainer_arguments(config: TrainConfig, plan: DevicePlan) -> dict[str, Any]:
    """The TrainingArguments both trainers share."""
    return {
        "output_dir": str(config.work_dir / "trainer"),
        "num_train_epochs": config.n_epochs,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.rate,
        "lr_scheduler_type": SCHEDULE,
        "warmup_steps": WARMUP,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": plan.device == "cpu",
        "seed": config.seed,
        "data_seed": config.seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # Mixed precision where the GPU has it (fp16 brings loss scaling); TRL's bf16 default would run autocast on
        # a CPU about 20x slower. Checkpointing trades time for memory these small adapters do not need.
        "bf16": plan.precision == "bf16",
        "fp16": plan.precision == "fp16",
        _checkpointing_option(): False,
        "ddp_find_unused_parameters": False,  # under accelerate launch: every adapter weight takes part
    }


def _checkpointing_option() -> str:
    """The name of TrainingArguments' checkpointing switch: ``activation_checkpointing`` in recent transformers 5
    releases, ``gradient_checkpointing`` in earlier ones (5.17 on the GPU machine refused the new name)."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def make_trainer(config: TrainConfig, plan: DevicePlan, loaded: Loaded, rows: Rows, callbacks: list[Any]) -> Any:
    """TRL's DPOTrainer, or SFTTrainer (padding-free, the planned rows in order), with the LoRA adapter."""
    from datasets import Dataset

    common = trainer_arguments(config, plan)
    dataset = Dataset.from_list(rows.train)
    if config.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, max_length=MAX_LENGTH, beta=config.beta)
        return DPOTrainer(model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.tokenizer,
                          peft_config=loaded.lora, callbacks=callbacks)
    from trl import SFTConfig

    # The rows are planned epoch by epoch (each shuffled, with its own share of replayed answers): one pass, in order.
    args = SFTConfig(**{**common, "num_train_epochs": 1}, padding_free=True, max_length=None,
                     train_sampling_strategy="sequential")
    return _sft_trainer()(model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.tokenizer,
                          peft_config=loaded.lora, callbacks=callbacks)


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


def save_adapter(config: TrainConfig, trainer: Any, tokenizer: Any, result: TrainResult) -> None:
    """Save the trained adapter and the tokenizer in ``output_dir``; with a validation file, the best epoch's
    adapter is the one left there (``result.best``)."""
    output = config.output_dir
    output.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(output))
    tokenizer.chat_template = given_template(tokenizer)  # as trained: no default system prompt added
    tokenizer.save_pretrained(str(output))
    result.best = best_epoch(result.epochs)
    if result.best is not None and result.best.folder is not None and result.best is not result.epochs[-1]:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copyfile(result.best.folder / name, output / name)
