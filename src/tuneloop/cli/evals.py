"""``tuneloop eval``: a file of questions with expected answers, asked of models side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tuneloop.cli._output import console, conversion_progress, error_console, print_json

if TYPE_CHECKING:
    from tuneloop.evals import EvalReport


def eval_command(
    file: Annotated[Path, typer.Argument(help="JSONL (question|messages, expected, grader) or CSV "
                                              "(question, expected[, grader]) file.", show_default=False)],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Model to ask (repeat for a side-by-side table; default: the configured model).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens per answer.")] = 64,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", min=0.0, max=1.0,
        help="Exit with code 1 unless every model passes at least this share of the questions (0-1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Show whole answers, not their first 160 characters.")] = False,
) -> None:
    """Ask each model every question of FILE (greedy) and grade the answers: a table per question, the totals.

    Graders: contains (default: the expected words appear in the answer, ignoring case), exact (the whole
    answer, ignoring case and a final full stop), regex (a Python regular expression, searched).
    Example: tuneloop eval facts.jsonl -m ft:smollm2-135m-instruct:demo:ftjob-… -m smollm2-135m-instruct
    """
    # Lazy (cold start): the other commands never load the eval runner.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tuneloop.config import load_settings
    from tuneloop.evals import check_models, read_eval_file, run_eval
    from tuneloop.runtime import Runtime

    items = read_eval_file(file)
    rt = Runtime(load_settings(), progress=conversion_progress())
    models = list(dict.fromkeys(model or [rt.default_model()]))
    check_models(rt, models)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=error_console, transient=True, disable=as_json or not error_console.is_terminal)
    with progress:
        task = progress.add_task(f"asking {len(models)} model(s) {len(items)} questions",
                                 total=len(items) * len(models))
        report = run_eval(rt, items, models, max_tokens=max_tokens,
                          on_answer=lambda n: progress.advance(task, n))
    if as_json:
        print_json(report.to_json())
    else:
        show(report, full=full)
    if min_score is not None:
        low = [m for m in report.models if report.fraction(m) < min_score]
        if low:
            if not as_json:
                error_console.print(f"below --min-score {min_score:g}: " + ", ".join(
                    f"{escape(m)} ({report.fraction(m):.2f})" for m in low))
            raise typer.Exit(1)


def show(report: EvalReport, *, full: bool = False, limit: int | None = None) -> None:
    """The side-by-side table (the first ``limit`` questions) and each model's total."""
    table = Table("#", "question", "expected", *(escape(m) for m in report.models), show_lines=True)
    for i, item in enumerate(report.items[:limit]):
        cells = []
        for model in report.models:
            answer = report.answers[model][i]
            shown = answer if full or len(answer) <= 160 else answer[:159] + "…"
            mark = "[green]✓[/]" if report.passed[model][i] else "[red]✗[/]"
            cells.append(f"{mark} {escape(shown)}")
        table.add_row(str(i + 1), escape(item.question), escape(" | ".join(item.expected)), *cells)
    console.print(table)
    for model in report.models:
        console.print(f"[bold]{escape(model)}[/]: {report.score(model)}/{len(report.items)} "
                      f"({report.fraction(model):.0%}) in {report.seconds.get(model, 0.0):.1f} s")
