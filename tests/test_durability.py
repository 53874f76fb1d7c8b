"""Crashes and crowds, on SQLite and on PostgreSQL: eight processes appending to one store, writers killed with
SIGKILL in the middle of their work, and a server killed with its workers while jobs run, then restarted."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import HANG, MODELS_DIR, gadget_facts, run_cli, sigint_as_in_a_terminal, wait_until
from helpers import log_exchange
from sqlalchemy import create_engine, text
from tiny_models import build_tiny_model

from tuneloop.store import DialogueStore

pytestmark = pytest.mark.slow  # processes at once, kill -9 mid-write, a server killed and restarted

# One writer: appends exchanges to its own thread, as fast as it can, and says when it has written each.
WRITER = """
import sys
from tuneloop.curation.labels import Labeller, log_exchange
from tuneloop.store import DialogueStore
url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = DialogueStore(url, busy_timeout=30)
thread = f"thread_{name}"
for i in range(count):
    log_exchange(store, thread, f"{name} question {i}", f"{name} answer {i} " + "words " * 50, Labeller(),
                 model="m", create=i == 0)
    print(i, flush=True)
"""


def writer(url: str, name: str, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, url, name, str(count)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_whole_exchanges(store: DialogueStore) -> dict[str, int]:
    """Every thread holds whole exchanges in order (user i, assistant i); returns exchanges per thread."""
    counts = {}
    for thread, messages in store.export():
        name = thread.id.removeprefix("thread_")
        assert [m.role for m in messages] == ["user", "assistant"] * (len(messages) // 2), thread.id
        assert len(messages) % 2 == 0
        for i in range(len(messages) // 2):
            assert messages[2 * i].content == f"{name} question {i}"
            assert messages[2 * i + 1].content.startswith(f"{name} answer {i} ")
        counts[name] = len(messages) // 2
    return counts


def test_eight_processes_append_to_one_store_and_none_sees_a_lock(database_url: str) -> None:
    DialogueStore(database_url).close()  # (opening at once is tested too: each writer migrates if it must)
    per_writer = 40
    writers = [writer(database_url, f"w{i}", per_writer) for i in range(8)]
    results = [(w.wait(timeout=HANG), w.stderr.read()) for w in writers]
    assert all(code == 0 for code, _ in results), [err[-800:] for _, err in results]
    assert not any("locked" in err.lower() for _, err in results)
    counts = assert_whole_exchanges(DialogueStore(database_url))
    assert counts == {f"w{i}": per_writer for i in range(8)}


def test_eight_processes_open_a_new_store_at_once(database_url: str) -> None:
    writers = [writer(database_url, f"n{i}", 3) for i in range(8)]
    results = [(w.wait(timeout=HANG), w.stderr.read()) for w in writers]
    assert all(code == 0 for code, _ in results), [err[-800:] for _, err in results]
    assert assert_whole_exchanges(DialogueStore(database_url)) == {f"n{i}": 3 for i in range(8)}


def test_a_writer_killed_mid_write_never_leaves_half_an_exchange(database_url: str) -> None:
    DialogueStore(database_url).close()
    for round_ in range(4):
        process = writer(database_url, f"k{round_}", 100000)
        # Wait until it is writing (a state, not a time), then kill it wherever it is.
        for _ in range(20 + 15 * round_):
            assert process.stdout.readline(), process.stderr.read()
        process.kill()
        process.wait(timeout=HANG)
    store = DialogueStore(database_url)
    counts = assert_whole_exchanges(store)
    assert set(counts) == {f"k{i}" for i in range(4)} and all(n >= 20 for n in counts.values())
    if store.db.dialect == "sqlite":
        engine = create_engine(database_url)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert conn.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")) is not None
        engine.dispose()
    # The store takes new writes, and search still finds what was written before the kills.
    log_exchange(store, "thread_k0", "k0 question after", "k0 answer after", model="m")
    assert store.search("question after")[0].message.content == "k0 question after"


@pytest.fixture
def served(any_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNELOOP_WORKER_HEARTBEAT", "1")
    build_tiny_model("llama", MODELS_DIR / "smollm2-135m-instruct", any_home / "tiny-llama")
    assert run_cli("models", "add", "tiny-llama", str(any_home / "tiny-llama")).code == 0
    return any_home


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    with log.open("ab") as out:
        # Its own session, so the test can kill the server and nothing else (its one-job workers have theirs).
        process = subprocess.Popen([sys.executable, "-m", "tuneloop", "serve", "--port", "0"], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "COLUMNS": "200"}, preexec_fn=sigint_as_in_a_terminal)
    found = wait_until(lambda: process.poll() is not None or re.findall(r"listening on (http://\S+/v1)",
                                                                         log.read_text()), timeout=HANG)
    assert process.poll() is None, log.read_text()
    return process, found[-1]


def stop_server(process: subprocess.Popen) -> None:
    """Ctrl-C, as a person would; kill only if it has not stopped within a minute."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        process.kill()


def descendants(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                children.append(int(entry))
    return children + [g for c in children for g in descendants(c)]


def test_a_server_killed_with_its_workers_restarts_and_no_job_is_left_behind(served: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    server, url = start_server(log)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    file = client.files.create(file=("facts.jsonl", gadget_facts()), purpose="fine-tune")
    hyper: dict[str, Any] = {"n_epochs": 6, "batch_size": 2}
    jobs = [client.fine_tuning.jobs.create(model="tiny-llama", training_file=file.id, suffix=f"r{i}", seed=i,
                                           method={"type": "supervised", "supervised": {"hyperparameters": hyper}})
            for i in range(2)]

    def training() -> Any:  # the first job is training (a metrics event), the second waits its turn
        events = client.fine_tuning.jobs.list_events(jobs[0].id).data
        return any(e.type == "metrics" for e in events) and client.fine_tuning.jobs.retrieve(jobs[1].id)

    second = wait_until(training, timeout=HANG)
    assert second.status == "queued"
    from tuneloop.config import load_settings
    from tuneloop.store.jobs import JobStore

    store = JobStore(DialogueStore(load_settings().resolved_database_url))
    workers = [store.get_job(j.id).pid for j in jobs]
    victims = [pid for pid in workers if pid] + [d for pid in workers if pid for d in descendants(pid)]
    assert len([p for p in workers if p]) == 2
    # A power cut, as far as these processes know: the server and both jobs' workers (and trainer) at once.
    os.kill(server.pid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.wait(timeout=HANG)
    assert store.get_job(jobs[0].id).status == "running"  # as the dead server left it

    server, url = start_server(tmp_path / "serve-again.log")
    try:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        finished = wait_until(lambda: all(store.get_job(j.id).status in ("succeeded", "failed", "cancelled")
                                          for j in jobs) and [store.get_job(j.id) for j in jobs], timeout=HANG)
        assert [j.status for j in finished] == ["succeeded", "succeeded"], [j.error for j in finished]
        assert finished[0].attempts == 2  # started again after the crash
        assert any("ended without finishing the job" in e.message for e in store.events(jobs[0].id))
        served_ids = {m.id for m in client.models.list()}
        assert {j.fine_tuned_model for j in finished} <= served_ids
    finally:
        stop_server(server)
