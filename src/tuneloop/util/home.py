"""Where tuneloop keeps its things under $TUNELOOP_HOME (uploaded files, jobs, fine-tuned models) and the lock that
lets one local training job run at a time while the engines yield their threads to it."""

from __future__ import annotations

from pathlib import Path

from tuneloop.config import Settings


def files_dir(settings: Settings) -> Path:
    return settings.home / "files"


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.home / "jobs" / job_id


def worker_log(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "worker.log"


def lock_path(settings: Settings) -> Path:
    return settings.home / "jobs" / ".local-training.lock"


def model_dir(settings: Settings, job_id: str) -> Path:
    """The fine-tuned model's PEFT adapter folder."""
    return settings.home / "models" / "ft" / job_id


def temp_model_dir(settings: Settings, job_id: str) -> Path:
    return settings.home / "models" / "ft" / f".{job_id}.partial"
