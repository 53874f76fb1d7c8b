"""`tuneloop worker` processes and `tuneloop serve` sharing one store: jobs claimed once, lost workers noticed,
jobs re-queued and finished by another worker, clean stops; each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import HANG, MODELS_DIR, gadget_facts, run_cli, wait_until
from tiny_models import build_tiny_model

from tuneloop.config import load_settings
from tuneloop.store import DialogueStore
from tuneloop.store.jobs import JobStore
from tuneloop.store.schema import utcnow
from tuneloop.tasks import Tasks

pytestmark = pytest.mark.slow  # every test runs real jobs in `tuneloop worker` processes

MODEL = "tiny-llama"


@pytest.fixture
def team(any_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment every process of the team shares: one store (SQLite, then PostgreSQL) and home; workers
    take the jobs."""
    home = any_home
    monkeypatch.setenv("TUNELOOP_SPAWN_WORKER", "0")
    monkeypatch.setenv("TUNELOOP_WORKER_HEARTBEAT", "1")
    monkeypatch.setenv("TUNELOOP_WORKER_TIMEOUT", "30")
    build_tiny_model("llama", MODELS_DIR / "smollm2-135m-instruct", home / "tiny-llama")
    assert run_cli("models", "add", MODEL, str(home / "tiny-llama")).code == 0
    return dict(os.environ)


def start(*args: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tuneloop", *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})


def events(jobs: JobStore, job_id: str) -> list[Any]:
    return jobs.events(job_id)


def started_by(jobs: JobStore, job_id: str) -> list[str]:
    found = [re.search(r"started by worker (\S+) ", e.message) for e in events(jobs, job_id)]
    return [m.group(1) for m in found if m]


def test_two_workers_and_a_server_run_six_jobs_once_and_survive_a_killed_worker(team: dict[str, str], home: Path,
                                                                                tmp_path: Path) -> None:
    jobs = JobStore(DialogueStore(load_settings().resolved_database_url))
    server = start("serve", "--port", "0", log=tmp_path / "serve.log")
    workers = [start("worker", "--poll", "0.5", log=tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        url = wait_until(lambda: re.search(r"listening on (http://\S+/v1)", (tmp_path / "serve.log").read_text()),
                         timeout=HANG).group(1)
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        file = client.files.create(file=("facts.jsonl", gadget_facts()), purpose="fine-tune")
        created = [client.fine_tuning.jobs.create(model=MODEL, training_file=file.id, suffix=f"n{i}", seed=i,
                                                  method={"type": "supervised", "supervised": {"hyperparameters": {
                                                      "n_epochs": 4, "batch_size": 2}}})
                   for i in range(6)]
        assert {job.status for job in created} == {"queued"}  # nobody here trains: the workers take them

        # Kill one worker in the middle of a job.
        names = {f":{w.pid}": w for w in workers}

        def victim_job() -> Any:
            for job in jobs.running_jobs():
                if any(e.type == "metrics" for e in events(jobs, job.id)):
                    return job
            return None

        victim = wait_until(victim_job, timeout=HANG)
        killed = next(w for suffix, w in names.items() if victim.worker.endswith(suffix))
        killed.kill()
        killed_at = utcnow()
        survivor = next(w for w in workers if w is not killed)

        def all_finished() -> bool:
            return all(client.fine_tuning.jobs.retrieve(j.id).status in ("succeeded", "failed", "cancelled")
                       for j in created)

        wait_until(all_finished, timeout=HANG, every=1.0)
        finished = [client.fine_tuning.jobs.retrieve(j.id) for j in created]
        assert [j.status for j in finished] == ["succeeded"] * 6, [(j.id, j.error) for j in finished]
        for job in finished:
            record = jobs.get_job(job.id)
            successes = [e for e in events(jobs, job.id) if e.message.startswith("New fine-tuned model created")]
            assert len(successes) == 1
            starts = started_by(jobs, job.id)
            if job.id == victim.id:
                assert len(starts) == 2 and starts[0] != starts[1] and starts[1].endswith(f":{survivor.pid}")
                requeued = [e for e in events(jobs, job.id) if "queued again (1 of 3 attempts used)" in e.message]
                assert len(requeued) == 1 and "ended without finishing the job" in requeued[0].message
                assert requeued[0].created_at - killed_at < timedelta(seconds=30)  # within the heartbeat window
                assert record.attempts == 2
            else:
                assert len(starts) == 1 and record.attempts == 1  # each job ran exactly once
        assert {m.id for m in client.models.list()} >= {j.fine_tuned_model for j in finished}

        # A worker stops cleanly on SIGTERM.
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=HANG) == 0
        assert "stopped" in (tmp_path / f"worker{workers.index(survivor)}.log").read_text()
    finally:
        for process in [server, *workers]:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in [server, *workers]:
            try:
                process.wait(timeout=HANG)
            except subprocess.TimeoutExpired:
                process.kill()


def test_sigterm_puts_the_job_back_uncharged_and_another_worker_finishes_it(team: dict[str, str], home: Path,
                                                                            tmp_path: Path) -> None:
    from tuneloop.training import FineTuning

    ft = FineTuning()
    file = ft.add_file(gadget_facts(), filename="facts.jsonl")
    job = ft.create(file.id, model=MODEL, hyperparameters={"n_epochs": 10, "batch_size": 2})
    assert job.status == "queued" and job.pid is None
    worker = start("worker", "--models", MODEL, log=tmp_path / "w1.log")
    wait_until(lambda: any(e.type == "metrics" for e in ft.jobs.events(job.id)), timeout=HANG)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=HANG) == 0
    back = ft.get(job.id)
    assert back.status == "queued" and back.attempts == 0 and back.worker is None
    assert any("was stopped; the job is queued again (0 of 3 attempts used)" in e.message
               for e in ft.events(job.id))
    assert not list((home / "models" / "ft").glob(f".{job.id}*"))  # its partial adapter is gone

    other = subprocess.run([sys.executable, "-m", "tuneloop", "worker", "--max-jobs", "1"], capture_output=True,
                           text=True, timeout=HANG)
    assert other.returncode == 0, other.stderr
    done = ft.get(job.id)
    assert done.status == "succeeded" and done.attempts == 1, done.error


def test_worker_filters_and_a_silent_worker_elsewhere(team: dict[str, str], home: Path) -> None:
    """--models leaves other models' jobs alone; a job whose worker on another machine stopped sending heartbeats
    is queued again once worker_timeout has passed."""
    from tuneloop.training import FineTuning

    ft = FineTuning()
    file = ft.add_file(gadget_facts(), filename="facts.jsonl")
    job = ft.create(file.id, model=MODEL, hyperparameters={"n_epochs": 1})
    tasks = ft.runtime.db.tasks
    claimed = tasks.claim("elsewhere:4242", pid=4242, kinds=["fine_tune"], models=["smollm2-135m-instruct"])
    assert claimed is None  # another model's worker does not take it
    claimed = tasks.claim("elsewhere:4242", pid=4242, kinds=["fine_tune"], models=[MODEL])
    assert claimed is not None and claimed.id == job.id and claimed.status == "running"
    assert tasks.claim("another:1", pid=1, kinds=["fine_tune"]) is None  # never twice
    settings = load_settings()
    reap = Tasks(ft.runtime.db, settings).recover
    assert reap(spawn=False)[0].status == "running"  # its heartbeat is fresh
    ft.jobs.update_job(job.id, heartbeat_at=utcnow() - timedelta(seconds=settings.worker_timeout + 1))
    requeued = reap(spawn=False)[0]
    assert requeued.status == "queued" and requeued.worker is None and requeued.attempts == 1
    assert any("worker elsewhere:4242 sent no heartbeat for 30 s" in e.message for e in ft.events(job.id))
    # The GPU-only job is not for a CPU-only worker.
    gpu_job = ft.jobs.create_job(backend="local", model=MODEL, method="supervised", status="queued",
                                 training_file=file.id, hyperparameters={"n_epochs": 1}, seed=1, device="cuda")
    taken = tasks.claim("cpu-box:1", pid=1, kinds=["fine_tune"], devices=("cpu",))
    assert taken is not None and taken.id == job.id
    assert tasks.claim("cpu-box:2", pid=2, kinds=["fine_tune"], devices=("cpu",)) is None
    assert tasks.claim("gpu-box:1", pid=1, kinds=["fine_tune"], devices=("cpu", "cuda"), quantize=True).id == gpu_job.id


def test_a_worker_trains_data_parallel_under_accelerate_launch(team: dict[str, str], home: Path) -> None:
    """What a worker does with several GPUs (one process each), here with two CPU processes (gloo)."""
    from tuneloop.training import FineTuning

    ft = FineTuning()
    file = ft.add_file(gadget_facts(12), filename="facts.jsonl")
    job = ft.create(file.id, model=MODEL, hyperparameters={"n_epochs": 2, "batch_size": 2})
    done = subprocess.run([sys.executable, "-m", "tuneloop", "worker", "--processes", "2", "--max-jobs", "1"],
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr
    job = ft.get(job.id)
    assert job.status == "succeeded", job.error
    assert any(e.message.endswith(", 2 processes (DDP)") for e in ft.events(job.id))
    steps = [e.data["step"] for e in ft.events(job.id) if e.type == "metrics"]
    # (12 examples + 8 replayed base answers) × 2 epochs over (2 a batch × 2 processes): half the steps one
    # process takes, told once (rank 0).
    assert steps == list(range(1, 11))
