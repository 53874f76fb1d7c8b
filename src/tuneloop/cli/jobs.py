"""`tuneloop jobs`: list, show, follow and cancel fine-tuning jobs (the job system is ``tuneloop.training``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from tuneloop.cli._output import console, conversion_progress, error_console, print_json, when
from tuneloop.config import load_settings
from tuneloop.runtime import Runtime
from tuneloop.training import FineTuning, Job

jobs_app = typer.Typer(help="Fine-tuning jobs: list, show, events, wait, cancel.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (OpenAI's fine_tuning.job shape).")]
STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "dim",
                "validating_files": "dim"}


def fine_tuning() -> FineTuning:
    return FineTuning(Runtime(load_settings(), progress=conversion_progress()))


def follow(ft: FineTuning, job_id: str) -> Job:
    """Wait for a job with a progress bar (step, loss, time left); Ctrl-C stops waiting, not the job."""
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=error_console, transient=False) as progress:
        task = progress.add_task("queued", total=None, detail="")

        def update(job: Job) -> None:
            state = job.progress or {}
            detail = ""
            if state.get("step"):
                loss = state.get("train_loss")
                eta = state.get("eta_seconds")
                detail = f"step {state['step']}/{state.get('total_steps')}"
                detail += f" · loss {loss:.3f}" if isinstance(loss, int | float) else ""
                detail += f" · about {_duration(eta)} left" if eta else ""
                progress.update(task, total=state.get("total_steps"), completed=state["step"])
            progress.update(task, description=job.status, detail=detail)

        try:
            return ft.wait(job_id, on_update=update)
        except KeyboardInterrupt:
            progress.stop()
            error_console.print(f"[yellow]stopped waiting; the job goes on[/]: tuneloop jobs wait {job_id}")
            raise typer.Exit(130) from None


def finish(job: Job, json_: bool) -> None:
    if json_:
        print_json(job.to_openai())
    elif job.status == "succeeded":
        console.print(f"[green]succeeded[/]: {job.trained_tokens or 0:,} trained tokens. New model:")
        console.print(f"  [bold]{escape(job.fine_tuned_model or '')}[/]")
        console.print(f"Try it: tuneloop ask -m {escape(job.fine_tuned_model or '')} \"...\"")
    else:
        message = (job.error or {}).get("message", "")
        console.print(f"[{STATUS_STYLE.get(job.status, '')}]{job.status}[/] {escape(message)}")
    if job.status != "succeeded":
        raise typer.Exit(1)


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@jobs_app.command("list")
def list_jobs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many jobs, newest first.")] = 20,
    json_: JsonOption = False,
) -> None:
    """List fine-tuning jobs, newest first."""
    jobs = fine_tuning().list(limit=limit)
    if json_:
        print_json([j.to_openai() for j in jobs])
        return
    table = Table(Column("job", no_wrap=True), "status", "method", "created", Column("model", overflow="fold"))
    for j in jobs:
        table.add_row(j.id, f"[{STATUS_STYLE.get(j.status, '')}]{j.status}[/]", j.method, when(j.created_at),
                      escape(j.fine_tuned_model or j.model))
    console.print(table)
    if not jobs:
        console.print("no jobs yet; start one with `tuneloop train FILE`")


@jobs_app.command("show")
def show(job_id: Annotated[str, typer.Argument(help="Job id (ftjob-…).")], json_: JsonOption = False) -> None:
    """Show a job: status, hyperparameters, model, error, result files."""
    ft = fine_tuning()
    job = ft.get(job_id)
    if json_:
        print_json(job.to_openai())
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("job", job.id)
    table.add_row("status", f"[{STATUS_STYLE.get(job.status, '')}]{job.status}[/]")
    table.add_row("base model", escape(job.model))
    table.add_row("method", job.method)
    table.add_row("hyperparameters", escape(", ".join(f"{k}={v}" for k, v in job.hyperparameters.items())))
    table.add_row("training file", job.training_file)
    if job.backend == "local":
        table.add_row("device", (job.device or "auto") + (f", {job.quantize} QLoRA" if job.quantize else ""))
        table.add_row("worker", escape(f"{job.worker or '-'} (attempts {job.attempts})"))
    table.add_row("created", when(job.created_at))
    if job.finished_at:
        table.add_row("finished", when(job.finished_at))
    if job.fine_tuned_model:
        table.add_row("fine-tuned model", escape(job.fine_tuned_model))
    if job.trained_tokens:
        table.add_row("trained tokens", f"{job.trained_tokens:,}")
    if job.error:
        table.add_row("error", f"[red]{escape(str(job.error.get('message')))}[/]")
    for checkpoint in ft.jobs.checkpoints(job.id) if job.status == "succeeded" else []:
        table.add_row("checkpoint", escape(f"{checkpoint.fine_tuned_model_checkpoint} "
                                           f"(loss {checkpoint.metrics.get('train_loss') or 0:.4f})"))
    if job.result_files:
        table.add_row("results", escape(str(ft.results_dir(job.id))))
    table.add_row("log", escape(str(ft.log_path(job.id))))
    console.print(table)


@jobs_app.command("events")
def events(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Only the newest N events.")] = None,
    json_: JsonOption = False,
) -> None:
    """A job's events, oldest first: messages and per-step metrics (loss, learning rate)."""
    found = fine_tuning().events(job_id, limit=limit, newest_first=limit is not None)
    if limit is not None:
        found.reverse()
    if json_:
        print_json([e.to_openai() for e in found])
        return
    for e in found:
        style = {"error": "red", "warn": "yellow"}.get(e.level, "dim" if e.type == "metrics" else "")
        text = f"[{style}]{escape(e.message)}[/]" if style else escape(e.message)
        console.print(f"[dim]{when(e.created_at)}[/] {text}")


@jobs_app.command("wait")
def wait_job(job_id: Annotated[str, typer.Argument(help="Job id.")], json_: JsonOption = False) -> None:
    """Wait for a job to finish, with a progress bar; exits 1 unless it succeeded."""
    finish(follow(fine_tuning(), job_id), json_)


@jobs_app.command("cancel")
def cancel(job_id: Annotated[str, typer.Argument(help="Job id.")], json_: JsonOption = False) -> None:
    """Cancel a queued or running job (it stops within seconds)."""
    job = fine_tuning().cancel(job_id)
    if json_:
        print_json(job.to_openai())
    else:
        console.print(f"{job.id}: {job.status}")
