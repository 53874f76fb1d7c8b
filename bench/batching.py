"""Many clients at once on `tuneloop serve`: tokens/s for one client, then for eight concurrent ones, same run.

Two `tuneloop serve` subprocesses on the bundled model and the default engine, each driven by the openai SDK
(streaming, greedy, the same eight prompts):
- ``TUNELOOP_MAX_BATCH=8`` (the default): concurrent replies are decoded together;
- ``TUNELOOP_MAX_BATCH=1`` (the baseline: one reply at a time, as before batching).

For each: one client asking the eight prompts one after the other (tokens/s of one client), then eight clients
asking one prompt each at the same moment (aggregate tokens/s: all their tokens / the time until the last one
ends). Prints the ratio eight/one, the slowest client's time to first token (nobody starved), and whether each
concurrent reply is the one the same request gets alone.

Then the same in this process, without HTTP or clients: the fast engine alone, one reply after another and all
together, with the median time of one decoding step of 1 row and of all rows. Eight rows decoded in a step that
costs k one-row steps give at most 8/k times one client's tokens: that bound, printed, is what the machine and
onnxruntime's kernels allow; what the server reaches is measured against it.

Last, the longest pause of a streaming reply while a 1,500-token prompt joins: read whole (as before chunked
prefill), then a chunk of ``PREFILL_CHUNK`` tokens at a time with a step for the batch in between.

Run: ``make bench-batching`` or ``.venv/bin/python bench/batching.py [--tokens 128] [--clients 8]``.
Uses ``$TUNELOOP_MODELS_DIR`` (or ``$TUNELOOP_HOME/models``) for the converted weights.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openai
from server import start_server  # bench/server.py, beside this file

from tuneloop.config import load_settings
from tuneloop.engine import batching, ensure_checkpoint
from tuneloop.generation import GenerationOptions

MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works to a ten-year-old, step by step.",
    "List ten ideas for a weekend trip and say why each is fun.",
    "Write a long story about a dragon who learns to bake bread.",
    "Describe a busy market in the morning, with sounds and smells.",
    "Explain why the sky is blue, in detail.",
    "Write a letter to a friend about a trip to the mountains.",
    "Describe how to plant a vegetable garden, step by step.",
]


def ask(client: openai.OpenAI, prompt: str, tokens: int, started: float) -> dict:
    first = None
    text = []
    usage = 0
    for chunk in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                                max_tokens=tokens, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - started
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.completion_tokens
    return {"text": "".join(text), "tokens": usage, "first": first, "end": time.perf_counter() - started}


def measure(url: str, prompts: list[str], tokens: int) -> dict:
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    ask(client, "Hi", 4, time.perf_counter())  # warm: the model is loaded at start-up, this loads the rest
    started = time.perf_counter()
    alone = [ask(client, p, tokens, time.perf_counter()) for p in prompts]
    one = sum(a["tokens"] for a in alone) / (time.perf_counter() - started)
    results: list[dict] = [{}] * len(prompts)

    def run(i: int) -> None:
        results[i] = ask(openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600), prompts[i],
                         tokens, started)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = max(r["end"] for r in results)
    return {"one": one, "many": sum(r["tokens"] for r in results) / wall,
            "first_max": max(r["first"] for r in results), "first_median": statistics.median(
                r["first"] for r in results), "alone_first": statistics.median(a["first"] for a in alone),
            "same": sum(a["text"] == r["text"] for a, r in zip(alone, results, strict=True)),
            "tokens": sum(r["tokens"] for r in results)}


def in_process(models_dir: Path, prompts: list[str], tokens: int) -> dict:
    """The engine's own figures: alone and together, and the median step of 1 row and of all rows."""
    from tuneloop.engine.convert import current_fast, engine_mode
    from tuneloop.engine.fast import FastEngine
    from tuneloop.engine.weights import checkpoint_dir

    folder = current_fast(models_dir, checkpoint_dir(models_dir), None, engine_mode(load_settings()))
    if folder is None:
        raise SystemExit("the bundled model's fast conversion is missing: the servers above should have made it")
    engine = FastEngine(folder, model_id=MODEL, max_batch=len(prompts))

    def reply(prompt: str) -> int:
        asked = [{"role": "user", "content": prompt}]
        return engine.stream(asked, GenerationOptions(max_tokens=tokens)).read().tokens_out

    reply("Hi")  # warm
    started = time.perf_counter()
    one = sum(reply(p) for p in prompts) / (time.perf_counter() - started)
    counts = [0] * len(prompts)

    def run(i: int) -> None:
        counts[i] = reply(prompts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    with engine.batcher.hold():  # all join at one step
        for thread in threads:
            thread.start()
        while engine.batcher.waiting < len(prompts):
            time.sleep(0.001)
        started = time.perf_counter()
    for thread in threads:
        thread.join()
    many = sum(counts) / (time.perf_counter() - started)
    steps = engine.batcher.step_seconds
    return {"one": one, "many": many, "step_1": statistics.median(steps[1]),
            "step_n": statistics.median(steps[len(prompts)]), "pause": {
                chunk: longest_pause(engine, chunk) for chunk in (10**6, batching.PREFILL_CHUNK)}}


def longest_pause(engine: Any, chunk: int) -> tuple[float, int]:
    """The longest wait between two pieces of a streaming story while a long prompt is read (and its length)."""
    facts = " ".join(f"Box {i} holds {i * 7 % 13} apples." for i in range(150))
    question = [{"role": "user", "content": facts + "\nHow many apples does box 42 hold?"}]
    default, batching.PREFILL_CHUNK = batching.PREFILL_CHUNK, chunk
    try:
        stop = threading.Event()
        story = engine.stream([{"role": "user", "content": "Write a long story about a dragon."}],
                              GenerationOptions(max_tokens=2000), should_stop=stop.is_set)
        asked = threading.Thread(target=lambda: (engine.stream(question, GenerationOptions(max_tokens=8)).read(),
                                                 stop.set()))
        times = []
        for _ in story:
            times.append(time.perf_counter())
            if len(times) == 20:  # the story is streaming: the long prompt comes
                asked.start()
        asked.join()
    finally:
        batching.PREFILL_CHUNK = default
    return max(b - a for a, b in itertools.pairwise(times)), len(engine.encode_chat(question))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    prompts = (PROMPTS * (args.clients // len(PROMPTS) + 1))[:args.clients]
    models_dir = load_settings().resolved_models_dir
    ensure_checkpoint(models_dir)
    rows = {}
    for max_batch in (args.clients, 1):
        home = Path(tempfile.mkdtemp(prefix="tuneloop-bench-batching-"))
        proc, url = start_server(home, models_dir, TUNELOOP_MAX_BATCH=str(max_batch))
        try:
            rows[max_batch] = measure(url, prompts, args.tokens)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"{args.clients} streaming clients, {args.tokens} tokens at most each, greedy, bundled model, default "
          "engine\n")
    print("| server | one client tok/s | all clients tok/s | × one client | first token: alone / slowest of "
          "all | same reply as alone |")
    print("| --- | --- | --- | --- | --- | --- |")
    for max_batch, r in rows.items():
        label = f"TUNELOOP_MAX_BATCH={max_batch}" + (" (default)" if max_batch == 8 else "")
        print(f"| {label} | {r['one']:.1f} | {r['many']:.1f} | {r['many'] / r['one']:.2f} | "
              f"{r['alone_first'] * 1000:.0f} ms / {r['first_max'] * 1000:.0f} ms | {r['same']}/{args.clients} |")
    if args.clients in rows and 1 in rows:
        print(f"\nbatched / one at a time, all clients: {rows[args.clients]['many'] / rows[1]['many']:.2f}×")
    engine = in_process(models_dir, prompts, args.tokens)
    n = args.clients
    print(f"\nthe engine in this process (no HTTP, no clients): one reply after another {engine['one']:.1f} tok/s, "
          f"{n} together {engine['many']:.1f} tok/s: {engine['many'] / engine['one']:.2f}×")
    print(f"one step: 1 row {engine['step_1'] * 1000:.1f} ms, {n} rows {engine['step_n'] * 1000:.1f} ms; "
          f"decoding {n} together can give at most {n * engine['step_1'] / engine['step_n']:.2f}× one reply's "
          "tokens here (before prompts are read)")
    (whole, length), (chunked, _) = engine["pause"].values()
    print(f"longest pause of a streaming reply while a {length}-token prompt joins: {whole:.2f} s read whole, "
          f"{chunked:.2f} s read {batching.PREFILL_CHUNK} tokens at a time")


if __name__ == "__main__":
    main()
