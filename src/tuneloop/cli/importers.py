"""`tuneloop import openai`: an OpenAI account's jobs, files and stored completions, into the local store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuneloop.cli._output import console, error_console, print_json
from tuneloop.config import load_settings
from tuneloop.importers.openai import ImportInterruptedError, ImportSummary, OpenAIImport
from tuneloop.runtime import Runtime

import_app = typer.Typer(help="Bring history in from another platform before it closes.", no_args_is_help=True)

OPENAI_HELP = (
    "Import an OpenAI account's fine-tuning jobs (settings, events, checkpoints), their training, validation and "
    "result files, and its stored chat completions (store: true), with their metadata.\n\n"
    "Uses OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible platform). Safe to run again: what is "
    "already here is skipped, so a run that stopped half-way goes on, and a later run brings only what is new. "
    "Then: `tuneloop jobs list`, `tuneloop logs list`, `tuneloop train --like JOB_ID` to re-run a job locally.\n\n"
    "OpenAI stops new fine-tuning jobs on 2027-01-06 and retires gpt-4o-mini and its fine-tunes on 2027-01-14."
)


def _summary_table(summary: ImportSummary) -> Table:
    table = Table("", "new", "updated", "already here")
    for name, counts in (("jobs", summary.jobs), ("files", summary.files), ("stored completions",
                                                                             summary.completions)):
        table.add_row(name, str(counts.new), str(counts.updated), str(counts.unchanged))
    return table


@import_app.command("openai", help=OPENAI_HELP)
def import_openai(
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="Fine-tuning jobs and their files.")] = True,
    completions: Annotated[bool, typer.Option("--completions/--no-completions",
                                              help="Stored chat completions.")] = True,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=100, help="Objects asked for per request.")]
    = 100,
) -> None:
    runtime = Runtime(load_settings())
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed}"),
                  TimeElapsedColumn(), console=error_console, transient=json_) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, count: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(f"importing {what}", total=None)
            bar.update(tasks[what], completed=count)

        importer = OpenAIImport(runtime, progress=progress, page_size=page_size)
        try:
            summary = importer.run(jobs=jobs, completions=completions)
        except ImportInterruptedError as exc:
            bar.stop()
            error_console.print(_summary_table(exc.summary))
            raise
        except KeyboardInterrupt:
            bar.stop()
            error_console.print(_summary_table(importer.summary))
            error_console.print("interrupted: what is in the table is kept; run the import again to go on")
            raise typer.Exit(130) from None
    if json_:
        print_json(summary.to_dict())
        return
    console.print(_summary_table(summary))
    console.print(f"{summary.events} job events and {summary.checkpoints} checkpoints came with the jobs.")
    for warning in summary.warnings:
        console.print(f"[yellow]{escape(warning)}[/]")
    console.print("Next: [bold]tuneloop jobs list[/], [bold]tuneloop logs list[/], "
                  "[bold]tuneloop train --like JOB_ID[/]")
