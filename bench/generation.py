"""Local engine vs a plain transformers ``generate`` call, same weights, same prompts, same run.

Prints tokens/s and time to first token for both, and the ratio engine / baseline.
Run: ``make bench`` or ``.venv/bin/python bench/generation.py [--tokens 128] [--rounds 3]``.
Uses ``$TUNELOOP_MODELS_DIR`` (or ``$TUNELOOP_HOME/models``) for the converted checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from transformers import TextIteratorStreamer

from tuneloop.config import load_settings
from tuneloop.engine import ensure_checkpoint, get_engine

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works to a ten-year-old, step by step.",
    "List ten ideas for a weekend trip and say why each is fun.",
]


def run_engine(engine, messages, tokens):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    stream = engine.stream(messages, max_tokens=tokens, stop=None)
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return stream.result.tokens_out, first or total, total


def run_baseline(engine, messages, tokens):  # noqa: ANN001, ANN201
    tokenizer, model = engine.tokenizer, engine.model
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    output = {}

    def work() -> None:
        with torch.inference_mode():
            output["ids"] = model.generate(**inputs, max_new_tokens=tokens, do_sample=False, streamer=streamer)

    started = time.perf_counter()
    thread = threading.Thread(target=work)
    thread.start()
    first = None
    for piece in streamer:
        if first is None and piece:
            first = time.perf_counter() - started
    thread.join()
    total = time.perf_counter() - started
    generated = output["ids"].shape[1] - inputs["input_ids"].shape[1]
    if output["ids"][0, -1].item() in engine.eos_token_ids:
        generated -= 1  # the engine does not count the end-of-sequence token either
    return generated, first or total, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens per prompt")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the prompts (first is a warm-up)")
    args = parser.parse_args()

    settings = load_settings()
    engine = get_engine(ensure_checkpoint(settings.resolved_models_dir))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.tokens} max new tokens")
    results: dict[str, list[tuple[int, float, float]]] = {"engine": [], "baseline": []}
    for round_index in range(args.rounds):
        for prompt in PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            # Alternate the order so neither side always runs on a warmer cache.
            order = [("engine", run_engine), ("baseline", run_baseline)]
            if round_index % 2:
                order.reverse()
            for name, fn in order:
                sample = fn(engine, messages, args.tokens)
                if round_index > 0 or args.rounds == 1:
                    results[name].append(sample)

    summary = {}
    for name, samples in results.items():
        tokens = sum(s[0] for s in samples)
        seconds = sum(s[2] for s in samples)
        ttft = statistics.median(s[1] for s in samples)
        summary[name] = (tokens / seconds, ttft)
        print(f"{name:9s} {tokens:5d} tokens in {seconds:6.2f}s = {tokens / seconds:6.2f} tokens/s, "
              f"median time to first token {ttft * 1000:6.1f} ms")
    speed_ratio = summary["engine"][0] / summary["baseline"][0]
    ttft_ratio = summary["engine"][1] / summary["baseline"][1]
    print(f"ratio engine/baseline: tokens/s x{speed_ratio:.2f}, "
          f"time to first token x{ttft_ratio:.2f} (lower is better)")


if __name__ == "__main__":
    main()
