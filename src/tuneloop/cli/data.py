"""`tuneloop data`: build fine-tuning files from CSV and dialogues, and validate them before training."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tuneloop.cli._output import console, conversion_progress, error_console, key_values, print_json
from tuneloop.config import load_settings
from tuneloop.curation.log import LogFilter
from tuneloop.datasets import Dataset, build_dataset, read_csv_text, read_source, token_counter
from tuneloop.datasets.readers import decode
from tuneloop.datasets.validate import ERROR_NAMES, ValidationReport, validate_file
from tuneloop.errors import InputError
from tuneloop.runtime import Runtime

data_app = typer.Typer(
    help=(
        "Turn CSV files and logged dialogues into OpenAI fine-tuning JSONL, and check such files "
        "(format, token counts, cost) before training."
    ),
    no_args_is_help=True,
)


class MethodChoice(StrEnum):
    auto = "auto"
    supervised = "supervised"
    dpo = "dpo"


EncodingOption = Annotated[
    str | None,
    typer.Option("--encoding", help="Text encoding of the input (default UTF-8), e.g. cp1252 or latin-1."),
]


ReplyModelOption = Annotated[
    str | None, typer.Option("--model", help="With --from-dialogues: only replies written by this model.")
]
MetadataOption = Annotated[
    list[str] | None,
    typer.Option("--metadata", help="With --from-dialogues: only replies whose metadata (their own, their "
                                    "response's, their conversation's or stored completion's) has KEY=VALUE; "
                                    "repeat for several pairs.", show_default=False, metavar="KEY=VALUE"),
]
SinceOption = Annotated[
    datetime | None, typer.Option("--since", help="With --from-dialogues: only replies written from this date (UTC).",
                                  formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"], show_default=False,
                                  metavar="DATE")
]
UntilOption = Annotated[
    datetime | None, typer.Option("--until", help="With --from-dialogues: only replies written before this date "
                                                  "(UTC).", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"],
                                  show_default=False, metavar="DATE")
]


def dialogue_filter(model: str | None, metadata: list[str] | None, since: datetime | None,
                    until: datetime | None) -> LogFilter:
    """The --model/--metadata/--since/--until options as the log's filter; naive dates are UTC."""
    pairs = key_values(metadata)
    return LogFilter(model=model, metadata=pairs,
                     since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
                     until=until.replace(tzinfo=until.tzinfo or UTC) if until else None)


@dataclass(frozen=True)
class Wanted:
    """What a build asks for: the source file and/or the log, filtered, and what to do with them."""

    source: str | None
    dialogues: bool
    negative: bool = False
    encoding: str | None = None
    assistant: str | None = None
    where: LogFilter = field(default_factory=LogFilter)
    criterion: str | None = None
    redact: bool = False

    def check(self) -> None:
        """Refuse options that need the log without --from-dialogues (one line each, before anything is read)."""
        if self.source is None and not self.dialogues:
            raise InputError("give a CSV file, a directory of CSV files or a JSONL file, or --from-dialogues")
        if self.dialogues:
            return
        for given, option in ((self.where, "--model, --metadata, --since and --until choose replies from the log"),
                              (self.criterion, "--criterion chooses replies from the log"),
                              (self.redact, "--redact masks personal data in examples from the log")):
            if given:
                raise InputError(f"{option}: add --from-dialogues")


def collect(wanted: Wanted, runtime: Runtime | None = None) -> Dataset:
    """The examples a command asked for: a CSV/JSONL source ('-' is CSV on stdin) and/or the log (through the
    library's one selection, :func:`tuneloop.curation.selection.select`)."""
    wanted.check()
    dataset = Dataset()
    if wanted.source == "-":
        text = decode(sys.stdin.buffer.read(), "<stdin>", wanted.encoding)
        dataset.merge(build_dataset(read_csv_text(text, source="<stdin>"), negative=wanted.negative))
    elif wanted.source is not None:
        dataset.merge(build_dataset(read_source(wanted.source, encoding=wanted.encoding), negative=wanted.negative))
    if wanted.dialogues:
        # Lazy (cold start): the selection loads the judges (a criterion's verdicts), which reading a CSV never needs.
        from tuneloop.curation.selection import select

        where = replace(wanted.where, assistant=wanted.assistant) if wanted.assistant else wanted.where
        runtime = runtime or Runtime(load_settings())
        dataset.merge(select(runtime.db, where, criterion=wanted.criterion, redact=wanted.redact).dataset)
    return dataset


BUILD_HELP = (
    "Build an OpenAI fine-tuning JSONL file from CSV rows and/or logged dialogues.\n\n"
    "CSV columns (any case): prompt|question|input|user, completion|answer|output|response|assistant, "
    "optional system, optional positive (1/0, true/false, yes/no).\n\n"
    "A prompt with a preferred and an avoided answer becomes a DPO pair; prompts with preferred answers only "
    "become chat examples. From dialogues: replies rated up or followed by a positive user turn become chat "
    "examples; a badly received reply followed by a well received one becomes a DPO pair.\n\n"
    "Examples:\n\n"
    "  tuneloop data build facts.csv -o train.jsonl\n\n"
    "  tuneloop data build --from-dialogues -o from-chats.jsonl\n\n"
    "  tuneloop data build --from-dialogues --model smollm2-135m-instruct --metadata project=support "
    "--since 2026-11-01 -o support.jsonl\n\n"
    "The log holds what `tuneloop chat`/`ask` said and what clients of `tuneloop serve` stored: conversations, "
    "response chains and chat completions created with store: true. Clients rate a reply with metadata "
    "rating=up|down (see the README)."
)


@data_app.command(help=BUILD_HELP)
def build(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSONL file.", show_default=False)],
    source: Annotated[
        str | None,
        typer.Argument(
            help="A CSV file, a directory of CSV files, a JSONL file, or '-' for CSV on standard input.",
            show_default=False,
        ),
    ] = None,
    negative: Annotated[
        bool, typer.Option("--negative", help="Rows without a positive column are answers to avoid.")
    ] = False,
    dialogues: Annotated[
        bool,
        typer.Option(
            "--from-dialogues",
            help="Add examples from the dialogue log: well-received replies, and better replies after bad ones.",
        ),
    ] = False,
    assistant: Annotated[
        str | None, typer.Option("--assistant", "-a", help="With --from-dialogues: only this assistant's threads.")
    ] = None,
    method: Annotated[
        MethodChoice,
        typer.Option(help="supervised (chat examples), dpo (preference pairs), or auto: dpo when there are pairs."),
    ] = MethodChoice.auto,
    encoding: EncodingOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    model: ReplyModelOption = None,
    metadata: MetadataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    redact: Annotated[bool, typer.Option(
        "--redact", help="With --from-dialogues: mask e-mail addresses, phone, card and IBAN numbers and API keys "
                         "in the examples before they are written.")] = False,
    criterion: Annotated[str | None, typer.Option(
        "--criterion", help="With --from-dialogues: only replies this judge passed (`tuneloop judge run NAME` "
                            "first; replies it has not judged are left out).")] = None,
) -> None:
    """Build an OpenAI fine-tuning JSONL file from CSV rows and/or logged dialogues (see BUILD_HELP)."""
    wanted = Wanted(source, dialogues, negative, encoding, assistant, dialogue_filter(model, metadata, since, until),
                    criterion, redact)
    dataset = collect(wanted)
    chosen, written = dataset.write_jsonl(output, method.value)
    reason = dataset.auto_reason() if method is MethodChoice.auto else None
    if json_:
        print_json({**build_summary(dataset, output, chosen, written), "format_reason": reason})
    else:
        print_build(dataset, output, chosen, written, reason)


def build_summary(dataset: Dataset, output: Path, chosen: str, written: int) -> dict[str, object]:
    """What ``data build --json`` prints."""
    return {"output": str(output), "format": chosen, "examples": written, "rows": dataset.rows,
            "supervised": len(dataset.supervised), "dpo_pairs": len(dataset.preference),
            "left_out": dataset.examples(chosen)[1],
            "skipped": [{"source": s.source, "line": s.line, "reason": s.reason} for s in dataset.skipped],
            "dropped": dict(dataset.dropped), "redacted": dict(dataset.redacted)}


def print_build(dataset: Dataset, output: Path, chosen: str, written: int, reason: str | None = None) -> None:
    """What ``data build`` says: the file written (and why in that format, when auto chose it), and every row or
    example it left out and why."""
    left_out = dataset.examples(chosen)[1]
    noun = "example" if written == 1 else "examples"
    console.print(f"Wrote {written} {chosen} {noun} to [bold]{escape(str(output))}[/]")
    if reason:
        console.print(f"[dim]{escape(reason)}[/]")
    if left_out:
        console.print(f"[yellow]{left_out} chat examples are not in it: a DPO file holds only prompts with an "
                      "avoided answer; use --method supervised for them[/]")
    for reason, count in Counter(s.reason for s in dataset.skipped).most_common():
        first = next(s for s in dataset.skipped if s.reason == reason)
        console.print(f"[yellow]left out {count} row(s): {escape(reason)} (first: {escape(first.source)}, "
                      f"line {first.line})[/]")
    for reason, count in dataset.dropped.most_common():
        console.print(f"[yellow]left out {count} from the log: {escape(reason)}[/]")
    if dataset.redacted:
        masked = ", ".join(f"{n} {label}" for label, n in dataset.redacted.most_common())
        console.print(f"masked {masked}")
    console.print(f"Next: [bold]tuneloop data validate {escape(str(output))}[/]")


@data_app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="The JSONL training file to check.", show_default=False)],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to count tokens and price for (default: the default model)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs for the cost estimate (default: OpenAI's auto).")
    ] = None,
    encoding: EncodingOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object (see the README).")] = False,
) -> None:
    """Check a fine-tuning file as OpenAI would: format errors, token counts, estimated cost.

    Exits with 1 when the file has errors, so scripts can stop before training.
    """
    settings = load_settings()
    model_id = model or Runtime(settings).default_model()

    def counter():  # noqa: ANN202 - loaded only once the file is known to be readable
        return token_counter(model_id, models_dir=settings.resolved_models_dir, progress=conversion_progress())

    report = validate_file(file, counter, encoding=encoding, epochs=epochs)
    if json_:
        print_json(report.to_dict())
    else:
        render_report(report)
    if not report.ok:
        raise typer.Exit(1)


def render_report(report: ValidationReport) -> None:
    tokens = report.tokens
    status = "[green]ok[/]" if report.ok else "[red]has errors[/]"
    console.print(f"[bold]{escape(report.source)}[/]: {report.examples} {report.format} examples, {status}")
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="dim")
    summary.add_column()
    estimate = "" if report.tokens_exact else " (estimate)"
    summary.add_row("model", escape(report.model))
    summary.add_row("tokenizer", escape(report.tokenizer + estimate))
    summary.add_row(
        "tokens",
        f"{tokens['total']:,} total · min {tokens['min']:,} · median {tokens['p50']:,} · p90 {tokens['p90']:,} · "
        f"max {tokens['max']:,} · mean {tokens['mean']:,}"
        + (f" (context {report.context:,})" if report.context else ""),
    )
    summary.add_row("epochs", f"{report.epochs} → {report.billed_tokens:,} trained tokens")
    if report.estimated_cost_usd is None:
        cost = "unknown (no price for this model in the table)"
    elif report.estimated_cost_usd == 0 and report.price_as_of is None:
        cost = "free (trains on this machine)"
    else:
        cost = f"${report.estimated_cost_usd:,.2f} (prices as of {report.price_as_of})"
    summary.add_row("estimated cost", cost)
    console.print(summary)
    if report.tokenizer_note:
        console.print(f"[dim]{escape(report.tokenizer_note)}[/]")
    if report.errors or report.warnings:
        table = Table("", "check", "examples", "first")
        order = {name: i for i, name in enumerate(ERROR_NAMES)}
        for name, count in sorted(report.errors.items(), key=lambda kv: order.get(kv[0], 99)):
            first = next((i for i in report.first_errors if i.error == name), None)
            where = f"line {first.line}: {first.detail}" if first and first.line else (first.detail if first else "")
            table.add_row("[red]error[/]", name, str(count), escape(where))
        for name, count in sorted(report.warnings.items()):
            table.add_row("[yellow]warning[/]", name, str(count), "")
        console.print(table)
    if not report.ok:
        error_console.print(f"[red]{sum(report.errors.values())} problem(s): fix them before training[/]")
