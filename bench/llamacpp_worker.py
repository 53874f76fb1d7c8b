"""llama-cpp-python's side of bench/generation.py, run by the Python that has ``llama_cpp`` (never tuneloop's).

Reads a job (the GGUF, prompt token ids rendered by tuneloop, limits), generates greedily, and prints one
``RESULT {json}`` line: speed samples, generated token ids for each question, load time and peak memory.
Only the standard library and llama_cpp are used.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main() -> None:
    from llama_cpp import Llama

    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    started = time.perf_counter()
    llm = Llama(model_path=job["gguf"], n_ctx=2048, n_threads=os.cpu_count(), verbose=False, logits_all=False)
    load = time.perf_counter() - started
    eos = set(job["eos"]) | {llm.token_eos()}

    def generate(prompt: list[int], limit: int) -> tuple[list[int], float, float]:
        llm.reset()
        out: list[int] = []
        begun = time.perf_counter()
        first = None
        for token in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if first is None:
                first = time.perf_counter() - begun
            if token in eos or len(out) >= limit:
                break
            out.append(token)
            if len(out) >= limit:
                break
        total = time.perf_counter() - begun
        return out, first or total, total

    speed = []
    for round_index in range(2):
        for prompt in job["prompts"]:
            out, first, total = generate(prompt, job["tokens"])
            if round_index:
                speed.append({"tokens": len(out), "ttft": first, "total": total})
    answers = [generate(q, job["question_tokens"])[0] for q in job["questions"]]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"load": load, "speed": speed, "answers": answers, "peak_mb": peak}))


if __name__ == "__main__":
    main()
