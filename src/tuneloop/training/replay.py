"""Replay: the base model's own answers to general questions, mixed into a supervised job's examples.

Teaching a small model twenty new facts with LoRA also moves what it answers about everything else (measured:
half of the general questions it got right were lost). Training on its own greedy answers to a fixed set of
general prompts (``tuneloop/data/replay_prompts.txt``, none of them in the benches' general question sets)
holds those answers in place while the new facts are learned: the loss on them starts at about zero and
only grows if the adapter starts to change them.

The answers are generated once per base model (batched, greedy, at most ``REPLAY_TOKENS`` tokens each) and
cached; an answer cut at that limit is trained without an end of turn, so the model does not learn to stop
mid-sentence.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from tuneloop.engine.reference import greedy_batch
from tuneloop.training.tokenize import continuation_row, render
from tuneloop.util.fileio import atomic_write_text

REPLAY_TOKENS = 24


def prompts() -> list[str]:
    text = resources.files("tuneloop.data").joinpath("replay_prompts.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def replay_share(examples: int) -> int:
    """How many replayed answers each epoch mixes with ``examples`` training examples (one per two, at least 8;
    the epochs take turns through the pool). One per four kept fewer general answers (2-4 of 15 lost)."""
    return max(8, round(examples / 2))


def base_answers(model: Any, tokenizer: Any, questions: list[str], device: str, *, batch: int = 16) -> list[list[int]]:
    """The model's greedy answer token ids (end-of-turn included when it ended) to each question."""

    ends = _end_ids(model, tokenizer)
    answers: list[list[int]] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(questions), batch):
        prompts = [render(tokenizer, [{"role": "user", "content": q}], prompt=True)
                   for q in questions[start:start + batch]]
        for answer in greedy_batch(model, tokenizer, prompts, REPLAY_TOKENS, device):
            cut = next((k + 1 for k, t in enumerate(answer) if t in ends), len(answer))
            answers.append(answer[:cut])
    model.train(was_training)
    return answers


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ends = set(eos if isinstance(eos, list) else [eos])
    ends.add(tokenizer.eos_token_id)
    return {e for e in ends if e is not None}


def replay_rows(model: Any, tokenizer: Any, *, cache: Path | None = None,
                device: str = "cpu") -> list[dict[str, list[int]]]:
    """Token rows of the base model's own answers to the general prompts (the replay pool)."""
    questions = prompts()
    known: dict[str, list[int]] = {}
    if cache is not None and cache.is_file():
        try:
            known = {k: v for k, v in json.loads(cache.read_text("utf-8")).items() if isinstance(v, list)}
        except (OSError, ValueError):
            known = {}
    missing = [q for q in questions if q not in known]
    if missing:
        known.update(zip(missing, base_answers(model, tokenizer, missing, device), strict=True))
        if cache is not None:
            atomic_write_text(cache, json.dumps(known))
    ends = _end_ids(model, tokenizer)
    return [continuation_row(tokenizer, [{"role": "user", "content": q}], known[q], ends) for q in questions]
