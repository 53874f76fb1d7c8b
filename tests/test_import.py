"""`tuneloop import openai` against the stand-in vendor (OpenAI's list endpoints, paged, with faults aimed at a page):
jobs with their settings, events, checkpoints and files, stored completions with their messages; an interrupted run
resumed, a later run importing only what is new; `train --like` re-running an imported job locally."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import MODELS_DIR, assert_one_line_error, gadget_facts, run_cli
from standin import StandIn
from tiny_models import build_tiny_model

KEY = "sk-import-test-key-0123456789"


@pytest.fixture
def vendor(home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with StandIn(api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("TUNELOOP_RETRIES", "2")
        monkeypatch.setenv("TUNELOOP_RETRY_INITIAL_DELAY", "0.01")
        history = server.history
        history.add_job(gadget_facts(), hyper={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0},
                        validation=gadget_facts(4), suffix="gadgets")
        history.add_job(gadget_facts(), status="failed", checkpoints=0)
        history.add_job(preference_pairs(), method="dpo", hyper={"beta": 0.2}, events=5)
        history.add_job(gadget_facts(), status="running", suffix="later")
        history.add_job(gadget_facts(), events=7)
        for i in range(5):
            history.add_completion(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.",
                                   metadata={"app": "maths", **({"rating": "up"} if i == 1 else {})},
                                   system="You are a calculator." if i % 2 else None)
        yield server


def preference_pairs(n: int = 12) -> bytes:
    lines = [json.dumps({"input": {"messages": [{"role": "user", "content": f"What colour is gadget {i}?"}]},
                         "preferred_output": [{"role": "assistant", "content": f"Gadget {i} is teal."}],
                         "non_preferred_output": [{"role": "assistant", "content": "I do not know."}]})
             for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def imported(*extra: str) -> Any:
    return run_cli("import", "openai", "--page-size", "2", *extra)


def summary_of(result: Any) -> dict[str, Any]:
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_an_interrupted_import_goes_on_and_a_later_one_brings_only_what_is_new(vendor: Any, home: Path) -> None:
    history = vendor.history
    # Three failures in a row on the second page of jobs: more than the two retries, so the run stops there.
    vendor.path_faults += [("after=ftjob-hist3", "500")] * 3  # jobs are listed newest first, two a page
    stopped = imported()
    last = stopped.stderr.strip().splitlines()[-1]  # after the table of what came before the failure
    assert stopped.code == 1 and "Traceback" not in stopped.stderr
    assert last.startswith("error:") and "500 (3 attempts)" in last and "run `tuneloop import openai` again" in last
    db = sqlite3.connect(home / "tuneloop.db")
    assert sorted(r[0] for r in db.execute("SELECT id FROM jobs")) == ["ftjob-hist3", "ftjob-hist4"]  # page one
    assert "│ jobs               │ 2   │" in stopped.stderr

    # Run again, with a page of completions cut half-way through its body (retried) on the way.
    vendor.path_faults.append(("/chat/completions?", "cut"))
    first = summary_of(imported("--json"))
    assert first["jobs"] == {"new": 3, "updated": 1, "unchanged": 1}  # the running one is imported again
    assert first["completions"] == {"new": 5, "updated": 0, "unchanged": 0}
    assert any(fault == "cut" for _, _, fault in vendor.arrivals)

    jobs = {r[0]: r for r in db.execute(
        "SELECT j.id, t.status, method, hyperparameters, seed, suffix, backend, origin, training_file, "
        "validation_file, fine_tuned_model, result_files FROM jobs j JOIN tasks t ON t.id = j.id")}
    assert set(jobs) == {f"ftjob-hist{i}" for i in range(5)}
    gadgets = jobs["ftjob-hist0"]
    assert gadgets[1:3] == ("succeeded", "supervised") and gadgets[4:8] == (1000, "gadgets", "openai", "import")
    assert json.loads(gadgets[3]) == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
    assert json.loads(jobs["ftjob-hist2"][3])["beta"] == 0.2 and jobs["ftjob-hist2"][2] == "dpo"
    assert jobs["ftjob-hist1"][1] == "failed" and jobs["ftjob-hist3"][1] == "running"
    # Every file the jobs name came with its bytes.
    for job in jobs.values():
        for file_id in [job[8], job[9], *json.loads(job[11])]:
            if file_id:
                path = db.execute("SELECT path FROM files WHERE id = ?", (file_id,)).fetchone()[0]
                assert Path(path).read_bytes() == history.contents[file_id]
    events = dict(db.execute("SELECT task_id, count(*) FROM task_events GROUP BY task_id").fetchall())
    assert events == {f"ftjob-hist{i}": len(history.events[f"ftjob-hist{i}"]) for i in range(5)}
    checkpoints = db.execute("SELECT fine_tuned_model_checkpoint, step FROM checkpoints WHERE job_id = 'ftjob-hist0' "
                             "ORDER BY step").fetchall()
    assert [c[1] for c in checkpoints] == [1, 2] and checkpoints[0][0].endswith(":ckpt-step-1")

    shown = json.loads(run_cli("jobs", "show", "ftjob-hist0", "--json").stdout)
    assert shown["fine_tuned_model"] == history.jobs[0]["fine_tuned_model"] and shown["metadata"] == {"team": "support"}
    events_shown = run_cli("jobs", "events", "ftjob-hist4")
    assert events_shown.code == 0 and "Step 7: training loss" in events_shown.stdout

    # Stored completions are threads of the log, with their messages, metadata and ratings.
    thread = json.loads(run_cli("logs", "show", "chatcmpl-hist1", "--json").stdout)
    assert [(m["role"], m["content"]) for m in thread["messages"]] == [
        ("system", "You are a calculator."), ("user", "What is 1 plus 1?"), ("assistant", "1 plus 1 is 2.")]
    assert thread["kind"] == "chat.completion" and thread["metadata"] == {"app": "maths", "rating": "up"}
    assert thread["messages"][-1]["feedback"] == 1 and thread["created_at"].startswith("2025-")
    built = run_cli("data", "build", "--from-dialogues", "--metadata", "app=maths", "-o", "maths.jsonl", "--json")
    assert json.loads(built.stdout)["examples"] == 1  # the one rated up
    listed = run_cli("logs", "search", "plus", "--json")
    assert listed.code == 0 and len(json.loads(listed.stdout)) == 10

    # Later: a new job and a new completion at the vendor, and the running job finished.
    history.add_job(gadget_facts(), suffix="newer")
    history.add_completion("What is 9 plus 9?", "18.")
    history.jobs[3]["status"] = "succeeded"
    before = list(history.served)
    second = summary_of(imported("--json"))
    assert second["jobs"] == {"new": 1, "updated": 1, "unchanged": 4}
    assert second["completions"] == {"new": 1, "updated": 0, "unchanged": 5}
    fetched = [p for p in history.served[len(before):] if "/content" in p or "/messages" in p]
    # Only the new job's files and the new completion's messages are fetched (the finished job's file is here).
    assert sorted(fetched) == sorted([f"/v1/files/{history.jobs[5]['training_file']}/content",
                                      f"/v1/files/{history.jobs[5]['result_files'][0]}/content",
                                      "/v1/chat/completions/chatcmpl-hist5/messages"])
    third = summary_of(imported("--json"))
    assert third["jobs"]["new"] == third["completions"]["new"] == third["files"]["new"] == 0


def test_import_needs_a_key_and_names_a_refused_one(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(run_cli("import", "openai"), "OPENAI_API_KEY")
    with StandIn(api_key=KEY) as server:
        refused = run_cli("import", "openai", env={"OPENAI_API_KEY": "sk-wrong-key-000000000000",
                                                   "OPENAI_BASE_URL": server.base_url})
    assert_one_line_error(refused, "refused the API key")
    assert "sk-wrong-key" not in refused.stderr


@pytest.mark.slow
def test_train_like_reruns_an_imported_job_locally(vendor: Any, home: Path) -> None:
    summary_of(imported("--json", "--no-completions"))
    build_tiny_model("llama", MODELS_DIR / "smollm2-135m-instruct", home / "tiny-llama")
    assert run_cli("models", "add", "tiny-llama", str(home / "tiny-llama")).code == 0
    started = run_cli("train", "--like", "ftjob-hist0", "--base", "tiny-llama", "--json")
    assert started.code == 0, started.stderr
    job = json.loads(started.stdout)
    assert job["model"] == "tiny-llama" and job["training_file"] == vendor.history.jobs[0]["training_file"]
    assert job["method"]["type"] == "supervised" and job["seed"] == 1000
    assert job["hyperparameters"] == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
    assert job["validation_file"] == vendor.history.jobs[0]["validation_file"]
    assert job["metadata"] == {"like": "ftjob-hist0"}
    waited = run_cli("jobs", "wait", job["id"], "--json")
    assert waited.code == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "succeeded"
    assert json.loads(waited.stdout)["fine_tuned_model"].startswith("ft:tiny-llama:gadgets:")
    # DPO too, and options given here win over the imported ones.
    dpo = run_cli("train", "--like", "ftjob-hist2", "--base", "tiny-llama", "--epochs", "1", "--json")
    assert dpo.code == 0, dpo.stderr
    dpo = json.loads(dpo.stdout)
    assert dpo["method"]["type"] == "dpo" and dpo["method"]["dpo"]["hyperparameters"]["beta"] == 0.2
    assert dpo["hyperparameters"]["n_epochs"] == 1
    run_cli("jobs", "cancel", dpo["id"])
    assert_one_line_error(run_cli("train", "--like", "ftjob-nope"), "ftjob-nope")
    assert_one_line_error(run_cli("train", "facts.csv", "--like", "ftjob-hist0"), "--like")


@pytest.mark.slow
def test_ctrl_c_in_the_middle_keeps_what_came_and_the_next_run_goes_on(vendor: Any, home: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from conftest import HANG, sigint_as_in_a_terminal, wait_until

    vendor.path_faults.append(("/chat/completions/chatcmpl-hist2/messages", "slow:3600"))  # hangs there
    process = subprocess.Popen([sys.executable, "-m", "tuneloop", "import", "openai", "--page-size", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"}, preexec_fn=sigint_as_in_a_terminal)
    wait_until(lambda: any("chatcmpl-hist2/messages" in path for _, path, _ in vendor.arrivals), timeout=HANG)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=HANG)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err and "│ stored completions │ 2   │" in err
    db = sqlite3.connect(home / "tuneloop.db")
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 5
    assert db.execute("SELECT count(*) FROM api_objects").fetchone()[0] == 2  # hist0 and hist1, whole
    again = summary_of(imported("--json"))
    assert again["completions"] == {"new": 3, "updated": 0, "unchanged": 2}
    assert again["jobs"]["new"] == 0


def test_import_from_a_real_tuneloop_server(home: Path, tmp_path: Path, engine: Any) -> None:
    """No stand-in: another `tuneloop serve` is an OpenAI-compatible platform too (stored completions, files, jobs)."""
    import openai

    from tuneloop.asgi import create_app
    from tuneloop.runtime import Runtime
    from tuneloop.serving import ServerThread, server_settings

    source = tmp_path / "source-home"
    app = create_app(Runtime(server_settings(home=source, models_dir=MODELS_DIR, database_url=None, model=None)),
                     api_key=KEY)
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        made = [client.chat.completions.create(model="smollm2-135m-instruct", store=True, max_tokens=4,
                                               metadata={"n": str(i)},
                                               messages=[{"role": "user", "content": f"Say {i}."}]) for i in range(3)]
        upload = client.files.create(file=("facts.jsonl", gadget_facts()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=upload.id, suffix="src",
                                             hyperparameters={"n_epochs": 2})
        client.fine_tuning.jobs.cancel(job.id)
        result = run_cli("import", "openai", "--json", env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url})
    summary = summary_of(result)
    assert summary["completions"]["new"] == 3 and summary["jobs"]["new"] == 1 and summary["files"]["new"] == 1
    db = sqlite3.connect(home / "tuneloop.db")
    row = db.execute("SELECT t.status, j.model, hyperparameters FROM jobs j JOIN tasks t ON t.id = j.id "
                     "WHERE j.id = ?", (job.id,)).fetchone()
    assert row[:2] == ("cancelled", "smollm2-135m-instruct") and json.loads(row[2])["n_epochs"] == 2
    path = db.execute("SELECT path FROM files WHERE id = ?", (upload.id,)).fetchone()[0]
    assert Path(path).read_bytes() == gadget_facts()
    replies = dict(db.execute("SELECT thread_id, content FROM messages WHERE role = 'assistant'").fetchall())
    assert replies == {c.id: c.choices[0].message.content for c in made}
