"""`tuneloop train` and `tuneloop jobs`: fine-tune on your data, follow and cancel jobs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from tuneloop.cli._output import console, conversion_progress, error_console, print_json, when
from tuneloop.cli.data import (
    MetadataOption,
    ReplyModelOption,
    SinceOption,
    UntilOption,
    collect,
    dialogue_filter,
    render_report,
)
from tuneloop.config import load_settings
from tuneloop.errors import DatasetInvalidError, InputError
from tuneloop.runtime import Runtime
from tuneloop.store.jobs import Job
from tuneloop.training import FineTuning

jobs_app = typer.Typer(help="Fine-tuning jobs: list, show, events, wait, cancel.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (OpenAI's fine_tuning.job shape).")]
STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "dim",
                "validating_files": "dim"}


class Method(StrEnum):
    auto = "auto"
    supervised = "supervised"
    dpo = "dpo"


class Backend(StrEnum):
    local = "local"
    openai = "openai"


def fine_tuning() -> FineTuning:
    return FineTuning(Runtime(load_settings(), progress=conversion_progress()))


def upload_validation(ft: FineTuning, path: Path) -> str:
    """Store a validation file; a CSV of questions and expected answers becomes the same JSONL lines."""
    # Lazy (cold start): only train --validation reads an eval file.
    import json

    from tuneloop.evals import read_eval_file

    if path.suffix.lower() == ".csv":
        items = read_eval_file(path)
        lines = [json.dumps({"messages": list(i.messages), "expected": list(i.expected), "grader": i.grader})
                 for i in items]
        return ft.add_file("\n".join(lines).encode() + b"\n", filename=path.stem + ".jsonl").id
    return ft.add_file(path).id


def train(
    source: Annotated[
        str | None,
        typer.Argument(help="CSV file, directory of CSV files, JSONL file, or '-' (CSV on stdin).",
                       show_default=False),
    ] = None,
    dialogues: Annotated[bool, typer.Option("--from-dialogues", help="Train on well-received replies in the log.")]
    = False,
    negative: Annotated[bool, typer.Option("--negative", help="Rows without a positive column are answers to avoid.")]
    = False,
    method: Annotated[Method, typer.Option(help="supervised, dpo, or auto (dpo when the data has pairs).")]
    = Method.auto,
    base: Annotated[
        str | None,
        typer.Option("--base", help="Model to fine-tune: a local base model (see `tuneloop models`; default "
                                    "smollm2-135m-instruct) or, remote, the platform's (default gpt-4o-mini)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Where a local job trains: auto (cuda, then mps, then cpu), cuda, mps or cpu "
                                      "(default: the config's device)."),
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option("--quantize", help="4bit: QLoRA (bitsandbytes, CUDA only), for models too large in 16 bits."),
    ] = None,
    backend: Annotated[
        Backend | None,
        typer.Option(help="local (this machine) or openai (the configured compatible platform); default: openai "
                          "when OPENAI_API_KEY/OPENAI_BASE_URL make it the default provider, else local."),
    ] = None,
    suffix: Annotated[str | None, typer.Option(help="Part of the new model's id: ft:BASE:SUFFIX:JOB.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, max=50, help="Epochs (default: auto).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Batch size (default: auto).")]
    = None,
    lr_multiplier: Annotated[
        float | None, typer.Option("--learning-rate-multiplier", min=0.0001, help="Default: auto (1.0).")
    ] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="DPO beta (default: auto, 0.1).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed, for repeatable runs.")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Stay and show progress until the job ends.")] = False,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Text encoding of a CSV input.")] = None,
    validation_file: Annotated[Path | None, typer.Option(
        "--validation-file", help="Chat examples (JSONL: a validation loss per epoch) and/or questions with expected "
        "answers (JSONL or CSV as for `tuneloop eval`: a score per epoch); the best epoch is registered.",
        show_default=False)] = None,
    json_: JsonOption = False,
    like: Annotated[str | None, typer.Option(
        "--like", help="Re-run this job (one imported with `tuneloop import openai`, or any other) locally: its "
        "training and validation files, method, hyperparameters, seed and suffix; options given here win.",
        show_default=False)] = None,
    model: ReplyModelOption = None,
    metadata: MetadataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Fine-tune a model on CSV rows, a JSONL file or the dialogue log; the job runs in the background.

    Examples:
      tuneloop train facts.csv --suffix facts --wait
      tuneloop train --from-dialogues --epochs 4
      tuneloop train --from-dialogues --metadata project=support --since 2026-11-01
      tuneloop train --like ftjob-abc123 --base qwen2.5-0.5b
      tuneloop train facts.csv --base qwen2.5-0.5b --device cuda
    """
    ft = fine_tuning()
    requested: dict[str, Any] = {"n_epochs": epochs, "batch_size": batch_size,
                                 "learning_rate_multiplier": lr_multiplier}
    if beta is not None:
        requested["beta"] = beta
    if like is not None:
        if source is not None or dialogues or validation_file is not None or (backend and backend.value != "local"):
            raise InputError("--like re-runs a job's own data locally: drop the data source, --from-dialogues, "
                             "--validation-file and --backend")
        job = ft.create_like(like, model=base, suffix=suffix, seed=seed, device=device,
                             hyperparameters={k: v for k, v in requested.items() if v is not None})
        count, chosen = "its", job.method
    else:
        job, count, chosen = _create(ft, source, dialogues=dialogues, negative=negative, encoding=encoding,
                                     where=dialogue_filter(model, metadata, since, until), method=method, base=base,
                                     suffix=suffix, seed=seed, backend=backend, device=device, quantize=quantize,
                                     requested=requested, validation_file=validation_file)
    if json_ and not wait:
        print_json(job.to_openai())
        return
    h = job.hyperparameters
    error_console.print(
        f"Started [bold]{job.id}[/] ({job.backend}): {count} {chosen} examples, {h.get('n_epochs', 'auto')} epochs, "
        f"batch {h.get('batch_size', 'auto')}, learning rate × {h.get('learning_rate_multiplier', 'auto')} "
        f"on {escape(job.model)}"
    )
    if not wait:
        error_console.print(f"Follow it with [bold]tuneloop jobs wait {job.id}[/] (it goes on if you close this).")
        if job.backend == "local" and not ft.settings.spawn_worker:
            error_console.print("It waits in the queue for a `tuneloop worker` (spawn_worker is off).")
        return
    finish(follow(ft, job.id), json_)


def _create(ft: FineTuning, source: str | None, *, dialogues: bool, negative: bool, encoding: str | None,
            where: Any, method: Method, base: str | None, suffix: str | None, seed: int | None,
            backend: Backend | None, device: str | None, quantize: str | None, requested: dict[str, Any],
            validation_file: Path | None) -> tuple[Job, int, str]:
    dataset = collect(source, dialogues=dialogues, negative=negative, encoding=encoding, runtime=ft.runtime,
                      where=where)
    name = Path(source).stem + ".jsonl" if source not in (None, "-") else "dialogues.jsonl"
    stored, chosen, count = ft.add_dataset(dataset, method=method.value, filename=name)
    validation = upload_validation(ft, validation_file) if validation_file is not None else None
    try:
        job = ft.create(stored.id, model=base, method=chosen, suffix=suffix, seed=seed,
                        backend=backend.value if backend else ft.default_backend, device=device, quantize=quantize,
                        hyperparameters={k: v for k, v in requested.items() if v is not None},
                        validation_file=validation)
    except DatasetInvalidError as exc:
        render_report(exc.report)  # type: ignore[arg-type]
        raise
    return job, count, chosen


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
        console.print(f"[dim]{when(e.created_at)}[/] [{style}]{escape(e.message)}[/]")


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
