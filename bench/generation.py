"""Local generation, every engine in one run: speed, time to first token, peak memory and quality.

Engines: tuneloop's fast engine in each mode (int8, the default on a CPU; int4; fp32), tuneloop's reference
engine (transformers + torch, its own decode loop), a plain transformers fp32 ``generate`` call, and
llama-cpp-python on the bundled Q4_1 GGUF when a Python with ``llama_cpp`` is given (``make bench-llamacpp``
builds one in ``.venv-llamacpp``; it is never a dependency of tuneloop).

Each engine runs in a process of its own (so its peak memory is its own), greedy, on the same prompts:
- speed: decode tokens/s (tokens after the first / time after the first) on long answers, median;
- quality: the bundled question set (``tuneloop/data/quality_questions.jsonl``, 62 questions with known
  answers), right answers and, against the reference (fp32), answers lost and gained.

Run: ``make bench`` or ``.venv/bin/python bench/generation.py [--tokens 128] [--questions 62]
[--engines int8,int4,fp32,reference,transformers] [--llamacpp-python .venv-llamacpp/bin/python]``.
Uses ``$TUNELOOP_MODELS_DIR`` (or ``$TUNELOOP_HOME/models``) for the converted weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works to a ten-year-old, step by step.",
    "List ten ideas for a weekend trip and say why each is fun.",
]
QUESTION_TOKENS = 64
ENGINES = ("int8", "int4", "fp32", "reference", "transformers")
HERE = Path(__file__).resolve().parent


# -- workers (each in its own process) -------------------------------------------------------------------------
def _tuneloop_worker(engine_name: str, spec: dict) -> dict:
    from tuneloop.config import load_settings
    from tuneloop.engine import ensure_checkpoint, get_engine
    from tuneloop.engine.convert import ensure_fast
    from tuneloop.engine.fast import get_fast_engine
    from tuneloop.generation import GenerationOptions

    settings = load_settings()
    checkpoint = ensure_checkpoint(settings.resolved_models_dir)
    started = time.perf_counter()
    if engine_name in ("reference", "transformers"):
        engine = get_engine(checkpoint)
    else:
        engine = get_fast_engine(ensure_fast(settings.resolved_models_dir, checkpoint, None, engine_name,
                                             model_id=checkpoint.name))
    load = time.perf_counter() - started
    speed = speed_samples(engine, spec["prompts"], spec["tokens"],
                          _generate_timed if engine_name == "transformers" else _stream_timed)
    answers = []
    for question in spec["questions"]:
        if engine_name == "transformers":
            answers.append(None)  # same weights and arithmetic as the reference: its quality is the reference's
        else:
            answers.append(engine.stream(question, GenerationOptions(max_tokens=QUESTION_TOKENS)).read().text)
    return {"load": load, "speed": speed, "answers": answers}


def speed_samples(engine, prompts: list[str], tokens: int, timed=None) -> list[dict]:  # noqa: ANN001
    """Each prompt answered twice, ``timed`` (``_stream_timed`` unless given): the first round warms up, the second
    is kept."""
    timed = timed or _stream_timed
    samples = []
    for round_index in range(2):
        for prompt in prompts:
            sample = timed(engine, [{"role": "user", "content": prompt}], tokens)
            if round_index:
                samples.append(sample)
    return samples


def _stream_timed(engine, messages, tokens):  # noqa: ANN001, ANN202
    from tuneloop.generation import GenerationOptions  # beside the engines, which load lazily too

    started = time.perf_counter()
    stream = engine.stream(messages, GenerationOptions(max_tokens=tokens))
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    result = stream.result
    first = result.first_token_seconds or first or total
    return {"tokens": result.tokens_out, "ttft": first, "total": total}


def _generate_timed(engine, messages, tokens):  # noqa: ANN001, ANN202
    import threading

    import torch
    from transformers import TextIteratorStreamer

    from tuneloop.engine.template import as_given

    tokenizer, model = engine.tokenizer, engine.model
    inputs = tokenizer.apply_chat_template(as_given(tokenizer, messages), add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
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
    return {"tokens": int(generated), "ttft": first or total, "total": total}


def worker_main(engine_name: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = _tuneloop_worker(engine_name, spec)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


# -- the run -------------------------------------------------------------------------------------------------
def run_worker(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def decode_speed(samples: list[dict]) -> float:
    rates = [(s["tokens"] - 1) / (s["total"] - s["ttft"]) for s in samples
             if s["tokens"] > 1 and s["total"] > s["ttft"]]
    return statistics.median(rates) if rates else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens per speed prompt")
    parser.add_argument("--questions", type=int, default=None, help="use only the first N questions")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--llamacpp-python", type=Path, help="a Python with llama_cpp installed (make bench-llamacpp)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.spec)
        return

    from tuneloop.config import load_settings
    from tuneloop.engine import ensure_checkpoint, find_gguf
    from tuneloop.engine.convert import FAST_MODES, ensure_fast
    from tuneloop.evals import read_eval_file

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        sys.exit(f"unknown engines {sorted(unknown)}; use {', '.join(ENGINES)}")
    settings = load_settings()
    checkpoint = ensure_checkpoint(settings.resolved_models_dir)
    for mode in FAST_MODES:
        if mode in engines:
            ensure_fast(settings.resolved_models_dir, checkpoint, None, mode, model_id=checkpoint.name)
    items = read_eval_file(Path(__file__).resolve().parents[1] / "src/tuneloop/data/quality_questions.jsonl")
    items = items[: args.questions] if args.questions else items
    spec = {"prompts": PROMPTS, "tokens": args.tokens, "questions": [list(i.messages) for i in items]}
    spec_path = Path(settings.resolved_models_dir) / ".bench-generation-spec.json"
    spec_path.write_text(json.dumps(spec))

    results: dict[str, dict] = {}
    for name in engines:
        print(f"… {name}", file=sys.stderr, flush=True)
        results[name] = run_worker([sys.executable, __file__, "--worker", name, "--spec", str(spec_path)])
    if args.llamacpp_python:
        print("… llama.cpp (Q4_1)", file=sys.stderr, flush=True)
        results["llama.cpp Q4_1"] = llamacpp(args.llamacpp_python, find_gguf(), checkpoint, spec)
    spec_path.unlink(missing_ok=True)
    report(results, items, args.tokens)


def llamacpp(python: Path, gguf: Path, checkpoint: Path, spec: dict) -> dict:
    """llama-cpp-python on the GGUF, fed the very prompt token ids tuneloop renders (no template of its own)."""
    from transformers import AutoTokenizer

    from tuneloop.engine.template import as_given

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)

    def ids(messages: list[dict]) -> list[int]:
        return list(tokenizer.apply_chat_template(as_given(tokenizer, messages), add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"])

    job = {"gguf": str(gguf), "tokens": spec["tokens"], "question_tokens": QUESTION_TOKENS,
           "eos": [tokenizer.eos_token_id],
           "prompts": [ids([{"role": "user", "content": p}]) for p in spec["prompts"]],
           "questions": [ids(q) for q in spec["questions"]]}
    job_path = checkpoint.parent / ".bench-llamacpp-job.json"
    job_path.write_text(json.dumps(job))
    try:
        result = run_worker([str(python), str(HERE / "llamacpp_worker.py"), str(job_path)])
    finally:
        job_path.unlink(missing_ok=True)
    result["answers"] = [tokenizer.decode(a, skip_special_tokens=True) for a in result["answers"]]
    return result


def report(results: dict[str, dict], items: list, tokens: int) -> None:
    reference = results.get("reference", {}).get("answers")
    baseline_name = "llama.cpp Q4_1" if "llama.cpp Q4_1" in results else (
        "transformers" if "transformers" in results else None)
    baseline = decode_speed(results[baseline_name]["speed"]) if baseline_name else None
    print(f"\n{len(items)} questions (greedy, {QUESTION_TOKENS} tokens), speed on {len(PROMPTS)} prompts "
          f"× {tokens} tokens; ratios against {baseline_name or 'nothing'}")
    print(f"{'engine':16s} {'decode tok/s':>12s} {'ratio':>6s} {'ttft ms':>8s} {'load s':>7s} {'peak MB':>8s} "
          f"{'right':>6s} {'lost':>5s} {'gained':>6s}")
    for name, result in results.items():
        speed = decode_speed(result["speed"])
        ttft = statistics.median(s["ttft"] for s in result["speed"]) * 1000
        answers = result["answers"]
        if answers and answers[0] is not None:
            right = [item.grade(a) for item, a in zip(items, answers, strict=True)]
            score = f"{sum(right)}/{len(items)}"
            if reference is not None:
                ref = [item.grade(a) for item, a in zip(items, reference, strict=True)]
                lost = str(sum(r and not g for r, g in zip(ref, right, strict=True)))
                gained = str(sum(g and not r for r, g in zip(ref, right, strict=True)))
            else:
                lost = gained = "?"
        else:
            score, lost, gained = "=ref", "-", "-"
        ratio = f"{speed / baseline:.2f}" if baseline else "-"
        print(f"{name:16s} {speed:12.1f} {ratio:>6s} {ttft:8.0f} {result.get('load', 0):7.2f} "
              f"{result['peak_mb']:8.0f} {score:>6s} {lost:>5s} {gained:>6s}")


if __name__ == "__main__":
    main()
