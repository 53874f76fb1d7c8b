"""Fine-tuning jobs for real: LoRA on the local model in a worker process, followed, killed and cancelled."""

from __future__ import annotations

import json
import os
import signal
import time
from importlib import resources
from pathlib import Path

import pytest
from conftest import HANG, assert_one_line_error, gadget_facts, run_cli, wait_until
from helpers import log_exchange
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from standin import StandIn

from tuneloop import OpenAIModel
from tuneloop.errors import DatasetInvalidError, InputError
from tuneloop.store.jobs import JobStateError
from tuneloop.training import FineTuning
from tuneloop.training.hyper import learning_rate, resolve

DATA = resources.files("tuneloop.data")
FACTS = DATA.joinpath("demo_facts.csv")


def start(ft: FineTuning, rows: int = 60, **hyper: object):  # noqa: ANN201
    lines = FACTS.read_text().splitlines()
    file = ft.add_file(_jsonl(lines[1 : rows + 1]), filename="facts.jsonl")
    return ft.create(file.id, hyperparameters=hyper or None, seed=7)


def _jsonl(csv_lines: list[str]) -> bytes:
    out = []
    for line in csv_lines:
        question, answer = line.split(",", 1)
        out.append(json.dumps({"messages": [{"role": "user", "content": question},
                                            {"role": "assistant", "content": answer}]}))
    return ("\n".join(out) + "\n").encode()


def training_started(ft: FineTuning, job_id: str) -> bool:
    return any(e.type == "metrics" for e in ft.jobs.events(job_id))


def test_the_seeds_train_starts_a_job_on_the_csv_and_saves_its_id(home: Path) -> None:
    """OpenAIModel.train as the seed's callers use it. That such a job learns the facts and keeps general knowledge
    is test_cli.py's test_demo_runs_offline (the demo trains on the same facts and checks the job's every trace)."""
    model = OpenAIModel()
    job_id = model.train(data_file=str(FACTS), suffix="facts", seed=1)
    ft = model.fine_tuning
    job = ft.get(job_id)
    assert job.status in ("validating_files", "queued", "running") and job.suffix == "facts" and job.seed == 1
    FineTuningJob.model_validate(job.to_openai())
    assert ft.files.get(job.training_file).bytes > 0
    saved = json.loads((home / "job_ids.json").read_text())
    assert [e["id"] for e in saved] == [job_id] and "demo_facts.csv" in saved[0]["description"]
    assert ft.cancel(job_id).status == "cancelled"


@pytest.mark.slow
def test_killed_worker_requeues_the_job_then_fails_it_without_a_model(home: Path, models_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELOOP_JOB_MAX_ATTEMPTS", "2")
    ft = FineTuning()
    job = start(ft, n_epochs=30)
    wait_until(lambda: training_started(ft, job.id))
    first = ft.jobs.get_job(job.id)
    assert first.attempts == 1 and first.worker.endswith(f":{first.pid}")
    os.kill(first.pid, signal.SIGKILL)
    # Noticed at once on this machine (its process is gone): queued again, and a new worker takes it.
    again = wait_until(lambda: (j := ft.get(job.id)).attempts == 2 and j.status == "running" and j, timeout=HANG)
    assert again.pid != first.pid
    assert any("queued again (1 of 2 attempts used)" in e.message for e in ft.events(job.id))
    wait_until(lambda: sum(e.type == "metrics" for e in ft.jobs.events(job.id)) > len(
        [e for e in ft.jobs.events(job.id) if e.type == "metrics" and e.created_at < again.started_at]))
    os.kill(again.pid, signal.SIGKILL)
    failed = wait_until(lambda: (j := ft.get(job.id)).status != "running" and j, timeout=HANG)
    assert failed.status == "failed", failed
    assert failed.error["code"] == "worker_lost" and f":{again.pid} ended" in failed.error["message"]
    assert "started 2 times" in failed.error["message"]
    assert failed.fine_tuned_model is None and ft.registered_models() == {}
    assert not (home / "models" / "ft").exists() or list((home / "models" / "ft").iterdir()) == []
    FineTuningJob.model_validate(failed.to_openai())
    # The killed workers' training processes ended with them.
    wait_until(lambda: not any(f"tuneloop.training.run {job.id}" in _cmdline(p) for p in os.listdir("/proc")
                               if p.isdigit()), timeout=HANG)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_cancel_stops_a_running_job_within_seconds(home: Path, models_dir: Path) -> None:
    ft = FineTuning()
    job = start(ft, n_epochs=30)
    wait_until(lambda: training_started(ft, job.id))
    started = time.monotonic()
    cancelled = ft.cancel(job.id)
    assert cancelled.status == "cancelled" and time.monotonic() - started < 30  # cancel() kills after 20 s
    assert cancelled.fine_tuned_model is None and ft.registered_models() == {}
    assert any(e.message == "The job was cancelled" for e in ft.events(job.id))
    with pytest.raises(JobStateError, match="already cancelled"):
        ft.cancel(job.id)
    assert_one_line_error(run_cli("jobs", "cancel", job.id), "already cancelled")


def test_cancel_while_queued(home: Path, models_dir: Path) -> None:
    ft = FineTuning()
    job = start(ft, rows=12, n_epochs=1)
    worker = ft.get(job.id).pid
    cancelled = ft.cancel(job.id)  # at once: the worker is still starting
    assert cancelled.status == "cancelled"
    # Once the worker is gone (it finds nothing to do), the job is still cancelled: nobody ran it.
    wait_until(lambda: not _cmdline(str(worker)), timeout=120)
    assert ft.get(job.id).status == "cancelled"


def test_bad_data_is_refused_before_any_job(home: Path, tmp_path: Path) -> None:
    model = OpenAIModel()
    with pytest.raises(DatasetInvalidError) as caught:
        model.train(data="prompt,completion\nA?,a\nB?,b\n")
    assert dict(caught.value.report.errors) == {"too_few_examples": 1}
    assert "too_few_examples" in str(caught.value)
    assert model.fine_tuning.list() == []

    (tmp_path / "few.csv").write_text("question,answer\nA?,a\n")
    result = run_cli("train", "few.csv")
    assert result.code == 1 and "too_few_examples" in result.stdout and "Traceback" not in result.stderr
    assert run_cli("jobs", "list", "--json").stdout.strip() == "[]"
    with pytest.raises(InputError, match="nothing to train on"):
        model.train()


@pytest.mark.slow
def test_cli_train_dpo_and_job_commands(home: Path, tmp_path: Path) -> None:
    rows = ["prompt,completion,positive"]
    for i in range(10):
        rows += [f"Colour of gadget {i}?,Gadget {i} is teal.,1", f"Colour of gadget {i}?,I do not know.,0"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    result = run_cli("train", "pairs.csv", "--epochs", "1", "--suffix", "pairs", "--wait", "--json", timeout=HANG)
    assert result.code == 0, result.stderr
    job = FineTuningJob.model_validate(json.loads(result.stdout))
    assert job.status == "succeeded" and job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1
    assert job.fine_tuned_model == f"ft:smollm2-135m-instruct:pairs:{job.id}"

    listed = json.loads(run_cli("jobs", "list", "--json").stdout)
    assert [FineTuningJob.model_validate(j).id for j in listed] == [job.id]
    shown = FineTuningJob.model_validate(json.loads(run_cli("jobs", "show", job.id, "--json").stdout))
    assert shown.trained_tokens == job.trained_tokens
    events = json.loads(run_cli("jobs", "events", job.id, "--json").stdout)
    assert events[0]["message"].startswith("Validating training file")
    assert events[-1]["message"].startswith("The job has successfully completed")
    assert "succeeded" in run_cli("jobs", "show", job.id).stdout
    assert_one_line_error(run_cli("jobs", "show", "ftjob-nope"), "no fine-tuning job 'ftjob-nope'")


def test_save_job_id_appends_atomically(home: Path) -> None:
    model = OpenAIModel()
    model.save_job_id("ftjob-old", "from the old platform")
    model.save_job_id("ftjob-older", "second", filename="ids.json")
    model.save_job_id("ftjob-new", "third")
    assert [e["id"] for e in json.loads((home / "job_ids.json").read_text())] == ["ftjob-old", "ftjob-new"]
    assert [e["description"] for e in json.loads((home / "ids.json").read_text())] == ["second"]
    (home / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="broken.json"):
        model.save_job_id("x", "y", filename="broken.json")
    assert (home / "broken.json").read_text() == "{not json"


def test_hyperparameters_auto_and_limits() -> None:
    assert resolve("supervised", 60, {}) == {"n_epochs": 5, "batch_size": 8, "learning_rate_multiplier": 1.0}
    assert resolve("supervised", 12, {}) == {"n_epochs": 10, "batch_size": 2, "learning_rate_multiplier": 1.0}
    assert learning_rate("supervised", {"batch_size": 8}) == pytest.approx(2e-3)
    assert learning_rate("supervised", {"batch_size": 2, "learning_rate_multiplier": 2}) == pytest.approx(2e-3)
    assert resolve("dpo", 10, {"n_epochs": "auto", "beta": 0.2})["beta"] == 0.2
    assert resolve("supervised", 1000, {"batch_size": 8}) == {"n_epochs": 3, "batch_size": 8,
                                                              "learning_rate_multiplier": 1.0}
    for bad, message in (({"n_epochs": 0}, "between"), ({"n_epochs": 2.5}, "number"), ({"lr": 1}, "unknown"),
                         ({"beta": 0.1}, "DPO only")):
        with pytest.raises(InputError, match=message):
            resolve("supervised", 60, bad)


def test_remote_backend_through_the_sdk(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-remote-secret-123456"
    with StandIn(api_key=key) as server:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        model = OpenAIModel()
        job_id = model.train(data_file=str(FACTS), suffix="remote", hyperparameters={"n_epochs": 2})
        body = server.requests[-1]
        assert body["model"] == "gpt-4o-mini" and body["suffix"] == "remote"
        assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
        uploaded = [json.loads(line) for line in server.uploads[body["training_file"]].decode().splitlines()]
        assert len(uploaded) == 60 and uploaded[0]["messages"][-1]["role"] == "assistant"

        ft = model.fine_tuning
        job = ft.wait(job_id, poll=0.01)
        assert job.backend == "openai" and job.status == "succeeded"
        assert job.fine_tuned_model == "ft:gpt-4o-mini:standin:remote:1" and job.trained_tokens == 1234
        assert [j.id for j in ft.list()] == [job_id]
        assert [e.message for e in ft.events(job_id)][-1] == "Job is succeeded"
        with pytest.raises(JobStateError, match="already succeeded"):
            ft.cancel(job_id)

        file = ft.add_file(FACTS.read_bytes(), filename="facts.csv")
        with pytest.raises(DatasetInvalidError):  # a CSV is not a JSONL training file: refused before upload
            ft.create(file.id, backend="openai")
        uploads = len(server.uploads)
        second = model.train(data_file=str(FACTS), backend="openai")
        assert len(server.uploads) == uploads + 1
        assert ft.cancel(second).status == "cancelled"
        assert server.jobs[second]["status"] == "cancelled"

        shown = run_cli("jobs", "show", job_id, "--json")
        assert FineTuningJob.model_validate(json.loads(shown.stdout)).fine_tuned_model == job.fine_tuned_model
    # The key reaches the vendor, never the store.
    assert key.encode() not in (home / "tuneloop.db").read_bytes()


def test_dynamic_train_selects_from_the_log(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = OpenAIModel()
    store = model.runtime.db.dialogue
    thread = store.create_thread(model="smollm2-135m-instruct").id
    log_exchange(store, thread, "What is the Zorblax?", "A teal gadget.", model="smollm2-135m-instruct")
    log_exchange(store, thread, "Great, thanks!", "Welcome.", model="smollm2-135m-instruct")
    with pytest.raises(DatasetInvalidError) as caught:  # one good reply is not enough to train on
        model.dynamic_train(backend="local")
    assert dict(caught.value.report.errors) == {"too_few_examples": 1}
    for i in range(11):
        log_exchange(store, thread, f"And gadget {i}?", f"Gadget {i} is blue.", model="smollm2-135m-instruct")
        log_exchange(store, thread, "Wonderful, that is great!", "Glad to help.", model="smollm2-135m-instruct")
    with StandIn(api_key="sk-x") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        job_id = OpenAIModel().dynamic_train()
        uploaded = server.uploads[server.requests[-1]["training_file"]].decode().splitlines()
    answers = [json.loads(line)["messages"][-1]["content"] for line in uploaded]
    assert answers == ["A teal gadget."] + [f"Gadget {i} is blue." for i in range(11)]
    assert json.loads((home / "job_ids.json").read_text())[-1]["id"] == job_id


@pytest.mark.slow
def test_validation_file_scores_each_epoch_and_registers_the_best(home: Path, models_dir: Path) -> None:
    from tuneloop.training.local import EpochResult, best_epoch

    ft = FineTuning()
    train = ft.add_file(gadget_facts(12), filename="train.jsonl")
    chat = [{"role": "user", "content": "What colour is gadget 3?"},
            {"role": "assistant", "content": "Gadget 3 is teal."}]
    questions = [{"question": f"Which colour does gadget {i} have?", "expected": "teal"} for i in range(4, 8)]
    lines = [{"messages": chat}, {"messages": chat, "expected": "teal"}, *questions]
    valid = ft.add_file(("\n".join(json.dumps(x) for x in lines) + "\n").encode(), filename="valid.jsonl")
    job = ft.create(train.id, validation_file=valid.id, hyperparameters={"n_epochs": 3}, seed=3)
    assert job.validation_file == valid.id and job.to_openai()["validation_file"] == valid.id
    job = ft.wait(job.id, timeout=HANG)
    assert job.status == "succeeded", (job.error, ft.log_path(job.id).read_text()[-3000:])

    epochs = [e.data for e in ft.events(job.id) if e.type == "metrics" and "valid_score" in (e.data or {})]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    for data in epochs:
        assert data["valid_loss"] > 0 and 0 <= data["valid_score"] <= 1
        assert data["valid_score"] * 5 == round(data["valid_score"] * 5)  # five questions
    checkpoints = {c.step: c for c in ft.jobs.checkpoints(job.id)}
    assert sorted(checkpoints) == [e["step"] for e in epochs]  # every epoch kept when a validation file decides
    best = best_epoch([EpochResult(e["epoch"], e["step"], e["train_loss"], e["valid_loss"], e["valid_score"])
                       for e in epochs])
    assert best is not None
    chosen = [e for e in ft.events(job.id) if e.message.startswith("Registered the best epoch")]
    assert len(chosen) == 1 and chosen[0].data["best_epoch"]["step"] == best.step
    registered = ft.registered_models()
    adapter = registered[job.fine_tuned_model] / "adapter_model.safetensors"
    best_adapter = registered[checkpoints[best.step].fine_tuned_model_checkpoint] / "adapter_model.safetensors"
    assert adapter.read_bytes() == best_adapter.read_bytes()
    header = (ft.results_dir(job.id) / "step_metrics.csv").read_text().splitlines()[0]
    assert header == "step,train_loss,valid_loss,valid_score"
    for event in ft.events(job.id):
        FineTuningJobEvent.model_validate(event.to_openai())


def test_a_validation_file_that_cannot_serve_is_refused(home: Path, models_dir: Path) -> None:
    ft = FineTuning()
    train = ft.add_file(gadget_facts(12), filename="train.jsonl")
    useless = ft.add_file(b'{"messages": [{"role": "user", "content": "Hi"}]}\n', filename="useless.jsonl")
    with pytest.raises(InputError, match="useless.jsonl.*no chat examples with an assistant answer"):
        ft.create(train.id, validation_file=useless.id)
    broken = ft.add_file(b'{"question": "Colour?", "expected": "teal", "grader": "fuzzy"}\n', filename="b.jsonl")
    with pytest.raises(InputError, match="b.jsonl.*line 1: grader 'fuzzy' is unknown"):
        ft.create(train.id, validation_file=broken.id)
    assert ft.list() == []
