"""The dashboard's log pages on a log of realistic size: server time per page, on SQLite and on PostgreSQL.

The issue's rule (Scale): with 10,000 threads and 100,000 messages in the store, the log page, a search and a
thread each answer in at most 300 ms of server time (p95) on 2 cores, on both databases.

bench/_seed_log.py seeds each store (SQLite: cached under .cache/bench/, keyed by the seeder and the migrations, so
a rerun starts at once; PostgreSQL: a throw-away cluster on 127.0.0.1 (tests/pg.py), seeded, measured, stopped).
The app is the real one (``tuneloop.web.create_app``), driven in this process by starlette's TestClient; the
server time of a request is measured around the ASGI call, from its start to the last byte of the body (what a
Server-Timing header would say), so the client's own work is not counted. Each page is asked for once to warm
up, then ``--reps`` times. For each page: p50 and p95, and two baselines from the same run:
- ``store p50``: the page's store calls alone (LogBrowser's facets, threads and sentiment_by_day; for a thread,
  get_thread, messages and verdicts_of), so the share of rendering and HTTP shows;
- ``p95 / 300 ms``: the budget; above 1.00 the page breaks the rule.

Run: ``.venv/bin/python bench/pages.py [--reps 30] [--no-postgres] [--no-sqlite]``. Bounded: about 2 to 4 minutes
(the first run seeds SQLite too, ~20 s), and an alarm stops it after ``--limit`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/pg.py: the throw-away PostgreSQL cluster

import _seed_log  # noqa: E402 - bench/_seed_log.py, beside this file
from starlette.testclient import TestClient  # noqa: E402

from tuneloop.runtime import Runtime  # noqa: E402
from tuneloop.serving import server_settings  # noqa: E402
from tuneloop.store import DialogueStore  # noqa: E402
from tuneloop.store.browse import LogBrowser  # noqa: E402
from tuneloop.store.judgments import Judgments  # noqa: E402
from tuneloop.web import create_app  # noqa: E402
from tuneloop.web.log import PER_PAGE, parse_filter  # noqa: E402

BUDGET_MS = 300.0
SEED_VERSION = 1  # bump when the seeded log should change


class Timed:
    """ASGI wrapper: the server time of the last request, from the call to the body's last byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed_send)


def cached_sqlite() -> Path:
    """The seeded SQLite store, seeded once per seeder and schema (a copy is what the bench opens)."""
    digest = hashlib.sha256(str(SEED_VERSION).encode())
    versions = ROOT / "src" / "tuneloop" / "store" / "migrations" / "versions"
    for path in [Path(_seed_log.__file__), *sorted(versions.glob("*.py"))]:
        digest.update(path.read_bytes())
    cached = ROOT / ".cache" / "bench" / f"pages-{digest.hexdigest()[:12]}.db"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        for old in cached.parent.glob("pages-*.db*"):
            old.unlink()
        started = time.perf_counter()
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        db = _seed_log.seed(f"sqlite:///{partial}")
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        partial.rename(cached)
        print(f"seeded {cached} in {time.perf_counter() - started:.0f} s", flush=True)
    return cached


def cases() -> list[tuple[str, dict[str, str]]]:
    since = (_seed_log.NOW - timedelta(days=30)).date()
    return [
        ("log, page 1", {}),
        ("log, page 200", {"page": "200"}),
        ("language=fr", {"language": "fr"}),
        ("rating=up", {"rating": "up"}),
        ("rating=none", {"rating": "none"}),
        ("corrected=yes", {"corrected": "yes"}),
        ("judged=yes", {"judged": "yes"}),
        ("sentiment=negative", {"sentiment": "negative"}),
        ("source=conversation", {"source": "conversation"}),
        ("source=chat, page 50", {"source": "chat", "page": "50"}),
        ("metadata team=billing", {"metadata": "team=billing"}),
        ("7 days", {"since": since.isoformat(), "until": (since + timedelta(days=6)).isoformat()}),
        ("model+assistant", {"model": _seed_log.MODELS[2], "assistant": "support"}),
        ("search 'order' (common)", {"q": "order"}),
        ("search 'password' (half)", {"q": "password"}),
        (f"search '{_seed_log.rare_word()}' (rare)", {"q": _seed_log.rare_word()}),
        ("search 'password refund'", {"q": "password refund"}),
        ("search 'refund' + fr + rated", {"q": "refund", "language": "fr", "rating": "any"}),
    ]


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, reps: int, label: str) -> list[dict[str, Any]]:
    home = Path(tempfile.mkdtemp(prefix="tuneloop-bench-pages-"))
    try:
        runtime = Runtime(server_settings(home=home, database_url=url, model=None))
        timed = Timed(create_app(runtime))
        store = runtime.db.dialogue
        browser = LogBrowser(store)
        dialogue = DialogueStore(store)
        judgments = Judgments(store)
        rows = []
        with TestClient(timed) as client:

            def serve(path: str) -> float:
                response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"{label}: {path} answered {response.status_code}: {response.text[:300]}")
                return timed.last

            def log_store(params: dict[str, str]) -> Callable[[], None]:
                where = parse_filter(params)
                offset = (int(params.get("page", "1")) - 1) * PER_PAGE
                return lambda: (browser.facets(), browser.threads(where, offset=offset, limit=PER_PAGE),
                                browser.sentiment_by_day(where))

            def thread_store(thread_id: str) -> None:
                dialogue.get_thread(thread_id)
                messages = dialogue.messages(thread_id)
                judgments.verdicts_of(m.id for m in messages if m.role == "assistant")

            plans: list[tuple[str, list[str], list[Callable[[], Any]]]] = []
            for name, params in cases():
                plans.append((name, [f"/ui/log?{urlencode(params)}"], [log_store(params)]))
            rng = random.Random(7)
            ids = [f"thread_{rng.randrange(_seed_log.THREADS):05d}" for _ in range(20)]
            plans.append(("20 thread pages", [f"/ui/log/{i}" for i in ids],
                          [lambda i=i: thread_store(i) for i in ids]))
            for name, paths, calls in plans:
                for path in paths:  # warm: templates compiled, the pages read once
                    serve(path)
                page = [serve(paths[r % len(paths)]) for r in range(max(reps, len(paths)))]
                alone = []
                for r in range(max(reps // 2, len(calls))):
                    started = time.perf_counter()
                    calls[r % len(calls)]()
                    alone.append(time.perf_counter() - started)
                row = {"database": label, "page": name, "p50": statistics.median(page) * 1000,
                       "p95": percentile(page, 0.95) * 1000, "store": statistics.median(alone) * 1000,
                       "n": len(page)}
                print(f"  {label} {name}: p50 {row['p50']:.0f} ms, p95 {row['p95']:.0f} ms", flush=True)
                rows.append(row)
        store.db.close()
        return rows
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--limit", type=int, default=600, help="seconds after which the bench stops, whatever")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(SystemExit(f"stopped after {args.limit} s")))
    signal.alarm(args.limit)
    rows: list[dict[str, Any]] = []
    if not args.no_sqlite:
        cached = cached_sqlite()
        folder = Path(tempfile.mkdtemp(prefix="tuneloop-bench-pages-db-"))
        try:
            shutil.copy(cached, folder / "store.db")  # the pages only read, but the bench never touches the cache
            os.chmod(folder / "store.db", 0o600)
            rows += measure(f"sqlite:///{folder / 'store.db'}", args.reps, "SQLite")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if not args.no_postgres:
        from pg import Cluster

        with Cluster() as cluster:
            url = cluster.new_database()
            started = time.perf_counter()
            _seed_log.seed(url).close()
            print(f"seeded PostgreSQL in {time.perf_counter() - started:.0f} s", flush=True)
            rows += measure(url, args.reps, "PostgreSQL")
    print(f"\n{_seed_log.THREADS:,} threads, {_seed_log.MESSAGES:,} messages; server time of each page (ASGI call to "
          f"last byte), {args.reps} requests after one to warm; store p50: the page's store calls alone; "
          f"budget {BUDGET_MS:.0f} ms (p95)\n")
    print("| database | page | p50 ms | p95 ms | store p50 ms | p95 / 300 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        flag = "" if r["p95"] <= BUDGET_MS else " **over**"
        print(f"| {r['database']} | {r['page']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['store']:.1f} | "
              f"{r['p95'] / BUDGET_MS:.2f}{flag} |")
    worst = max(rows, key=lambda r: r["p95"]) if rows else None
    if worst:
        print(f"\nslowest p95: {worst['database']} {worst['page']}, {worst['p95']:.0f} ms "
              f"({worst['p95'] / BUDGET_MS:.2f} of the budget)")


if __name__ == "__main__":
    main()
