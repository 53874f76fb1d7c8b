"""What keeping OpenAI's stateful objects costs, against a baseline in the same run.

1. Logging a stored chat completion (``store: true``: the request's messages, the reply, the completion, one
   transaction) against the same request not stored, over HTTP on `tuneloop serve` (one new token each, so the
   store's share shows).
2. Reading a response chain back (``previous_response_id``) at depth D against depth 1, at the store.
3. Listing stored completions, one page of 20 filtered by metadata, by the database (what the server does)
   against loading every stored completion and filtering in Python (the naive way), for N stored.
4. Importing N stored completions from the stand-in vendor (tests/standin.py) against listing them only.

Run: ``.venv/bin/python bench/stateful.py [--requests 20] [--depth 200] [--stored 3000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tuneloop.conversation.responses import ResponseLog, ResponseRequest, new_response_id, read_items, response_object  # noqa: E402
from tuneloop.conversation.stored_completions import StoredCompletions  # noqa: E402
from tuneloop.curation.labels import Labeller  # noqa: E402
from tuneloop.store import DialogueStore  # noqa: E402
from tuneloop.store.api_objects import ApiObjects  # noqa: E402
from tuneloop.store.conversations import NewMessage, new_item_id  # noqa: E402


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def bench_http(requests: int) -> None:
    import openai

    from tuneloop.asgi import create_app
    from tuneloop.runtime import Runtime
    from tuneloop.serving import ServerThread, server_settings

    home = Path(tempfile.mkdtemp())
    models = Path(os.environ.get("TUNELOOP_TEST_MODELS_DIR", Path(__file__).resolve().parent.parent / ".cache" /
                                 "test-models"))
    app = create_app(Runtime(server_settings(home=home, models_dir=models, database_url=None, model=None)))
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        ask = {"model": "smollm2-135m-instruct", "max_tokens": 1,
               "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
        client.chat.completions.create(**ask)  # warm
        plain, stored = [], []
        for i in range(requests):
            for times, store in ((plain, False), (stored, True)):
                started = time.perf_counter()
                client.chat.completions.create(**ask, store=store, metadata={"n": str(i)} if store else None)
                times.append(time.perf_counter() - started)
    print(f"1. chat completion, 1 token, median of {requests}: not stored {median_ms(plain):.1f} ms, stored "
          f"{median_ms(stored):.1f} ms; ratio {statistics.median(stored) / statistics.median(plain):.2f}")


def respond(log: ResponseLog, previous: str | None, i: int) -> str:
    request = ResponseRequest(model="m", items=read_items(f"Question {i}?"), instructions=None,
                              previous_response_id=previous, conversation=None, store=True, metadata=None,
                              max_output_tokens=None, temperature=None, top_p=None)
    log.history(request)
    body = response_object(request, new_response_id(), 0, status="completed", output=[], tokens=(1, 1))
    log.record(request, body, NewMessage("assistant", f"Answer {i}.", item_id=new_item_id(), model="m"))
    return body["id"]


def bench_chain(depth: int) -> None:
    log = ResponseLog(DialogueStore(f"sqlite:///{Path(tempfile.mkdtemp()) / 'chain.db'}"), Labeller())
    ids = []
    previous = None
    for i in range(depth):
        previous = respond(log, previous, i)
        ids.append(previous)

    def read(ident: str) -> float:
        request = ResponseRequest(model="m", items=[], instructions=None, previous_response_id=ident,
                                  conversation=None, store=False, metadata=None, max_output_tokens=None,
                                  temperature=None, top_p=None)
        started = time.perf_counter()
        history = log.history(request)
        assert len(history) == 2 * (ids.index(ident) + 1)
        return time.perf_counter() - started

    shallow = [read(ids[0]) for _ in range(20)]
    deep = [read(ids[-1]) for _ in range(20)]
    ratio = statistics.median(deep) / statistics.median(shallow)
    print(f"2. chain read back: depth 1 {median_ms(shallow):.2f} ms, depth {depth} {median_ms(deep):.1f} ms "
          f"({median_ms(deep) / depth:.3f} ms per response); ratio {ratio:.0f}")


def bench_list(stored: int) -> None:
    store = DialogueStore(f"sqlite:///{Path(tempfile.mkdtemp()) / 'list.db'}")
    kept = StoredCompletions(store, Labeller())
    for i in range(stored):
        body = {"id": f"chatcmpl-{i:06d}", "object": "chat.completion", "created": 0, "model": "m",
                "metadata": {"app": "a" if i % 10 else "b"}, "choices": []}
        kept.keep(body, [{"role": "user", "content": f"Q{i}"}], NewMessage("assistant", f"A{i}", model="m"))
    objects = ApiObjects(store)

    def by_database() -> float:
        started = time.perf_counter()
        page, _ = kept.list(metadata={"app": "b"}, limit=20)
        assert len(page) == 20
        return time.perf_counter() - started

    def naive() -> float:
        started = time.perf_counter()
        every = objects.list("chat.completion")[0]
        page = [o for o in every if (o.metadata or {}).get("app") == "b"][:20]
        assert len(page) == 20
        return time.perf_counter() - started

    fast = [by_database() for _ in range(10)]
    slow = [naive() for _ in range(10)]
    print(f"3. one page of 20 by metadata among {stored} stored: database {median_ms(fast):.1f} ms, load-all "
          f"{median_ms(slow):.1f} ms; ratio {statistics.median(slow) / statistics.median(fast):.1f}× faster")


def bench_import(count: int) -> None:
    from standin import StandIn

    from tuneloop.config import load_settings
    from tuneloop.importers.openai import OpenAIImport
    from tuneloop.runtime import Runtime

    with StandIn(api_key="sk-bench-import-0000") as vendor:
        for i in range(count):
            vendor.history.add_completion(f"Question {i}?", f"Answer {i}.", metadata={"n": str(i)})
        os.environ.update(OPENAI_API_KEY="sk-bench-import-0000", OPENAI_BASE_URL=vendor.base_url,
                          TUNELOOP_HOME=tempfile.mkdtemp())
        runtime = Runtime(load_settings())
        started = time.perf_counter()
        listed = sum(1 for _ in runtime.openai.client.chat.completions.list(limit=100))
        listing = time.perf_counter() - started
        started = time.perf_counter()
        summary = OpenAIImport(runtime).run(jobs=False)
        importing = time.perf_counter() - started
        assert listed == summary.completions.new == count
        started = time.perf_counter()
        again = OpenAIImport(runtime).run(jobs=False)
        second = time.perf_counter() - started
        assert again.completions.unchanged == count
    print(f"4. import of {count} stored completions: listing only {listing:.2f} s, importing {importing:.2f} s "
          f"({count / importing:.0f}/s; ratio {importing / listing:.1f}), a second run (nothing new) {second:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--depth", type=int, default=200)
    parser.add_argument("--stored", type=int, default=3000)
    parser.add_argument("--imported", type=int, default=500)
    args = parser.parse_args()
    bench_http(args.requests)
    bench_chain(args.depth)
    bench_list(args.stored)
    bench_import(args.imported)


if __name__ == "__main__":
    main()
