"""`tuneloop serve` against the library in-process, same model, same prompts, same run.

1. Chat: the same greedy request (same tokens out) through the local provider in this process, then over HTTP
   with the openai SDK to a `tuneloop serve` subprocess (non-streaming and streaming). Prints medians, the
   added latency per request and the ratio HTTP / in-process.
2. GET /v1/models: requests/s over HTTP (one keep-alive client, then 8 concurrent ones) against the
   in-process call that builds the same list.

Run: ``make bench`` or ``.venv/bin/python bench/server.py [--rounds 8] [--tokens 16] [--seconds 5]``.
Uses ``$TUNELOOP_MODELS_DIR`` (or ``$TUNELOOP_HOME/models``) for the converted checkpoint.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai

from tuneloop.config import load_settings
from tuneloop.engine import ensure_checkpoint
from tuneloop.runtime import Runtime
from tuneloop.serving import served_models, server_settings

MESSAGES = [{"role": "user", "content": "Explain how a bicycle works to a ten-year-old."}]
MODEL = "smollm2-135m-instruct"


def start_server(home: Path, models_dir: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """`tuneloop serve` in a subprocess on a free port, with ``settings`` as extra environment variables."""
    env = dict(os.environ, TUNELOOP_HOME=str(home), TUNELOOP_MODELS_DIR=str(models_dir), **settings)
    env.pop("TUNELOOP_SERVER_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "tuneloop", "serve", "--port", "0", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if "listening on" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
            return proc, line.split("listening on ")[1].split()[0]
    raise SystemExit("the server did not start")


def timed(fn, rounds: int) -> list[float]:  # noqa: ANN001
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def rate(fn, seconds: float, threads: int = 1) -> float:  # noqa: ANN001
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            fn()
            done[i] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    models_dir = load_settings().resolved_models_dir
    ensure_checkpoint(models_dir)
    home = Path(tempfile.mkdtemp(prefix="tuneloop-bench-server-"))
    runtime = Runtime(server_settings(home=home, models_dir=models_dir))
    provider, model = runtime.resolve(MODEL)
    options = {"max_tokens": args.tokens, "temperature": 0.0}
    proc, url = start_server(home, models_dir)
    try:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        # Warm both sides (model load, first-call costs) and check they produce the same reply.
        local = provider.complete(MESSAGES, model=model, **options)
        remote = client.chat.completions.create(model=MODEL, messages=MESSAGES, **options)
        assert remote.choices[0].message.content == local.text, "HTTP and in-process replies differ"
        tokens = local.tokens_out

        def stream_http() -> None:
            for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **options):
                pass

        # Interleaved, so a slow spell of the machine falls on all three alike.
        times: dict[str, list[float]] = {"in": [], "http": [], "sse": []}
        for _ in range(args.rounds):
            times["in"] += timed(lambda: provider.complete(MESSAGES, model=model, **options), 1)
            times["http"] += timed(
                lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, **options), 1)
            times["sse"] += timed(stream_http, 1)
        in_process, over_http, streamed = (statistics.median(times[k]) for k in ("in", "http", "sse"))
        print(f"chat, {tokens} tokens out, median of {args.rounds}:")
        print(f"  in-process            {in_process * 1000:8.1f} ms")
        print(f"  HTTP (openai SDK)     {over_http * 1000:8.1f} ms   added {(over_http - in_process) * 1000:+.1f} ms"
              f"   ratio {over_http / in_process:.3f}")
        print(f"  HTTP streaming (SSE)  {streamed * 1000:8.1f} ms   added {(streamed - in_process) * 1000:+.1f} ms"
              f"   ratio {streamed / in_process:.3f}")

        baseline = rate(lambda: served_models(runtime), args.seconds)
        with httpx.Client(base_url=url) as http:
            one = rate(lambda: http.get("/models").raise_for_status(), args.seconds)
        clients = [httpx.Client(base_url=url) for _ in range(8)]
        lanes = iter(range(8))
        local_lane = threading.local()

        def concurrent_get() -> None:
            if not hasattr(local_lane, "client"):
                local_lane.client = clients[next(lanes)]
            local_lane.client.get("/models").raise_for_status()

        eight = rate(concurrent_get, args.seconds, threads=8)
        for c in clients:
            c.close()
        print(f"GET /v1/models over {args.seconds:g} s:")
        print(f"  in-process list       {baseline:8.0f} /s")
        print(f"  HTTP, 1 client        {one:8.0f} req/s   ratio {one / baseline:.3f}")
        print(f"  HTTP, 8 clients       {eight:8.0f} req/s   ratio {eight / baseline:.3f}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
