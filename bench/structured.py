"""Constrained decoding (Structured Outputs, JSON mode, tool calls) against free text: what the grammar costs.

On the bundled model, the fast engine (int8, the default on a CPU) or with ``--engine reference`` the transformers
engine, greedy, one run:
1. decode tokens/s of replies held to a JSON Schema (``response_format`` json_schema, strict: an object with string,
   integer, enum and array fields) against free replies (``output=None``) to the same prompts, at batch 1 (one reply
   alone) and at batch 8 (eight replies to eight prompts started together with ``engine.batcher.hold()``, each read
   in a thread of its own; fast engine only). Like is compared with like: each free reply gets as ``max_tokens``
   the number of tokens its constrained reply took (at most ``--tokens``; the prompts ask for long text, so the free
   reply runs to that limit), so both decode the same number of tokens per row. Reported: decode tokens/s (tokens
   after the first / time after the first: the prompt and the grammar's matcher left out) and tokens/s over the whole
   reply (prompt and first token included), the median of ``--repeats`` rounds after a warm-up round, the two
   kinds alternating; then the ratio constrained / free. The goal: constrained at most 10 % slower.
2. the time to compile a spec into a reply's grammar state (``engine.grammars.constraint(spec)``) for schemas of
   different sizes (a small object, a nested one with $defs and anyOf, an enum of 200 strings, the decode bench's
   schema, ``tools_spec`` with 3 functions and tool_choice "required"): the first time on a fresh ``Grammars``
   (median of 3), the cached case (the spec seen before: the grammar text is kept, the matcher is built anew), and
   the first mask of a fresh state; then the one-time costs of an engine: llguidance's tokenizer
   (``grammars.tokenizer()`` on a fresh ``Grammars``) and the closing tokens' table (``grammars.closers()``).
3. the per-token cost of the grammar alone during real constrained generations (batch 1 and batch 8):
   ``Constraint.apply`` (llguidance's mask, then numpy setting the forbidden logits to -inf) and
   ``Constraint.advance``, and the whole ``Sampler.pick`` of constrained and free rows, mean and p95 µs; set against
   the step of the batch (``batcher.step_seconds``, which includes every row's pick) and the model's forward pass
   alone in it.

Run: ``.venv/bin/python bench/structured.py [--tokens 128] [--repeats 3] [--engine fast|reference] [--json]``
(about 2 minutes on 2 cores). Uses ``$TUNELOOP_MODELS_DIR`` (or ``$TUNELOOP_HOME/models``) for the converted
weights, converting the bundled model on first use (the tests' ``.cache/test-models`` has it converted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from batching import PROMPTS  # bench/batching.py, beside this file: the same long-text prompts

from tuneloop.generation import GenerationOptions
from tuneloop.structured import OutputSpec, response_format_spec, tools_spec

# The decode bench's schema: a few string, integer, enum and array fields.
STORY = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "genre": {"enum": ["fantasy", "adventure", "comedy", "mystery", "drama", "science"]},
        "year": {"type": "integer"},
        "characters": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "story": {"type": "string"},
    },
    "required": ["title", "genre", "year", "characters", "story"],
}
SMALL = {"type": "object", "properties": {"city": {"type": "string"}, "temperature": {"type": "number"},
                                          "unit": {"enum": ["celsius", "fahrenheit"]}},
         "required": ["city", "temperature", "unit"]}
_ADDRESS = {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"},
                                             "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["street", "city", "zip"]}
_CONTACT = {"anyOf": [
    {"type": "object", "properties": {"kind": {"const": "email"}, "address": {"type": "string", "format": "email"}},
     "required": ["kind", "address"]},
    {"type": "object", "properties": {"kind": {"const": "phone"}, "number": {"type": "string"}},
     "required": ["kind", "number"]},
]}
NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "role": {"enum": ["admin", "user", "guest"]},
        "home": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
        "work": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
        "contacts": {"type": "array", "items": {"$ref": "#/$defs/contact"}},
        "manager": {"anyOf": [{"$ref": "#/$defs/person"}, {"type": "null"}]},
    },
    "required": ["name", "age", "role", "home", "work", "contacts", "manager"],
    "$defs": {"address": _ADDRESS, "contact": _CONTACT,
              "person": {"type": "object", "properties": {"name": {"type": "string"},
                                                          "contacts": {"type": "array",
                                                                       "items": {"$ref": "#/$defs/contact"}}},
                         "required": ["name", "contacts"]}},
}
ENUM_200 = {"type": "object", "properties": {"product": {"enum": [f"product-{i:03d}-{w}" for i, w in zip(
    range(200), ["alpha", "beta", "gamma", "delta", "omega"] * 40, strict=True)]}, "quantity": {"type": "integer"}},
    "required": ["product", "quantity"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}, "strict": True}},
    {"type": "function", "function": {"name": "search_flights", "description": "Flights between two airports.",
                                      "parameters": {"type": "object", "properties": {
                                          "origin": {"type": "string"}, "destination": {"type": "string"},
                                          "date": {"type": "string", "format": "date"},
                                          "passengers": {"type": "integer", "minimum": 1, "maximum": 9}},
                                          "required": ["origin", "destination", "date", "passengers"]},
                                      "strict": True}},
    {"type": "function", "function": {"name": "send_email", "description": "Send an email.", "parameters": {
        "type": "object", "properties": {"to": {"type": "array", "items": {"type": "string", "format": "email"}},
                                         "subject": {"type": "string"}, "body": {"type": "string"},
                                         "urgent": {"type": "boolean"}},
        "required": ["to", "subject", "body", "urgent"]}, "strict": True}},
]


def json_schema_spec(name: str, schema: dict[str, Any]) -> OutputSpec:
    spec = response_format_spec({"type": "json_schema", "json_schema": {"name": name, "strict": True,
                                                                         "schema": schema}})
    assert spec is not None
    return spec


def compile_specs() -> dict[str, OutputSpec]:
    specs = {label: json_schema_spec(label.split()[0], schema) for label, schema in (
        ("small", SMALL), ("story (decode)", STORY), ("nested $defs/anyOf", NESTED), ("enum of 200", ENUM_200))}
    tools = tools_spec(TOOLS, "required")
    assert tools is not None
    specs["tools: 3, required"] = tools
    return specs


def user(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# -- 1. decode tokens/s -------------------------------------------------------------------------------------------
def one_reply(engine: Any, prompt: str, max_tokens: int, spec: OutputSpec | None) -> dict[str, float]:
    result = engine.stream(user(prompt), GenerationOptions(max_tokens=max_tokens, temperature=0.0, output=spec)).read()
    decode = result.seconds - (result.first_token_seconds or 0.0)
    return {"tokens": result.tokens_out, "total": result.tokens_out / result.seconds,
            "decode": (result.tokens_out - 1) / decode if decode > 0 else 0.0, "first": result.first_token_seconds,
            "finish": result.finish_reason}


def batch_round(engine: Any, prompts: list[str], max_tokens: list[int], spec: OutputSpec | None) -> dict[str, Any]:
    """The replies started together (they join the batch at one step), each read in its own thread."""
    n = len(prompts)
    replies: list[Any] = [None] * n

    def run(i: int) -> None:
        started = time.perf_counter()
        options = GenerationOptions(max_tokens=max_tokens[i], temperature=0.0, output=spec)
        result = engine.stream(user(prompts[i]), options).read()
        replies[i] = (started + (result.first_token_seconds or 0.0), time.perf_counter(), result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    with engine.batcher.hold():
        for thread in threads:
            thread.start()
        while engine.batcher.waiting < n:  # every grammar state is built: the clock starts at the joint start
            time.sleep(0.001)
        started = time.perf_counter()
    for thread in threads:
        thread.join()
    last_first = max(r[0] for r in replies)
    end = max(r[1] for r in replies)
    tokens = [r[2].tokens_out for r in replies]
    return {"tokens": sum(tokens), "per_reply": tokens, "total": sum(tokens) / (end - started),
            "decode": (sum(tokens) - n) / (end - last_first), "first": last_first - started,
            "texts": [r[2].text for r in replies]}


def decode_speed(engine: Any, args: argparse.Namespace, spec: OutputSpec, batched: bool) -> dict[str, Any]:
    """Constrained and free, the same prompts and the same tokens per row; median of ``args.repeats`` rounds."""
    prompts = PROMPTS[:args.batch] if batched else PROMPTS[:1]
    if batched:
        warm = batch_round(engine, prompts, [args.tokens] * len(prompts), spec)  # warm-up, and each row's length
        lengths = warm["per_reply"]
        batch_round(engine, prompts, lengths, None)
    else:
        warm = one_reply(engine, prompts[0], args.tokens, spec)
        lengths = [int(warm["tokens"])]
        one_reply(engine, prompts[0], lengths[0], None)
    rounds: dict[str, list[dict[str, Any]]] = {"constrained": [], "free": []}
    for repeat in range(args.repeats):
        kinds = ["constrained", "free"] if repeat % 2 == 0 else ["free", "constrained"]
        for kind in kinds:
            output = spec if kind == "constrained" else None
            limits = [args.tokens] * len(prompts) if kind == "constrained" else lengths
            rounds[kind].append(batch_round(engine, prompts, limits, output) if batched
                                else one_reply(engine, prompts[0], limits[0], output))
    out: dict[str, Any] = {"rows": len(prompts)}
    for kind, runs in rounds.items():
        out[kind] = {key: statistics.median(r[key] for r in runs) for key in ("tokens", "total", "decode", "first")}
        out[kind]["decode_runs"] = [r["decode"] for r in runs]
    if batched:
        example = batch_round(engine, prompts[:1], [args.tokens], spec)["texts"][0]
    else:
        example = engine.stream(user(prompts[0]), GenerationOptions(max_tokens=args.tokens, output=spec)).read().text
    out["example"] = example
    try:
        json.loads(example)
        out["example_parses"] = True
    except ValueError:
        out["example_parses"] = False
    return out


# -- 2. compile time ----------------------------------------------------------------------------------------------
def compile_times(engine: Any, specs: dict[str, OutputSpec]) -> dict[str, Any]:
    from tuneloop.engine.grammar import Grammars, grammar_of

    base = engine.grammars
    tokenizer_json = base._tokenizer_json
    once: dict[str, list[float]] = defaultdict(list)
    for _ in range(3):
        fresh = Grammars(tokenizer_json, engine.eos_token_ids)
        started = time.perf_counter()
        fresh.tokenizer()
        once["tokenizer"].append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh.closers()
        once["closers"].append(time.perf_counter() - started)
    ready = (base.tokenizer(), base.closers())

    def warmed() -> Any:  # a Grammars with nothing compiled, its tokenizer and closers already built
        grammars = Grammars(tokenizer_json, engine.eos_token_ids)
        grammars._llt, grammars._closers = ready
        return grammars

    rows = {}
    for name, spec in specs.items():
        first, first_mask, cached = [], [], []
        for _ in range(3):
            grammars = warmed()
            started = time.perf_counter()
            constraint = grammars.constraint(spec)
            first.append(time.perf_counter() - started)
            logits = np.zeros(engine_vocab(grammars), np.float32)
            started = time.perf_counter()
            constraint.apply(logits)
            first_mask.append(time.perf_counter() - started)
            for _ in range(5):
                started = time.perf_counter()
                grammars.constraint(spec)
                cached.append(time.perf_counter() - started)
        rows[name] = {"grammar_chars": len(grammar_of(spec)), "first_ms": statistics.median(first) * 1e3,
                      "cached_ms": statistics.median(cached) * 1e3, "first_mask_ms": statistics.median(
                          first_mask) * 1e3}
    return {"tokenizer_ms": statistics.median(once["tokenizer"]) * 1e3,
            "tokenizer_first_ms": once["tokenizer"][0] * 1e3,
            "closers_ms": statistics.median(once["closers"]) * 1e3, "schemas": rows}


def engine_vocab(grammars: Any) -> int:
    return int(grammars.tokenizer().vocab_size)


# -- 3. per-token cost --------------------------------------------------------------------------------------------
class TimedMatcher:
    """llguidance's matcher, its mask and its advance timed."""

    def __init__(self, matcher: Any, log: dict[str, list[float]]) -> None:
        self._matcher = matcher
        self._log = log

    def unsafe_compute_mask_ptr(self, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._matcher.unsafe_compute_mask_ptr(*args)
        finally:
            self._log["llguidance mask"].append(time.perf_counter() - started)

    def consume_token(self, token: int) -> Any:
        started = time.perf_counter()
        try:
            return self._matcher.consume_token(token)
        finally:
            self._log["llguidance consume"].append(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._matcher, name)


def timed(log: dict[str, list[float]], key: Callable[..., str], function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            log[key(*args, **kwargs)].append(time.perf_counter() - started)
    return wrapper


def per_token(engine: Any, args: argparse.Namespace, spec: OutputSpec) -> dict[str, Any]:
    """One constrained and one free generation at batch 1 (and at batch 8 on the fast engine), every pick, mask and
    advance timed, and the batch's steps and forward passes."""
    from tuneloop.engine.grammar import Constraint
    from tuneloop.engine.sampling import Sampler

    fast = hasattr(engine, "batcher")
    out: dict[str, Any] = {}
    for rows in (1, args.batch) if fast else (1,):
        prompts = PROMPTS[:rows]
        for kind in ("constrained", "free"):
            log: dict[str, list[float]] = defaultdict(list)
            patched = [(Constraint, "apply", Constraint.apply), (Constraint, "advance", Constraint.advance),
                       (Sampler, "pick", Sampler.pick)]
            Constraint.apply = timed(log, lambda self, logits, closing=False: "apply (mask + numpy)",
                                     Constraint.apply)
            Constraint.advance = timed(log, lambda self, token: "advance", Constraint.advance)
            Sampler.pick = timed(log, lambda self, logits: "pick", Sampler.pick)
            make = engine.grammars.constraint

            def constraint(output: OutputSpec, make: Callable[..., Any] = make,
                           log: dict[str, list[float]] = log) -> Any:
                made = make(output)
                made._matcher = TimedMatcher(made._matcher, log)
                return made

            engine.grammars.constraint = constraint
            if fast:
                run = engine.batcher._run

                def forward(session: Any, ids: np.ndarray, *rest: Any, run: Callable[..., Any] = run,
                            log: dict[str, list[float]] = log) -> Any:
                    started = time.perf_counter()
                    try:
                        return run(session, ids, *rest)
                    finally:
                        if ids.shape[1] == 1:
                            log[f"forward {ids.shape[0]}"].append(time.perf_counter() - started)

                engine.batcher._run = forward
                engine.batcher.step_seconds.clear()
            try:
                output = spec if kind == "constrained" else None
                if fast:
                    replies = batch_round(engine, prompts, [args.tokens] * rows, output)
                    tokens = replies["tokens"]
                    steps = engine.batcher.step_seconds.get(rows, [])
                    forwards = log.get(f"forward {rows}", [])
                else:
                    options = GenerationOptions(max_tokens=args.tokens, output=output)
                    result = engine.stream(user(prompts[0]), options).read()
                    tokens = result.tokens_out
                    per = (result.seconds - (result.first_token_seconds or 0.0)) / max(1, tokens - 1)
                    steps, forwards = [per], []
            finally:
                for owner, name, function in patched:
                    setattr(owner, name, function)
                del engine.grammars.constraint
                if fast:
                    del engine.batcher._run
            figures = {name: {"mean_us": statistics.fmean(values) * 1e6, "p95_us": pct(values, 0.95) * 1e6,
                              "count": len(values)} for name, values in log.items()
                       if values and not name.startswith("forward")}
            apply_, mask = log.get("apply (mask + numpy)"), log.get("llguidance mask")
            if apply_ and mask and len(apply_) == len(mask):
                numpy_part = [a - m for a, m in zip(apply_, mask, strict=True)]
                figures["numpy part of apply"] = {"mean_us": statistics.fmean(numpy_part) * 1e6,
                                                  "p95_us": pct(numpy_part, 0.95) * 1e6, "count": len(numpy_part)}
            out[f"{kind} {rows}"] = {"rows": rows, "tokens": tokens, "costs": figures,
                                     "step_ms": statistics.median(steps) * 1e3 if steps else None,
                                     "forward_ms": statistics.median(forwards) * 1e3 if forwards else None}
    return out


# -- the run ------------------------------------------------------------------------------------------------------
def load_engine(name: str, mode: str) -> Any:
    from tuneloop.config import load_settings
    from tuneloop.engine import ensure_checkpoint

    settings = load_settings()
    checkpoint = ensure_checkpoint(settings.resolved_models_dir)
    if name == "reference":
        from tuneloop.engine import get_engine

        return get_engine(checkpoint)
    from tuneloop.engine.convert import ensure_fast
    from tuneloop.engine.fast import get_fast_engine

    folder = ensure_fast(settings.resolved_models_dir, checkpoint, None, mode, model_id=checkpoint.name)
    return get_fast_engine(folder, model_id=checkpoint.name, max_batch=8)


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"engine: {figures['engine']}, greedy, {args.tokens} tokens at most, median of {args.repeats} rounds; "
          f"load average at start {figures['load']:.2f} on {os.cpu_count()} cores\n")
    print("1. decode speed, constrained (json_schema 'story', strict) against free text, same tokens per row")
    print("| batch | kind | tokens (all rows) | decode tok/s (after 1st token) | whole reply tok/s | first token ms |"
          " decode constrained/free | whole constrained/free |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, speed in figures["decode"].items():
        c, f = speed["constrained"], speed["free"]
        for kind, row in (("constrained", c), ("free", f)):
            ratio = (f"{c['decode'] / f['decode']:.3f}", f"{c['total'] / f['total']:.3f}") if kind == "free" \
                else ("", "")
            print(f"| {label} | {kind} | {row['tokens']:.0f} | {row['decode']:.1f} | {row['total']:.1f} | "
                  f"{row['first'] * 1e3:.0f} | {ratio[0]} | {ratio[1]} |")
    for label, speed in figures["decode"].items():
        runs = ", ".join(f"{x:.1f}" for x in speed["constrained"]["decode_runs"])
        free = ", ".join(f"{x:.1f}" for x in speed["free"]["decode_runs"])
        slower = 1 - speed["constrained"]["decode"] / speed["free"]["decode"]
        print(f"  {label}: decode rounds constrained [{runs}], free [{free}]; constrained "
              f"{slower * 100:+.1f} % slower (goal: at most 10 %); a constrained reply parses as JSON: "
              f"{speed['example_parses']}")
    first = next(iter(figures["decode"].values()))
    print(f"  example constrained reply: {first['example'][:160]!r}")

    c = figures["compile"]
    print("\n2. compile time, ms (grammars.constraint(spec): grammar text, validation, matcher)")
    print("| spec | grammar chars | first compile | cached | first mask of a fresh state |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in c["schemas"].items():
        print(f"| {name} | {row['grammar_chars']} | {row['first_ms']:.2f} | {row['cached_ms']:.2f} | "
              f"{row['first_mask_ms']:.2f} |")
    print(f"once per engine: llguidance tokenizer {c['tokenizer_ms']:.0f} ms (first ever in this process "
          f"{c['tokenizer_first_ms']:.0f} ms), closing tokens' table {c['closers_ms']:.0f} ms")

    print("\n3. per-token cost, µs (mean / p95), during one real generation of each kind"
          + (" (step ms: time per token after the first; no batch)" if figures["engine"] == "reference" else ""))
    names = ["pick", "apply (mask + numpy)", "llguidance mask", "numpy part of apply", "advance",
             "llguidance consume"]
    runs = figures["per_token"]
    print("| run | tokens | step ms | forward ms | " + " | ".join(names) + " |")
    print("| --- " * (4 + len(names)) + "|")
    for label, run in runs.items():
        cells = [f"{run['costs'][n]['mean_us']:.0f} / {run['costs'][n]['p95_us']:.0f}" if n in run["costs"]
                 else "" for n in names]
        step = f"{run['step_ms']:.2f}" if run["step_ms"] is not None else ""
        forward = f"{run['forward_ms']:.2f}" if run["forward_ms"] is not None else ""
        print(f"| {label} | {run['tokens']} | {step} | {forward} | " + " | ".join(cells) + " |")
    for rows in sorted({run["rows"] for run in runs.values()}):
        c_run, f_run = runs.get(f"constrained {rows}"), runs.get(f"free {rows}")
        if not c_run or not f_run or not c_run["step_ms"]:
            continue
        grammar = sum(c_run["costs"].get(n, {}).get("mean_us", 0.0) for n in ("apply (mask + numpy)", "advance"))
        extra = c_run["costs"]["pick"]["mean_us"] - f_run["costs"]["pick"]["mean_us"]
        print(f"  {rows} row(s): grammar per row {grammar:.0f} µs × {rows} = {grammar * rows / 1e3:.2f} ms a step, "
              f"{grammar * rows / 1e3 / c_run['step_ms'] * 100:.1f} % of a constrained step "
              f"({c_run['step_ms']:.2f} ms; free step {f_run['step_ms']:.2f} ms); a constrained pick costs "
              f"{extra:.0f} µs more than a free one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens of a constrained reply")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="replies decoded together in the batched case")
    parser.add_argument("--engine", choices=("fast", "reference"), default="fast")
    parser.add_argument("--mode", choices=("int8", "int4", "fp32"), default="int8", help="the fast engine's mode")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    args.batch = max(1, min(args.batch, len(PROMPTS)))
    load = os.getloadavg()[0]
    engine = load_engine(args.engine, args.mode)
    spec = json_schema_spec("story", STORY)
    figures: dict[str, Any] = {"engine": args.engine if args.engine == "reference" else f"fast {args.mode}",
                               "load": load, "decode": {}}
    figures["decode"]["1"] = decode_speed(engine, args, spec, batched=False)
    if hasattr(engine, "batcher") and args.batch > 1:
        figures["decode"][str(args.batch)] = decode_speed(engine, args, spec, batched=True)
    figures["compile"] = compile_times(engine, compile_specs())
    figures["per_token"] = per_token(engine, args, spec)
    report(figures, args)
    if args.json:
        print(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
