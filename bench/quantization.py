"""How each way of quantizing the weights moves the fast engine away from fp32, and what it buys: one run.

The bundled model is converted with onnxruntime-genai's builder once per variant (precision, block size,
symmetric or with zero points), the way ``tuneloop.engine.convert`` converts it, into a temporary folder. For each:

- **flips**: fp32's own answers to the quality questions (``tuneloop/data/quality_questions.jsonl``) are read
  whole, prompt and answer, and at every position of the answer the variant's most likely next token is compared
  with fp32's. A flip is where they differ: from there a greedy answer goes another way. Thousands of positions, so
  it tells close variants apart where right/wrong answers on 62 questions are noise;
- **answers**: each variant answers the questions greedily, as a chat does: right, lost and gained against fp32,
  and how many answers are fp32's word for word;
- **decode** tokens/s (median of 3 prompts × 128 tokens) and the ratio to the default mode's variant.

This is the measurement behind the default (``int8`` in blocks of 16, ``convert.BUILD_OPTIONS``); run it again when
onnxruntime changes. About 2 minutes a variant on 2 cores.

Run: ``.venv/bin/python bench/quantization.py [--variants int8:16,int8:64,int4:32] [--questions 62]``
(a variant: ``precision:block_size`` or ``precision:block_size:asym``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from generation import PROMPTS, QUESTION_TOKENS, decode_speed, speed_samples  # bench/generation.py, beside this

from tuneloop.config import load_settings
from tuneloop.engine import ensure_checkpoint
from tuneloop.engine.convert import BUILD_OPTIONS, builder_command, last_position_logits, model_path, sliding_window
from tuneloop.engine.fast import FastEngine
from tuneloop.engine.tokenizer import ChatTokenizer
from tuneloop.evals import read_eval_file
from tuneloop.generation import GenerationOptions

VARIANTS = "int8:16,int8:16:asym,int8:32,int8:64,int8:64:asym,int8:128,int4:32"


def options(variant: str) -> tuple[str, list[str]]:
    precision, block, *rest = variant.split(":")
    extra = ["accuracy_level=4", f"block_size={int(block)}"]
    if rest == ["asym"]:
        extra.append("is_symmetric=false")
    elif rest:
        raise SystemExit(f"variant {variant!r}: write precision:block_size or precision:block_size:asym")
    return precision, extra


def build(checkpoint: Path, out: Path, precision: str, extra: list[str], cache: Path) -> None:
    done = subprocess.run(builder_command(checkpoint, out, precision, extra, cache), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"the builder failed for {precision} {extra}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    sliding_window(model_path(out), out / "genai_config.json", json.loads((checkpoint / "config.json").read_text()))


def next_tokens(model_file: Path, sequences: list[tuple[list[int], list[int]]], heads: int, head_size: int) -> list:
    """For each (prompt, answer): the most likely next token at every answer position, the whole read at once."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    pasts = [i.name for i in session.get_inputs() if i.name.startswith("past_")]
    picked = []
    for prompt, answer in sequences:
        ids = np.array([prompt + answer], np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        feed.update({name: np.zeros((1, heads, 0, head_size), np.float32) for name in pasts})
        logits = session.run(["logits"], feed)[0][0]
        picked.append(logits[len(prompt) - 1: len(prompt) + len(answer) - 1].argmax(-1))
    return picked


def measure(folder: Path, items: list, sequences: list | None) -> dict:
    """Flips (when ``sequences`` are given: the graph then gets cut to the last position as the conversion does),
    answers and decode speed of the model in ``folder``."""
    result: dict = {"size_mb": sum(p.stat().st_size for p in folder.iterdir()) / 1e6}
    if sequences is not None:
        result["next"] = next_tokens(model_path(folder), sequences, *_heads(folder))
        last_position_logits(model_path(folder))
    engine = FastEngine(folder, model_id=folder.name)  # reads every position's logits too (fp32, here)
    options = GenerationOptions(max_tokens=QUESTION_TOKENS)
    result["answers"] = [engine.stream(list(i.messages), options).read().text for i in items]
    result["decode"] = decode_speed(speed_samples(engine, PROMPTS, 128))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=VARIANTS, help="comma-separated precision:block_size[:asym]")
    parser.add_argument("--questions", type=int, default=None, help="use only the first N questions")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    default_precision, default_extra = BUILD_OPTIONS["int8"]
    default = next((v for v in variants if options(v) == (default_precision, default_extra)), None)

    checkpoint = ensure_checkpoint(load_settings().resolved_models_dir)
    items = read_eval_file(Path(__file__).resolve().parents[1] / "src/tuneloop/data/quality_questions.jsonl")
    items = items[: args.questions] if args.questions else items
    work = Path(tempfile.mkdtemp(prefix="tuneloop-quantization-"))
    try:
        print("… fp32 (the reference's arithmetic)", file=sys.stderr, flush=True)
        build(checkpoint, work / "fp32", "fp32", [], work / "cache")
        fp32 = measure(work / "fp32", items, None)  # every position's logits kept, for the flips
        tokenizer = ChatTokenizer(work / "fp32", model_id="fp32")
        sequences = [(tokenizer.encode_chat(list(i.messages)), tokenizer.encode(a))
                     for i, a in zip(items, fp32["answers"], strict=True)]
        fp32["next"] = next_tokens(model_path(work / "fp32"), sequences, *_heads(work / "fp32"))
        results = {"fp32": fp32}
        for variant in variants:
            print(f"… {variant}", file=sys.stderr, flush=True)
            precision, extra = options(variant)
            folder = work / variant.replace(":", "-")
            build(checkpoint, folder, precision, extra, work / "cache")
            results[variant] = measure(folder, items, sequences)
            shutil.rmtree(folder)
        report(results, items, default)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _heads(folder: Path) -> tuple[int, int]:
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    return int(decoder["num_key_value_heads"]), int(decoder["head_size"])


def report(results: dict[str, dict], items: list, default: str | None) -> None:
    fp32 = results["fp32"]
    truth = [item.grade(a) for item, a in zip(items, fp32["answers"], strict=True)]
    positions = sum(len(n) for n in fp32["next"])
    base = results[default]["decode"] if default else None
    print(f"\n{len(items)} questions, greedy ({QUESTION_TOKENS} tokens); flips over {positions} answer positions of "
          f"fp32's answers; decode: {len(PROMPTS)} prompts × 128 tokens; ratio against {default or 'nothing'}")
    print(f"{'variant':14s} {'MB':>5s} {'decode tok/s':>12s} {'ratio':>6s} {'flips':>12s} {'right':>6s} "
          f"{'lost':>5s} {'gained':>6s} {'as fp32':>8s}")
    for name, result in results.items():
        right = [item.grade(a) for item, a in zip(items, result["answers"], strict=True)]
        flips = sum(int((a != b).sum()) for a, b in zip(result["next"], fp32["next"], strict=True))
        lost = sum(t and not r for t, r in zip(truth, right, strict=True))
        gained = sum(r and not t for t, r in zip(truth, right, strict=True))
        same = sum(a == b for a, b in zip(result["answers"], fp32["answers"], strict=True))
        ratio = f"{result['decode'] / base:.2f}" if base else "-"
        mark = " *" if name == default else ""
        print(f"{name + mark:14s} {result['size_mb']:5.0f} {result['decode']:12.1f} {ratio:>6s} "
              f"{flips:5d} {100 * flips / positions:5.2f}% {sum(right):3d}/{len(items):<2d} {lost:5d} {gained:6d} "
              f"{same:4d}/{len(items)}")
    if default:
        print("* the default mode (int8)")


if __name__ == "__main__":
    main()
