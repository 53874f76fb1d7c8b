"""Consoles and small rendering helpers shared by the commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tuneloop.errors import InputError

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)

SENTIMENT_STYLE = {"positive": "green", "negative": "red", "neutral": "dim", "unknown": "yellow"}


def key_values(items: list[str] | None, option: str = "--metadata") -> dict[str, str]:
    """Repeated KEY=VALUE options as a dict; InputError naming the option for anything else."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{option} {item!r}: give KEY=VALUE, for example {option} project=support")
        pairs[key] = value
    return pairs


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def sentiment_text(label: str | None, score: float | None = None) -> str:
    if not label:
        return ""
    style = SENTIMENT_STYLE.get(label, "")
    shown = f"{label} {score:+.2f}" if score is not None else label
    return f"[{style}]{escape(shown)}[/]"


def when(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def conversion_progress() -> Callable[[int, int, str], None]:
    """A progress callback that draws a bar on stderr while the bundled model is converted."""
    state: dict[str, Any] = {}

    def report(done: int, total: int, what: str) -> None:
        progress = state.get("progress")
        if progress is None:
            error_console.print("First use of the local model: converting it once (later runs load it in seconds).")
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=error_console,
                transient=False,
            )
            progress.start()
            state["progress"] = progress
            state["task"] = progress.add_task(what, total=total)
        progress.update(state["task"], completed=done, description=what)
        if done >= total:
            progress.stop()
            state.clear()

    return report
