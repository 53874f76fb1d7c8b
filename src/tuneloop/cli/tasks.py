"""`tuneloop tasks`: long work of every kind (fine-tuning jobs, judge runs, eval runs): list, show, events, wait,
cancel."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from tuneloop.cli._output import console, error_console, print_json, when
from tuneloop.config import load_settings
from tuneloop.runtime import Runtime
from tuneloop.tasks import Task, Tasks

tasks_app = typer.Typer(
    help="Long work of every kind (fine-tuning jobs, judge runs, eval runs): list, show, events, wait, cancel. "
         "Each runs in a worker: one started for it on this machine, or `tuneloop worker` processes.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TaskArgument = Annotated[str, typer.Argument(help="Task id (task-… or ftjob-…).", show_default=False)]
STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "dim",
         "validating_files": "dim"}


def tasks_of(runtime: Runtime | None = None) -> Tasks:
    runtime = runtime or Runtime(load_settings())
    return Tasks(runtime.db, runtime.settings)


def status_text(task: Task) -> str:
    return f"[{STYLE.get(task.status, '')}]{task.status}[/]"


def follow(tasks: Tasks, task_id: str, *, quiet: bool = False) -> Task:
    """Wait for a task with a progress bar; Ctrl-C stops waiting, not the task."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=error_console, transient=True,
                  disable=quiet or not error_console.is_terminal) as progress:
        bar = progress.add_task("queued", total=None)

        def update(task: Task) -> None:
            state = task.progress or {}
            progress.update(bar, description=f"{task.status}: {state.get('message', '')}".rstrip(": "),
                            completed=state.get("done") or 0, total=state.get("total"))

        try:
            return tasks.wait(task_id, on_update=update, poll=0.5)
        except KeyboardInterrupt:
            progress.stop()
            error_console.print(f"[yellow]stopped waiting; the task goes on[/]: tuneloop tasks wait {task_id}")
            raise typer.Exit(130) from None


def started(task: Task, *, wait: bool, json_: bool, done: Callable[[Task], None] | None = None) -> None:
    """What a command that starts a task prints: its id and how to follow it, or (``wait``) its end."""
    if not wait:
        if json_:
            print_json(task.to_dict())
        else:
            console.print(f"{escape(task.title or task.kind)}: {task.id} {status_text(task)}")
            console.print(f"Follow it: tuneloop tasks wait {task.id}  (cancel: tuneloop tasks cancel {task.id})")
        return
    ended = follow(tasks_of(), task.id, quiet=json_)
    if done is not None and ended.status == "succeeded":
        done(ended)
    elif json_:
        print_json(ended.to_dict())
    else:
        finished(ended)
    if ended.status != "succeeded":
        raise typer.Exit(1)


def finished(task: Task) -> None:
    message = (task.error or {}).get("message", "")
    console.print(f"{task.id} {status_text(task)} {escape(message)}".rstrip())


@tasks_app.command("list")
def list_tasks(
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind: fine_tune, judge_run, eval_run.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many tasks, newest first.")] = 20,
    json_: JsonOption = False,
) -> None:
    """List tasks, newest first, with their progress."""
    found = tasks_of().list(kinds=[kind] if kind else None, limit=limit)
    if json_:
        print_json([t.to_dict() for t in found])
        return
    table = Table(Column("task", no_wrap=True), "kind", "status", "progress", "created",
                  Column("what", overflow="fold"))
    for t in found:
        table.add_row(t.id, t.kind, status_text(t), escape(str((t.progress or {}).get("message") or "")),
                      when(t.created_at), escape(t.title or ""))
    console.print(table)
    if not found:
        console.print("no tasks yet: `tuneloop train`, `tuneloop judge run` and the dashboard's evals start them")


@tasks_app.command("show")
def show(task_id: TaskArgument, json_: JsonOption = False) -> None:
    """Show a task: kind, status, progress, worker, result or error."""
    task = tasks_of().get(task_id)
    if json_:
        print_json(task.to_dict())
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for name, value in (("task", task.id), ("kind", task.kind), ("what", task.title or ""),
                        ("progress", (task.progress or {}).get("message") or ""),
                        ("worker", f"{task.worker or '-'} (attempts {task.attempts})"),
                        ("created", when(task.created_at))):
        table.add_row(name, escape(str(value)))
    table.add_row("status", status_text(task))
    if task.finished_at:
        table.add_row("finished", when(task.finished_at))
    for name, value in (task.result or {}).items():
        shown = value if isinstance(value, str | int | float) else json.dumps(value, ensure_ascii=False)
        table.add_row(name, escape(str(shown)))
    if task.error:
        table.add_row("error", f"[red]{escape(str(task.error.get('message')))}[/]")
    console.print(table)


@tasks_app.command("events")
def events(
    task_id: TaskArgument,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Only the newest N events.")] = None,
    json_: JsonOption = False,
) -> None:
    """A task's events, oldest first: messages, progress, metrics."""
    tasks = tasks_of()
    tasks.get(task_id)
    found = tasks.events(task_id, limit=limit, newest_first=limit is not None)
    if limit is not None:
        found.reverse()
    if json_:
        print_json([e.to_dict() for e in found])
        return
    for e in found:
        style = {"error": "red", "warn": "yellow"}.get(e.level, "dim" if e.type in ("metrics", "progress") else "")
        text = f"[{style}]{escape(e.message)}[/]" if style else escape(e.message)
        console.print(f"[dim]{when(e.created_at)}[/] {text}")


@tasks_app.command("wait")
def wait(task_id: TaskArgument, json_: JsonOption = False) -> None:
    """Wait for a task to finish, with a progress bar; exits 1 unless it succeeded."""
    started(tasks_of().get(task_id), wait=True, json_=json_)


@tasks_app.command("cancel")
def cancel(task_id: TaskArgument, json_: JsonOption = False) -> None:
    """Cancel a queued or running task (it stops within seconds; what it finished stays)."""
    task = tasks_of().cancel(task_id)
    if json_:
        print_json(task.to_dict())
    else:
        console.print(f"{task.id}: {status_text(task)}")
