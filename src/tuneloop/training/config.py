"""What a local training run is asked (:class:`TrainConfig`, in the manner of TRL's ``SFTConfig``) and what it
reports back (:class:`Progress` at each logged step, :class:`EpochResult` at each epoch's end, :class:`TrainResult`
at the end).

Importing this module loads no machine-learning library: the training process builds the config before torch is
needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.training import hyper

if TYPE_CHECKING:
    from tuneloop.evals import EvalItem
    from tuneloop.util.hardware import DevicePlan

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
    """One logged training step."""

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
    train_loss: float | None  # the training loss logged at ``step`` itself
    valid_loss: float | None = None
    valid_score: float | None = None  # share of the validation questions answered right
    folder: Path | None = None  # the epoch's adapter, when kept as a checkpoint


@dataclass
class TrainResult:
    """What a finished run measured."""

    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss) as logged
    total_steps: int = 0
    seconds: float = 0.0
    targets: list[str] = field(default_factory=list)
    peak_memory_bytes: int = 0
    epochs: list[EpochResult] = field(default_factory=list)
    best: EpochResult | None = None  # the epoch registered, when a validation file chose it
    replayed: int = 0  # the base model's own answers mixed in to keep what it knew

    def loss_at(self, step: int) -> float | None:
        """The training loss logged at ``step`` (the mean over the logging window that ends there)."""
        return next((loss for logged, loss in reversed(self.losses) if logged == step), None)


def _never() -> bool:
    return False


def _ignore(_: Progress) -> None:
    return None


@dataclass
class TrainCallbacks:
    """How a run talks to the job that asked for it; every one is called on the main process (rank 0) only,
    except ``should_stop``, asked by every process."""

    on_progress: Callable[[Progress], None] = _ignore  # each logged step
    should_stop: Callable[[], bool] = _never  # asked at each step: True cancels the run (:class:`Cancelled`)
    on_start: Callable[[], None] | None = None  # everything is loaded, the first step begins
    on_epoch: Callable[[EpochResult], None] | None = None  # each epoch's end, measured
    # Each kept checkpoint, saved in ``output_dir/checkpoints/step-N``; None: no checkpoint is saved.
    on_checkpoint: Callable[[EpochResult], None] | None = None


@dataclass
class TrainConfig:
    """Everything one local fine-tuning run is asked: the data, the method and its hyperparameters, the hardware
    and the callbacks. The defaults are those of a job whose hyperparameters were all "auto" on 60 examples
    (:func:`tuneloop.training.hyper.resolve`); :meth:`from_job` fills them from a job's resolved values.
    """

    checkpoint: Path  # the base model's folder (safetensors weights and tokenizer)
    examples: list[dict[str, Any]]  # training examples, in OpenAI's fine-tuning JSONL shapes
    output_dir: Path  # where the adapter (PEFT format, with the tokenizer) and its checkpoints are saved
    work_dir: Path  # the trainer's scratch folder
    method: str = "supervised"  # "supervised" (SFT) or "dpo"
    n_epochs: int = 5
    batch_size: int = 8  # per process: several GPUs under accelerate launch multiply it
    learning_rate: float | None = None  # None: hyper.learning_rate for the method and batch size
    beta: float = 0.1  # DPO only: how far the tuned model may move from the base model
    seed: int = 0  # model initialisation, data order and replayed answers
    # Supervised only: the base model's own answers to general questions mixed in (tuneloop.training.replay).
    replay: bool = True
    replay_cache: Path | None = None  # where those answers are kept between jobs; None: generated each time
    validation: list[dict[str, Any]] = field(default_factory=list)  # chat examples: a validation loss per epoch
    eval_items: list[EvalItem] = field(default_factory=list)  # questions with expected answers: a score per epoch
    plan: DevicePlan | None = None  # device and precision; None: the best this machine has (util.hardware.choose)
    quantize: str | None = None  # "4bit": QLoRA (bitsandbytes, CUDA only)
    keep_checkpoints: int = KEEP_CHECKPOINTS  # the last epochs kept as checkpoints (all of them when validating)
    callbacks: TrainCallbacks = field(default_factory=TrainCallbacks)

    @classmethod
    def from_job(cls, hyperparameters: dict[str, Any], **fields: Any) -> TrainConfig:
        """A config from a job's resolved ``hyperparameters`` (``n_epochs``, ``batch_size``,
        ``learning_rate_multiplier``, ``beta``, and ``replay`` when a bench turns it off) and the other fields."""
        method = fields.get("method", "supervised")
        config = cls(**fields, n_epochs=int(hyperparameters["n_epochs"]),
                     batch_size=int(hyperparameters["batch_size"]),
                     learning_rate=hyper.learning_rate(method, hyperparameters),
                     replay=bool(hyperparameters.get("replay", True)))
        if "beta" in hyperparameters:
            config.beta = float(hyperparameters["beta"])
        return config

    @property
    def rate(self) -> float:
        """The learning rate the trainer gets."""
        if self.learning_rate is not None:
            return self.learning_rate
        return hyper.learning_rate(self.method, {"batch_size": self.batch_size})
