"""Measures of the model in training: the loss of padding-free batches (the trainer's and the validation loss),
the share of validation questions answered right, and the epoch a validation file prefers."""

from __future__ import annotations

from typing import Any

from tuneloop.engine.reference import greedy_batch
from tuneloop.evals import EvalItem
from tuneloop.training.config import EpochResult
from tuneloop.training.tokenize import render

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
    """The mean loss per trained token of ``rows`` (token rows with their assistant masks)."""
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


def best_epoch(epochs: list[EpochResult]) -> EpochResult | None:
    """The epoch a validation file prefers: the highest score, then the lowest validation loss, then the later."""
    scored = [e for e in epochs if e.valid_score is not None or e.valid_loss is not None]
    if not scored:
        return None
    return max(scored, key=lambda e: (e.valid_score if e.valid_score is not None else 0.0,
                                      -(e.valid_loss if e.valid_loss is not None else 0.0), e.epoch))
