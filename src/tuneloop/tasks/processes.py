"""The processes that run tasks, as seen from this machine: their names, whether they live, the environment they get.

A worker is named ``host:pid``. One on this machine is known dead as soon as its process is gone; one elsewhere once
its heartbeat is older than ``worker_timeout``.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tuneloop.config import Settings

# One-task workers this process started (polled, so they are reaped, not left as zombies).
spawned: dict[int, subprocess.Popen] = {}


def worker_name(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def on_this_machine(worker: str | None) -> bool:
    return bool(worker) and worker.rsplit(":", 1)[0] == socket.gethostname()


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    child = spawned.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def reap() -> None:
    """Forget the one-task workers that have ended (polling them reaps them: no zombies are left)."""
    for pid, child in list(spawned.items()):
        if child.poll() is not None:
            spawned.pop(pid, None)


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a one-task worker: this store and home, and the settings that choose and reach a model
    (a judge run may ask a remote judge), as this process has them even when they came from its command line; never
    the server's own key."""
    env = _base_environment(settings, drop=("TUNELOOP_SERVER_API_KEY",))
    if settings.openai_api_key is not None:
        env["OPENAI_API_KEY"] = settings.openai_api_key.get_secret_value()
    for name, value in (("OPENAI_BASE_URL", settings.openai_base_url), ("TUNELOOP_PROVIDER", settings.provider),
                        ("TUNELOOP_MODEL", settings.model)):
        if value:
            env[name] = value
    return env


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of a worker's children (a training process): this store and home, and no API keys."""
    return _base_environment(settings, drop=("OPENAI_API_KEY", "TUNELOOP_SERVER_API_KEY"))


def _base_environment(settings: Settings, *, drop: tuple[str, ...]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(TUNELOOP_HOME=str(settings.home), TUNELOOP_DATABASE_URL=settings.resolved_database_url,
               TUNELOOP_MODELS_DIR=str(settings.resolved_models_dir), PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    return env
