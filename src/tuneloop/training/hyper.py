"""Hyperparameters: numbers or "auto", resolved to values that make a few dozen examples learn in minutes on a CPU."""

from __future__ import annotations

from typing import Any

from tuneloop.errors import InputError

# LoRA (upper half of the blocks) on SmolLM2-135M, measured on two sets of 20 made-up facts × 3 phrasings
# (bench/learning.py; figures in the README): at batch 8, lr 2e-3 with 5 epochs learns 17-20 of 20 held-out
# phrasings; 1e-3 learned 14-17, and 3e-3 or 8 epochs or rank 32 lost more general answers. The rate is for
# batch 8 and scales with the square root of the batch size. DPO moves further per step: a lower base rate.
BASE_LEARNING_RATE = {"supervised": 2e-3, "dpo": 1e-4}
REFERENCE_BATCH = {"supervised": 8, "dpo": 0}
TARGET_EXAMPLE_PASSES = 300
LIMITS: dict[str, tuple[float, float, type]] = {
    "n_epochs": (1, 50, int),
    "batch_size": (1, 256, int),
    "learning_rate_multiplier": (1e-4, 10.0, float),
    "beta": (1e-3, 2.0, float),
}


def _number(name: str, value: Any) -> float | int | None:
    if value is None or value == "auto":
        return None
    low, high, kind = LIMITS[name]
    try:
        number = kind(value)
        if kind is int and float(value) != int(number):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"hyperparameter {name} is {value!r}; give a number or 'auto'",
                         param=f"hyperparameters.{name}") from None
    if not low <= number <= high:
        raise InputError(f"hyperparameter {name} is {value!r}; it must be between {low:g} and {high:g}, or 'auto'",
                         param=f"hyperparameters.{name}")
    return number


def resolve(method: str, examples: int, requested: dict[str, Any] | None = None) -> dict[str, Any]:
    """Concrete values for ``n_epochs``, ``batch_size``, ``learning_rate_multiplier`` (and ``beta`` for DPO)."""
    requested = dict(requested or {})
    unknown = set(requested) - set(LIMITS)
    if unknown:
        raise InputError(f"unknown hyperparameter(s) {', '.join(sorted(unknown))}; use {', '.join(LIMITS)}",
                         param="hyperparameters")
    if "beta" in requested and requested["beta"] not in (None, "auto") and method != "dpo":
        raise InputError("hyperparameter beta applies to DPO only; drop it or use method dpo",
                         param="hyperparameters.beta")
    epochs = _number("n_epochs", requested.get("n_epochs"))
    batch = _number("batch_size", requested.get("batch_size"))
    multiplier = _number("learning_rate_multiplier", requested.get("learning_rate_multiplier"))
    examples = max(1, examples)
    values: dict[str, Any] = {
        "n_epochs": int(epochs) if epochs else min(10, max(3, round(TARGET_EXAMPLE_PASSES / examples))),
        "batch_size": int(batch) if batch else (8 if examples >= 48 else 4 if examples >= 16 else 2),
        "learning_rate_multiplier": float(multiplier) if multiplier else 1.0,
    }
    if method == "dpo":
        beta = _number("beta", requested.get("beta"))
        values["beta"] = float(beta) if beta else 0.1
    return values


def learning_rate(method: str, hyperparameters: dict[str, Any]) -> float:
    rate = BASE_LEARNING_RATE[method] * float(hyperparameters.get("learning_rate_multiplier", 1.0))
    reference = REFERENCE_BATCH[method]
    if reference:
        rate *= (int(hyperparameters.get("batch_size", reference)) / reference) ** 0.5
    return rate
