"""Faults a vendor injects against what tuneloop makes of them, in one run.

For each kind of fault (429 with and without Retry-After, retry-after-ms, 500, 503, an answer slower than the
timeout, a reset connection, a stream cut half-way, invalid JSON), N chat requests (half plain, half streamed)
each meet that fault once, then a healthy vendor. Printed per kind: replies obtained, exchanges logged (must
equal the replies: exactly once), typed errors, attempts the vendor saw, and the time spent waiting between
attempts against what the vendor asked for. The baseline is the same requests with no fault, in the same run:
the ratio says what a fault costs. Then one vendor that never recovers: attempts must be retries + 1.

The vendor is the test suite's stand-in (tests/standin.py, spec-validating, on 127.0.0.1).
Run: ``make bench-faults`` or ``.venv/bin/python bench/faults.py [--n 6] [--timeout 1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from standin import StandIn  # noqa: E402

from tuneloop.conversation.chat import ChatSession  # noqa: E402
from tuneloop.errors import TuneloopError  # noqa: E402
from tuneloop.runtime import Runtime  # noqa: E402

KEY = "sk-bench-faults-0123456789"
KINDS = [("none", None, 0.0), ("429", "429", 0.0), ("429 Retry-After 1 s", "429:1", 1.0),
         ("429 retry-after-ms 300", "429ms:300", 0.3), ("500", "500", 0.0), ("503", "503", 0.0),
         ("slow past timeout", "slow:{slow}", 0.0), ("reset", "reset", 0.0), ("stream cut (plain: reset)", "cut", 0.0),
         ("invalid JSON", "badjson", 0.0)]


def run_kind(vendor: StandIn, fault: str | None, n: int) -> dict[str, object]:
    replies = errors = 0
    kinds: Counter[str] = Counter()
    times: list[float] = []
    gaps: list[float] = []
    attempts = 0
    runtime = Runtime()
    logged_before = sum(len(m) for _, m in runtime.db.dialogue.export())
    for i in range(n):
        vendor.arrivals.clear()
        if fault:
            vendor.faults.append(fault)
        session = ChatSession(runtime)
        started = time.perf_counter()
        try:
            reply = session.stream(f"question {i}").read() if i % 2 else session.send(f"question {i}")
            replies += reply.text.startswith("Stand-in reply")
        except TuneloopError as exc:
            errors += 1
            kinds[type(exc).__name__] += 1
        times.append(time.perf_counter() - started)
        arrivals = [a for a in vendor.arrivals if a[1].endswith("/chat/completions")]
        gaps += [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
        attempts += len(arrivals)
        vendor.faults.clear()
    logged = (sum(len(m) for _, m in runtime.db.dialogue.export()) - logged_before) // 2
    return {"replies": replies, "logged": logged, "errors": errors, "kinds": dict(kinds), "attempts": attempts / n,
            "median_s": statistics.median(times), "gap_s": statistics.median(gaps) if gaps else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6, help="requests per kind of fault")
    parser.add_argument("--timeout", type=float, default=1.0, help="read timeout in seconds (slow faults exceed it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, StandIn(api_key=KEY) as vendor:
        os.environ.update(TUNELOOP_HOME=home, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=vendor.base_url,
                          TUNELOOP_REQUEST_TIMEOUT=str(args.timeout), TUNELOOP_PROVIDER="openai")
        os.environ.pop("TUNELOOP_DATABASE_URL", None)
        print(f"{args.n} requests per kind (plain and streamed alternately), retries 2, read timeout "
              f"{args.timeout:g} s, backoff 0.5 s doubling (jitter -25%)\n")
        header = (f"{'fault':28} {'replies':>7} {'logged':>6} {'errors':>6} {'attempts/req':>12} {'median s':>9} "
                  f"{'x none':>7} {'waited s':>8} {'asked s':>7}  typed errors")
        print(header)
        print("-" * len(header))
        base = None
        for label, fault, asked in KINDS:
            vendor.arrivals.clear()
            fault = fault.format(slow=args.timeout * 3) if fault else None
            result = run_kind(vendor, fault, args.n)
            base = base or result["median_s"]
            print(f"{label:28} {result['replies']:>7} {result['logged']:>6} {result['errors']:>6} "
                  f"{result['attempts']:>12.1f} "
                  f"{result['median_s']:>9.3f} {result['median_s'] / base:>7.1f} {result['gap_s']:>8.3f} "
                  f"{asked:>7.3f}  {result['kinds'] or '-'}")
        # A vendor that never recovers: attempts are retries + 1, never retries × retries.
        vendor.arrivals.clear()
        vendor.faults.extend(["503"] * 100)
        started = time.perf_counter()
        try:
            ChatSession(Runtime()).send("give up")
            outcome = "a reply (wrong)"
        except TuneloopError as exc:
            outcome = type(exc).__name__
        seen = len([a for a in vendor.arrivals if a[1].endswith("/chat/completions")])
        print(f"\nvendor always 503: {seen} attempts (retries 2 → 3 expected), {outcome}, "
              f"{time.perf_counter() - started:.2f} s")
        vendor.faults.clear()
        vendor.arrivals.clear()
        vendor.faults.append("429:3600")
        try:
            ChatSession(Runtime()).send("later")
        except TuneloopError as exc:
            print(f"vendor asks to wait 3600 s (cap 60 s): {len(vendor.arrivals)} attempt, {type(exc).__name__}: "
                  f"{str(exc)[:90]}…")


if __name__ == "__main__":
    main()
