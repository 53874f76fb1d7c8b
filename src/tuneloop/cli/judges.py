"""``tuneloop judge``: criteria checked by a model over logged replies, and how well they agree with people."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from tuneloop.cli._output import console, conversion_progress, error_console, print_json
from tuneloop.cli.data import dialogue_filter
from tuneloop.config import load_settings
from tuneloop.runtime import Runtime

if TYPE_CHECKING:
    from tuneloop.tasks import Task

judge_app = typer.Typer(
    help="Judges: a written criterion a model checks logged replies against (e.g. 'the reply answers the question "
         "asked'). Add one, run it over the log, compare it with people's ratings, then keep only the replies that "
         "pass: `tuneloop data build --from-dialogues --criterion NAME`.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _runtime() -> Runtime:
    return Runtime(load_settings(), progress=conversion_progress())


@judge_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A short name: letters, digits, '.', '_' or '-'.")],
    instruction: Annotated[str, typer.Argument(help="The criterion, e.g. 'The reply answers the question asked, "
                                                    "with no made-up numbers'.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="The judge model (default: the default "
                                                                     "model when it runs).")] = None,
    rule: Annotated[str, typer.Option("--rule", help="pass (the judge says pass) or score>=N (its 1-5 score is at "
                                                     "least N).")] = "pass",
    replace: Annotated[bool, typer.Option("--replace", help="Change an existing judge (its verdicts stay).")
                       ] = False,
) -> None:
    """Add a judge: a named criterion, a judge model and a pass rule."""
    from tuneloop.curation.judges import (
        define,  # Lazy (cold start): judges load the eval runner, which no other command needs
    )

    judge = define(_runtime(), name, instruction, model=model, rule=rule, replace=replace)
    console.print(f"judge [bold]{escape(judge.name)}[/] saved; run it with [bold]tuneloop judge run "
                  f"{escape(judge.name)}[/]")


@judge_app.command("list")
def list_judges(json_: JsonOption = False) -> None:
    """List the judges."""
    judges = _runtime().db.judgments.judges()
    if json_:
        print_json([j.to_dict() for j in judges])
        return
    if not judges:
        console.print("no judges yet; add one with `tuneloop judge add NAME 'CRITERION'`")
        return
    table = Table(Column("name", no_wrap=True), "model", "rule", Column("criterion", ratio=1))
    for j in judges:
        table.add_row(escape(j.name), escape(j.model or "(default)"), j.rule, escape(j.instruction))
    console.print(table)


@judge_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The judge to remove, with its verdicts.")]) -> None:
    """Remove a judge and its verdicts."""
    _runtime().db.judgments.remove_judge(name)
    console.print(f"judge {escape(name)} removed, with its verdicts")


@judge_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="The judge to run.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Judge with this model instead of the "
                                                                     "judge's own.")] = None,
    reply_model: Annotated[str | None, typer.Option("--reply-model", help="Only replies written by this model."
                                                    )] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", help="Only replies whose metadata (or "
                                                       "their thread's) has KEY=VALUE (repeatable).")] = None,
    since: Annotated[datetime | None, typer.Option("--since", help="Only replies written at or after this date "
                                                   "(UTC unless it says).")] = None,
    until: Annotated[datetime | None, typer.Option("--until", help="Only replies written before this date.")
                     ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Judge at most this many replies.")
                     ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64, help="Requests at once to a remote "
                                             "judge.")] = 4,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end and print its counts (otherwise "
                                                      "it runs in the background: tuneloop tasks wait ID).")] = False,
    json_: JsonOption = False,
) -> None:
    """Judge the selected logged replies that this judge has not judged yet with this model, as a task in the
    background (a worker runs it; `tuneloop tasks` follows and cancels it).

    A local judge answers in batches, a remote one concurrently (retried as every remote call is). A reply whose
    verdict is not the JSON asked for stays unjudged (the next run retries it); a cancelled or interrupted run keeps
    what it judged, and one taken up after a crash goes on with the rest."""
    # Lazy (cold start): see _runtime.
    from tuneloop.cli.tasks import started, tasks_of
    from tuneloop.curation.judge_runs import start

    runtime = _runtime()
    where = dialogue_filter(reply_model, metadata, since, until)
    task = start(runtime, tasks_of(runtime), name, model=model, where=where if where else None, limit=limit,
                 concurrency=concurrency)

    def report(ended: Task) -> None:
        counts = ended.result or {}
        if json_:
            print_json(counts)
            return
        console.print(f"{escape(name)} ({escape(counts.get('judge_model', ''))}): judged {counts.get('judged', 0)} "
                      f"([green]{counts.get('passed', 0)} pass[/], [red]{counts.get('failed', 0)} fail[/]), "
                      f"{len(counts.get('unjudged', []))} unjudged, {counts.get('already_judged', 0)} judged before")
        errors = counts.get("errors", [])
        for line in errors[:5]:
            error_console.print(f"[yellow]unjudged {escape(line)}[/]")
        if len(counts.get("unjudged", [])) > 5:
            error_console.print(f"[yellow]… and {len(counts['unjudged']) - 5} more unjudged[/]")

    started(task, wait=wait, json_=json_, done=report)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@judge_app.command("align")
def align(
    name: Annotated[str, typer.Argument(help="The judge to compare with people's ratings.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this judge model's verdicts.")] = None,
    json_: JsonOption = False,
    show: Annotated[int, typer.Option("--show", min=0, help="Disagreements to print.")] = 10,
) -> None:
    """How the judge agrees with the ratings people gave (logs rate, metadata, the dashboard): precision, recall,
    Cohen's kappa, and the replies where they disagree, to read before trusting the judge."""
    from tuneloop.curation.judges import align as align_judge  # Lazy (cold start): see _runtime

    report = align_judge(_runtime().db.dialogue, name, model)
    if json_:
        print_json(report.to_dict())
        return
    if not report.count:
        console.print(f"no reply is both rated by people and judged by {escape(name)}: rate some "
                      "(`tuneloop logs rate N up|down`) and run the judge first")
        return
    table = Table(Column(""), Column("judge: pass", justify="right"), Column("judge: fail", justify="right"),
                  title=f"{escape(name)} against people's ratings ({report.count} replies)")
    table.add_row("people: up", str(report.both_pass), str(report.people_only))
    table.add_row("people: down", str(report.judge_only), str(report.both_fail))
    console.print(table)
    console.print(f"precision {_share(report.precision)} · recall {_share(report.recall)} · "
                  f"agreement {_share(report.agreement)} · Cohen's kappa {_share(report.kappa)}")
    for message, verdict in report.disagreements[:show]:
        rated = "up" if (message.feedback or 0) > 0 else "down"
        note = f" ({escape(message.feedback_note)})" if message.feedback_note else ""
        console.print(f"\n[bold]#{message.id}[/] people: {rated}{note} · judge: "
                      f"{'pass' if verdict.passed else 'fail'} — {escape(verdict.reason or '')}")
        console.print(f"[dim]{escape(message.content[:300])}[/]")



