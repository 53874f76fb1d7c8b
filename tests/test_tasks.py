"""The one task runner for long work: tasks taken once by racing processes (SQLite and PostgreSQL), a run cancelled
half-way, a judge run and a dashboard eval that survive `kill -9` of the server (and of their workers) and finish
after a restart, jobs of an older store carried into tasks by migration 0011, and the tasks' CLI and HTTP routes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HANG, MODELS_DIR, assert_one_line_error, run_cli, wait_until
from helpers import log_exchange
from tiny_models import build_tiny_model

from tuneloop.config import load_settings
from tuneloop.store import Store

KEY = "tasks-key"
BASE = "smollm2-135m-instruct"

CLAIMER = """
import json, os, sys
from tuneloop.store import Store
store = Store(sys.argv[1], busy_timeout=60)
name, taken = f"racer:{os.getpid()}", []
while (task := store.tasks.claim(name, pid=os.getpid(), kinds=["micro"])) is not None:
    taken.append(task.id)
    store.tasks.update(task.id, status="succeeded", only_if_status=("running",), only_if_worker=name)
print(json.dumps(taken))
"""


def test_two_processes_never_take_one_task(database_url: str) -> None:
    store = Store(database_url)
    made = {store.tasks.create("micro", params={"n": i}).id for i in range(120)}
    racers = [subprocess.Popen([sys.executable, "-c", CLAIMER, database_url], stdout=subprocess.PIPE, text=True)
              for _ in range(2)]
    taken = [json.loads(r.communicate(timeout=HANG)[0]) for r in racers]
    assert all(r.returncode == 0 for r in racers)
    assert set(taken[0]).isdisjoint(taken[1]) and set(taken[0]) | set(taken[1]) == made
    assert all(len(t) == len(set(t)) for t in taken) and all(taken)  # each took some, none twice
    assert {t.status for t in store.tasks.list(limit=200)} == {"succeeded"}


def log_replies(home: Path, count: int) -> list[int]:
    store = Store(load_settings().resolved_database_url).dialogue
    ids = []
    for i in range(count):
        thread = store.create_thread(model=BASE).id
        ids.append(log_exchange(store, thread, f"Question {i}: what is {i} plus {i}?", f"It is {i + i}.",
                                model=BASE).assistant.id)
    return ids


def task_state(task_id: str) -> Any:
    return Store(load_settings().resolved_database_url).tasks.get(task_id)


def progressed(task_id: str, done: int) -> Any:
    task = task_state(task_id)
    return task if (task.progress or {}).get("done", 0) >= done else None


@pytest.mark.slow
def test_a_run_cancelled_half_way_stops_and_is_marked_cancelled(home: Path) -> None:
    replies = log_replies(home, 48)
    assert run_cli("judge", "add", "sums", "The reply gives the right sum.").code == 0
    started = run_cli("judge", "run", "sums", "--json")
    assert started.code == 0, started.stderr
    task_id = json.loads(started.stdout)["id"]
    running = wait_until(lambda: progressed(task_id, 16), timeout=HANG)
    assert running.status == "running" and running.progress["total"] == len(replies)
    cancelled = run_cli("tasks", "cancel", task_id, "--json")
    assert cancelled.code == 0 and json.loads(cancelled.stdout)["status"] == "cancelled", cancelled.stderr
    worker = running.pid
    wait_until(lambda: not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text(),
               timeout=HANG)
    ended = task_state(task_id)
    verdicts = Store(load_settings().resolved_database_url).judgments.verdicts("sums")
    assert ended.status == "cancelled" and ended.result is None and ended.finished_at is not None
    assert 16 <= len(verdicts) < len(replies)  # what it judged stays; it judged no more after the cancel
    events = [e.message for e in Store(load_settings().resolved_database_url).tasks.events(task_id)]
    assert events.count("The run was cancelled") == 1
    assert_one_line_error(run_cli("tasks", "cancel", task_id), "already cancelled")
    assert_one_line_error(run_cli("tasks", "show", "task-nope"), "no task 'task-nope'")


class Dashboard:
    """The dashboard over plain HTTP: signed in with the key, each form sent with its CSRF token."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)
        self.http.post("/ui/login", data={"key": KEY, "next": "/ui/log", "csrf_token": self.token("/ui/login")})

    def token(self, path: str) -> str:
        return re.search(r'name="csrf-token" content="([^"]+)"', self.http.get(path).text).group(1)

    def post(self, path: str, form: dict[str, Any], page: str) -> httpx.Response:
        return self.http.post(path, data={**form, "csrf_token": self.token(page)})


@pytest.fixture
def server_process(home: Path, tmp_path: Path) -> Iterator[Any]:
    """`tuneloop serve` in a process of its own: ``start()`` (again after a kill) gives its base URL."""
    running: list[subprocess.Popen] = []

    def start() -> str:
        log = tmp_path / f"serve{len(running)}.log"
        with log.open("wb") as out:
            running.append(subprocess.Popen([sys.executable, "-m", "tuneloop", "serve", "--port", "0", "--api-key",
                                             KEY], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return wait_until(lambda: re.search(r"listening on (http://\S+)/v1", log.read_text()), timeout=HANG).group(1)

    start.processes = running
    yield start
    for process in running:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


@pytest.mark.slow
def test_a_judge_run_and_a_dashboard_eval_survive_kill_9_and_finish_after_a_restart(
        home: Path, server_process: Any) -> None:
    replies = log_replies(home, 48)
    store = Store(load_settings().resolved_database_url)
    store.judgments.save_judge("sums", "The reply gives the right sum.", model=None, rule="pass")
    build_tiny_model("llama", MODELS_DIR / BASE, home / "tiny-llama")
    assert run_cli("models", "add", "tiny-llama", str(home / "tiny-llama")).code == 0
    dashboard = Dashboard(server_process())
    assert dashboard.post("/ui/judges/sums/run", {"limit": ""}, "/ui/judges").status_code == 303
    # The quick model first: the run keeps its answers before the slow one is asked.
    asked = dashboard.post("/ui/evals", {"source": "demo", "model": ["tiny-llama", BASE], "max_tokens": "64"},
                           "/ui/evals")
    assert asked.status_code == 303 and asked.headers["location"].startswith("/ui/tasks/task-")
    eval_id = asked.headers["location"].rsplit("/", 1)[1]
    judge_id = store.tasks.unfinished(["judge_run"])[0].id
    judge = wait_until(lambda: progressed(judge_id, 16), timeout=HANG)
    evaluated = wait_until(lambda: (t := task_state(eval_id)).state and t, timeout=HANG)  # one model asked, kept
    assert judge.active and evaluated.active and judge.progress["done"] < len(replies)

    # A power cut, as far as these processes know: the server and both tasks' workers at once.
    for pid in (server_process.processes[-1].pid, task_state(judge_id).pid, task_state(eval_id).pid):
        os.kill(pid, signal.SIGKILL)
    server_process.processes[-1].wait()
    assert task_state(judge_id).status == task_state(eval_id).status == "running"  # as the dead left them

    dashboard = Dashboard(server_process())  # the restarted server notices the dead workers and starts new ones
    for task_id in (judge_id, eval_id):
        done = wait_until(lambda task_id=task_id: not (t := task_state(task_id)).active and t, timeout=HANG)
        assert done.status == "succeeded" and done.attempts == 2, done.error
        messages = [e.message for e in store.tasks.events(task_id)]
        assert any("ended without finishing the run" in m and "queued again (1 of 3" in m for m in messages)
    verdicts = store.judgments.verdicts("sums")
    assert sorted(v.message_id for v in verdicts) == replies  # every reply judged once: none redone, none skipped
    result = task_state(eval_id).result
    run = store.eval_runs.get(result["eval_run"])
    assert run.models == ["tiny-llama", BASE] and store.eval_runs.count() == 1
    restarted = [e for e in store.tasks.events(eval_id) if e.type == "progress"
                 and e.created_at > min(x.created_at for x in store.tasks.events(eval_id)
                                        if "attempt 2" in x.message)]
    assert restarted[0].data["done"] == 20  # the second start began after the model the first one finished
    page = dashboard.http.get(f"/ui/tasks/{eval_id}")
    assert page.status_code == 200 and "The eval run&#39;s answers" in page.text and "succeeded" in page.text


def test_tasks_over_http_and_the_cli(home: Path) -> None:
    from conftest import serving

    with serving(home, KEY, settings={"spawn_worker": False}) as server:  # the task waits for a worker
        store = server.state.runtime.db
        made = store.tasks.create("elsewhere_kind", title="a task no worker here runs")
        http = httpx.Client(base_url=server.base_url, headers={"authorization": f"Bearer {KEY}"})
        listed = http.get("/tasks").json()
        assert listed["object"] == "list" and listed["data"][0]["id"] == made.id
        assert http.get(f"/tasks/{made.id}").json()["status"] == "queued"
        dashboard = Dashboard(server.base_url.removesuffix("/v1"))
        listing = dashboard.http.get("/ui/tasks")  # an unfinished task: the list follows it
        assert listing.headers["refresh"].startswith("5;") and "reloads itself" in listing.text
        done = store.tasks.create("elsewhere_kind", title="a finished task")
        store.tasks.update(done.id, status="succeeded", result={"files": ["a <b>", "c"], "count": 2, "note": None})
        page = dashboard.http.get(f"/ui/tasks/{done.id}").text
        assert "<li>a &lt;b&gt;</li><li>c</li>" in page and "<dt>count</dt>" in page and "—" in page
        assert http.get("/tasks/task-nope").status_code == 404
        assert http.get("/tasks", headers={"authorization": "Bearer wrong"}).status_code == 401
        cancelled = http.post(f"/tasks/{made.id}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
        again = http.post(f"/tasks/{made.id}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]
        events = http.get(f"/tasks/{made.id}/events").json()["data"]
        assert [e["message"] for e in events] == ["The task was cancelled"]
        assert "refresh" not in dashboard.http.get("/ui/tasks").headers  # nothing unfinished: no reloading
    shown = run_cli("tasks", "list", "--json")
    assert shown.code == 0 and [t["id"] for t in json.loads(shown.stdout)] == [done.id, made.id]
    assert run_cli("tasks", "--help").code == 0


def test_a_task_whose_workers_cannot_start_fails_after_a_few_and_remote_jobs_are_not_waited_on(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued task whose one-task workers all end before taking it (here: the configuration was broken after the
    server read it) is failed after job_max_attempts of them, naming the last one's output, instead of a worker
    started each time it is looked at."""
    from tuneloop.errors import TaskStateError
    from tuneloop.tasks import Tasks

    settings = load_settings()
    tasks = Tasks(Store(settings.resolved_database_url), settings)
    monkeypatch.setenv("TUNELOOP_MAX_TOKENS", "0")  # what the workers read: they stop at once
    made = tasks.store.tasks.create("elsewhere_kind", title="a task no worker lives to take")
    done = wait_until(lambda: not (t := tasks.get(made.id)).active and t, timeout=HANG)
    assert done.status == "failed" and done.spawns == settings.job_max_attempts == 3 and done.attempts == 0
    assert done.error["message"].startswith("3 workers started for the task ended before taking it")
    assert str(home / "tasks" / made.id / "worker.log") in done.error["message"]
    assert tasks.get(made.id).spawns == 3  # looking again starts nothing
    assert "invalid configuration" in (home / "tasks" / made.id / "worker.log").read_text()
    remote = tasks.store.tasks.create("remote_fine_tune", title="a job a platform runs")
    with pytest.raises(TaskStateError, match="remote platform") as raised:
        tasks.wait(remote.id)
    assert raised.value.hint == f"`tuneloop jobs wait {remote.id}` follows it"


def test_a_spawned_worker_reaches_the_model_the_server_was_told_to_use(home: Path) -> None:
    """A one-task worker gets the key, base URL, provider and model of the settings that spawned it (a judge run may
    ask a remote judge), never the server's own key; a training child gets no key at all."""
    from pydantic import SecretStr

    from tuneloop.tasks import child_environment
    from tuneloop.tasks.processes import worker_environment

    settings = load_settings().model_copy(update={"openai_api_key": SecretStr("sk-from-settings"), "provider":
                                                  "openai", "openai_base_url": "http://127.0.0.1:9/v1", "model": "m"})
    os.environ["TUNELOOP_SERVER_API_KEY"] = "server-key"
    try:
        env = worker_environment(settings)
        child = child_environment(settings)
    finally:
        del os.environ["TUNELOOP_SERVER_API_KEY"]
    assert (env["OPENAI_API_KEY"], env["TUNELOOP_PROVIDER"], env["OPENAI_BASE_URL"], env["TUNELOOP_MODEL"]) == (
        "sk-from-settings", "openai", "http://127.0.0.1:9/v1", "m")
    assert "TUNELOOP_SERVER_API_KEY" not in env and "OPENAI_API_KEY" not in child
    assert env["TUNELOOP_DATABASE_URL"] == child["TUNELOOP_DATABASE_URL"] == settings.resolved_database_url
