"""Keys never reach a file, and what tuneloop writes is its owner's alone: after a full run (chat through a vendor
that fails and refuses keys, a remote job, a server with a key, a local job by a worker), every file under the
test's folders and every row of the store is searched for the keys; the store, uploads and adapters are 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from conftest import HANG, MODELS_DIR, gadget_facts, run_cli, wait_until
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from standin import StandIn
from test_durability import start_server, stop_server
from tiny_models import build_tiny_model

from tuneloop.config import load_settings
from tuneloop.store import Store
from tuneloop.training import FineTuning

VENDOR_KEY = "sk-vendor-SECRETabcdef0123456789"
WRONG_KEY = "sk-wrong-SECRETzyxwvu9876543210"
SERVER_KEY = "sk-server-SECRETqwerty55555"
KEYS = [VENDOR_KEY, WRONG_KEY, SERVER_KEY]


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


@pytest.mark.slow
def test_no_key_in_any_file_or_row_and_files_are_private(any_home: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELOOP_RETRY_INITIAL_DELAY", "0.01")
    with StandIn(api_key=VENDOR_KEY) as vendor:
        monkeypatch.setenv("OPENAI_API_KEY", VENDOR_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", vendor.base_url)
        vendor.faults.extend(["500", "cut"])
        assert run_cli("ask", "--json", "Hello there").code == 0
        assert run_cli("ask", "--model", "no-such-model", "Hello").code != 0
        stored = FineTuning().add_file(gadget_facts())
        remote = FineTuning().create(stored.id, model="gpt-4o-mini", backend="openai")
        assert run_cli("jobs", "show", remote.id).code == 0
        wrong = run_cli("ask", "Hello", env={"OPENAI_API_KEY": WRONG_KEY})
        assert wrong.code != 0 and "OPENAI_API_KEY" in wrong.stderr
        assert not any(key in wrong.stderr + wrong.stdout for key in KEYS)

    # The server, with a key, and a local job its worker runs (job folder, worker log, adapter).
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("TUNELOOP_SERVER_API_KEY", SERVER_KEY)
    build_tiny_model("llama", MODELS_DIR / "smollm2-135m-instruct", any_home / "tiny-llama")
    assert run_cli("models", "add", "tiny-llama", str(any_home / "tiny-llama")).code == 0
    server, url = start_server(tmp_path / "serve.log")
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key=WRONG_KEY, max_retries=0).models.list()
        client = openai.OpenAI(base_url=url, api_key=SERVER_KEY, max_retries=0, timeout=120)
        upload = client.files.create(file=("facts.jsonl", gadget_facts()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=upload.id,
                                             hyperparameters={"n_epochs": 1})
        done = wait_until(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in
                          ("succeeded", "failed") and j, timeout=HANG)
        assert done.status == "succeeded", done.error
        client.chat.completions.create(model=done.fine_tuned_model, max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}])
    finally:
        stop_server(server)

    settings = load_settings()
    # No key in any file: the home (store, uploads, jobs, worker logs, adapters), the server's log, all of it.
    searched = 0
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            searched += 1
            for key in KEYS:
                assert key.encode() not in data, f"{key[:9]}… found in {path}"
    assert searched > 20
    # Nor in any row of the store (PostgreSQL keeps its rows outside this folder), read through the store's own
    # handle: its SQLite connections know the function the full-text index reads messages through.
    engine = Store(settings.resolved_database_url).db.engine
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for key in KEYS:
                    assert key not in str(tuple(row)), f"{key[:9]}… found in table {table}"
    engine.dispose()

    # Owner-only: the database, uploaded files, adapters and worker logs.
    if settings.resolved_database_url.startswith("sqlite"):
        database = Path(make_url(settings.resolved_database_url).database)
        assert private(database) and all(private(p) for p in database.parent.glob(f"{database.name}-*"))
    uploads = list((settings.home / "files").iterdir())
    assert uploads and all(private(p) for p in uploads)
    adapter = Path(FineTuning().get(job.id).model_path)
    written = [p for p in adapter.rglob("*") if p.is_file()]
    assert written and all(private(p) for p in written), [oct(p.stat().st_mode) for p in written]
    logs = [p for p in (settings.home / "jobs").rglob("*.log")]
    assert logs and all(private(p) for p in logs)


def test_a_new_home_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "brand-new" / "home"
    done = subprocess.run([sys.executable, "-m", "tuneloop", "logs", "path"], capture_output=True, text=True,
                          env={**os.environ, "TUNELOOP_HOME": str(home)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert private(home) and private(home / "tuneloop.db")
