"""The trainer callback of a local run: it reports each logged step, stops the run when the job is cancelled, and at
each epoch's end measures the model on the validation data and keeps its adapter as a checkpoint.

Imports transformers: :func:`tuneloop.training.local.train` imports this module once the process is offline.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from tuneloop.training.config import EpochResult, Progress, TrainConfig, TrainResult
from tuneloop.training.measure import score, validation_loss
from tuneloop.training.steps import Loaded, Rows, Schedule


class Observer(TrainerCallback):
    """Turns the trainer's events into the run's callbacks and its :class:`TrainResult`.

    An epoch ends at a step; the trainer logs that step's loss only after ``on_step_end``. So the epoch is measured
    and checkpointed at that log (``on_log``), and its record carries the loss logged at its own step.
    """

    def __init__(self, config: TrainConfig, loaded: Loaded, rows: Rows, schedule: Schedule,
                 result: TrainResult) -> None:
        self.config = config
        self.loaded = loaded
        self.valid = rows.valid
        self.schedule = schedule
        self.result = result
        self.started = time.monotonic()
        self.ending: tuple[int, int] | None = None  # (step, epoch): an epoch that ends once its step is logged

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):  # noqa: ANN001, ANN201
        logs = logs or {}
        if "loss" in logs and state.is_world_process_zero:
            loss = float(logs["loss"])
            self.result.losses.append((state.global_step, loss))
            total = self.schedule.total_steps
            epoch = self.config.n_epochs * state.global_step / total if self.schedule.ends else float(state.epoch or 0)
            self.config.callbacks.on_progress(Progress(state.global_step, state.max_steps or total, loss,
                                                       logs.get("learning_rate"), epoch,
                                                       time.monotonic() - self.started))
        if self.ending is not None and self.ending[0] == state.global_step:
            self.end_epoch(self.ending[1], state, model)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.config.callbacks.should_stop():
            control.should_training_stop = True
        elif state.global_step in self.schedule.ends:
            self.ending = (state.global_step, self.schedule.ends[state.global_step])
            control.should_log = True  # the epoch's last step is always logged, whatever logging_steps says
        return control

    def on_epoch_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
        if not self.schedule.ends:  # DPO: the trainer's own epochs, whose last step was logged before this
            self.end_epoch(round(state.epoch or 0), state, model)
        return control

    def end_epoch(self, epoch: int, state: Any, model: Any) -> None:
        """Measure the model at the end of ``epoch`` and keep its adapter when it is one of the checkpoints."""
        self.ending = None
        callbacks = self.config.callbacks
        if model is None or callbacks.should_stop() or not state.is_world_process_zero:
            return
        record = EpochResult(epoch, state.global_step, self.result.loss_at(state.global_step))
        if self.valid:
            record.valid_loss = validation_loss(model, self.valid, self.loaded.device)
        if self.config.eval_items:
            record.valid_score = score(model, self.loaded.tokenizer, self.config.eval_items, self.loaded.device)
        keep_all = bool(self.valid or self.config.eval_items)
        if callbacks.on_checkpoint is not None and (keep_all or epoch > self.config.n_epochs
                                                    - self.config.keep_checkpoints):
            record.folder = self.config.output_dir / "checkpoints" / f"step-{state.global_step}"
            model.save_pretrained(str(record.folder))
            callbacks.on_checkpoint(record)
        self.result.epochs.append(record)
        if callbacks.on_epoch is not None:
            callbacks.on_epoch(record)
