"""`tuneloop logs`: every logged thread, searchable and exportable."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import click
import typer
from rich.markup import escape
from rich.table import Column, Table

from tuneloop.cli._output import console, error_console, key_values, print_json, sentiment_text, when
from tuneloop.config import Settings, load_settings
from tuneloop.curation import labels, ratings
from tuneloop.curation.labels import rescore as relabel
from tuneloop.curation.log import START, STOP, Message, Thread, words
from tuneloop.errors import InputError
from tuneloop.runtime import Runtime
from tuneloop.util.fileio import atomic_write_text

logs_app = typer.Typer(
    help="Browse, search and export the dialogue log (every exchange, with sentiment).",
    invoke_without_command=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class ExportFormat(StrEnum):
    json = "json"
    jsonl = "jsonl"
    md = "md"


def _store() -> Any:
    """The log (the dialogue store's handle of this configuration)."""
    return Runtime(load_settings()).db.dialogue


@logs_app.callback()
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        list_threads(limit=20, json_=False)


@logs_app.command("path")
def path() -> None:
    """Print where the log is stored."""
    console.print(escape(_store().location))


@logs_app.command("list")
def list_threads(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many threads, newest first.")] = 20,
    json_: JsonOption = False,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="Only threads of this kind: chat (tuneloop's own), server (an app's traffic through "
                       "`tuneloop serve`), completion (stored with store=true), conversation, response.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(
        "--metadata", "-m", help="Only threads whose metadata has KEY=VALUE (repeatable: every pair must match).")
    ] = None,
    end_user: Annotated[str | None, typer.Option(
        "--end-user", help="Only threads of this end user (a request's safety_identifier or user).")] = None,
) -> None:
    """List threads, most recently active first."""
    kinds = {"completion": "chat.completion"}
    if kind is not None and kind not in ("chat", "server", "completion", "conversation", "response"):
        raise InputError(f"--kind {kind!r}: use chat, server, completion, conversation or response")
    threads = _store().list_threads(limit=limit, kind=kinds.get(kind, kind) if kind else None,
                                    metadata=key_values(metadata) or None, end_user=end_user)
    if json_:
        print_json([_thread_dict(t) for t in threads])
        return
    # Thread ids are for copying: never cut them.
    # kind: chat (tuneloop's own), or what a client of `tuneloop serve` sent: server (a chat completion logged as
    # traffic), conversation, response (a previous_response_id chain), completion (a chat completion with store).
    assistants = any(t.assistant_id for t in threads)  # a column only when some thread has one
    table = Table(Column("thread", no_wrap=True), "updated", "kind", *(["assistant"] if assistants else []), "model",
                  Column("messages", justify="right"), Column("title", ratio=1))
    for t in threads:
        shown = {"chat.completion": "completion"}.get(t.kind or "chat", t.kind or "chat")
        table.add_row(t.id, when(t.updated_at), shown, *([escape(t.assistant_id or "")] if assistants else []),
                      escape(t.model), str(t.message_count), escape(t.title or ""))
    if threads:
        console.print(table)
    else:
        console.print("no threads match" if (kind or metadata or end_user) else "no threads yet")


@logs_app.command("show")
def show(
    thread_id: Annotated[str | None, typer.Argument(help="Thread id (default: the most recent).")] = None,
    json_: JsonOption = False,
) -> None:
    """Show a thread's messages with the sentiment of each and the reaction each reply got."""
    store = _store()
    if thread_id is None:
        latest = store.latest_thread()
        if latest is None:
            raise InputError(f"no threads yet in {store.location}; ask something first")
        thread_id = latest.id
    thread = store.get_thread(thread_id)
    messages = store.messages(thread_id)
    if json_:
        print_json({**_thread_dict(thread), "messages": [m.to_dict() for m in messages]})
        return
    console.print(f"[bold]{thread.id}[/] · {thread.kind or 'chat'} · {escape(thread.assistant_id or '')} · "
                  f"{escape(thread.model)} · started {when(thread.created_at)}"
                  + (f" · end user {escape(thread.end_user)}" if thread.end_user else "")
                  + (f" · metadata {escape(json.dumps(thread.metadata, ensure_ascii=False))}" if thread.metadata
                     else ""))
    for m in messages:
        extra = f" [dim]{escape(m.language)}[/]" if m.language else ""
        if m.reaction:
            extra += f"  reaction {sentiment_text(m.reaction, m.reaction_score)}"
        if m.feedback:
            extra += "  [green]rated up[/]" if m.feedback > 0 else "  [red]rated down[/]"
            if m.feedback_note:
                extra += f" [dim]({escape(m.feedback_note)})[/]"
        console.print(f"\n[bold]{m.role}[/] [dim]#{m.id}[/] {sentiment_text(m.sentiment, m.sentiment_score)}{extra}")
        if m.content:
            console.print(escape(m.content))
        for call in m.tool_calls or []:
            function = call.get("function") or {}
            console.print(f"[magenta]calls {escape(str(function.get('name')))}[/] "
                          f"{escape(str(function.get('arguments')))} [dim]{escape(str(call.get('id')))}[/]")
        if m.tool_call_id:
            console.print(f"[dim]answers {escape(m.tool_call_id)}[/]")
        if m.correction is not None:
            console.print(f"[bold cyan]corrected[/] [dim]{when(m.correction.created_at)} via "
                          f"{escape(m.correction.source)}[/]")
            console.print(f"[cyan]{escape(m.correction.content)}[/]")


class Rating(StrEnum):
    up = "up"
    down = "down"
    clear = "clear"


@logs_app.command("rate")
def rate(
    message_id: Annotated[int, typer.Argument(help="The reply's number (the #N shown by `logs show`).")],
    rating: Annotated[Rating, typer.Argument(help="up, down, or clear.")],
    note: Annotated[str | None, typer.Option("--note", help="Why, in a sentence (shown with the rating).")] = None,
) -> None:
    """Rate a reply up or down; ratings decide what `data build --from-dialogues` learns from."""
    value = {Rating.up: 1, Rating.down: -1, Rating.clear: 0}[rating]
    message = ratings.rate(_store(), message_id, value, note)
    said = "rating cleared" if not value else f"rated {rating}" + (f" ({escape(note)})" if note else "")
    console.print(f"reply #{message.id} in {message.thread_id}: {said}")


@logs_app.command("correct")
def correct(
    message_id: Annotated[int, typer.Argument(help="The reply's number (the #N shown by `logs show`).")],
    text: Annotated[str | None, typer.Argument(help="The reply the model should have given ('-': read stdin).")
                    ] = None,
    editor: Annotated[bool, typer.Option("--editor", "-e", help="Write it in $EDITOR, starting from the reply."
                                         )] = False,
) -> None:
    """Write the right reply for a logged reply. It is kept beside the original (never over it) and becomes a
    supervised example and a DPO pair (correction over original) in `data build --from-dialogues`."""
    store = _store()
    if (text is None) == (not editor):
        raise InputError("give the corrected reply as TEXT ('-' reads stdin), or --editor to write it in $EDITOR")
    if editor:
        message = store.get_message(message_id)
        start = message.correction.content if message.correction else message.content
        edited = click.edit(start + EDITOR_HINT, extension=".md")
        text = (edited or "").split(EDITOR_HINT.strip())[0].rstrip() if edited is not None else None
        if not text or not text.strip() or text.strip() == start.strip():
            raise InputError(f"no correction written for reply #{message_id}: the text was left unchanged or empty")
    elif text == "-":
        text = sys.stdin.read()
    made = ratings.correct(store, message_id, text or "", source="cli")
    console.print(f"reply #{message_id}: correction #{made.id} saved beside the original "
                  "(`tuneloop logs show` displays it)")


EDITOR_HINT = "\n\n# Write the reply the model should have given above this line; this line and below are ignored.\n"


# The analyzers the sentiment_analyzer setting accepts, as the --analyzer choices.
AnalyzerChoice = StrEnum("AnalyzerChoice", {name: name for name in get_args(
    Settings.model_fields["sentiment_analyzer"].annotation)})


@logs_app.command("rescore")
def rescore(
    analyzer: Annotated[AnalyzerChoice | None, typer.Option(
        "--analyzer", help="multilingual (default: offline, many languages; English through VADER), vader (English "
                           "only; other languages: unknown) or judge (sentiment_judge_model asked; slow). Default: "
                           "the sentiment_analyzer setting.")] = None,
    since: Annotated[datetime | None, typer.Option(
        "--since", help="Only messages written at or after this date (UTC unless it says).")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=10_000, help="Messages per transaction.")] = 200,
) -> None:
    """Label the logged messages again (sentiment and language) and recompute each reply's reaction.

    A batch per transaction: Ctrl-C keeps what is done, and running it again is harmless (the same analyzer gives
    the same labels). Run it after changing the analyzer, or on a log written before languages were detected."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    settings = load_settings(**({"sentiment_analyzer": analyzer.value} if analyzer else {}))
    runtime = Runtime(settings)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=error_console, transient=True, disable=not error_console.is_terminal)
    with progress:
        task = progress.add_task(f"relabelling with {settings.sentiment_analyzer}", total=None)
        done, changed = relabel(runtime.db.dialogue, labels.labeller_for(runtime),
                                since=since.replace(tzinfo=since.tzinfo or UTC) if since else None, batch=batch,
                                on_progress=lambda d, t: progress.update(task, completed=d, total=t))
    console.print(f"relabelled {done:,} messages with {settings.sentiment_analyzer}: {changed:,} changed")


@logs_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Words to look for; every word must match, each as the start of a "
                                              "word, ignoring case (`capital` finds `Capitals`).")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most messages to show.")] = 50,
    json_: JsonOption = False,
) -> None:
    """Full-text search of every logged message, best match first, matching words highlighted.

    --json adds rank, snippet (matches between **) and matches to each message."""
    hits = _store().search(query, limit=limit)
    if json_:
        print_json([hit.to_dict() for hit in hits])
        return
    table = Table(Column("thread", no_wrap=True), "#", "role", "sentiment", "text")
    for hit in hits:
        m = hit.message
        shown = escape(" ".join(hit.snippet.split())).replace(START, "[bold yellow]").replace(STOP, "[/bold yellow]")
        table.add_row(m.thread_id, str(m.id), m.role, sentiment_text(m.sentiment), shown)
    if hits:
        console.print(table)
    else:
        console.print(f"no message matches {query!r}" if words(query) else f"{query!r} has no words to search for")


@logs_app.command("export")
def export(
    format_: Annotated[ExportFormat, typer.Option("--format", "-f", help="json, jsonl or md.")] = ExportFormat.json,
    thread: Annotated[list[str] | None, typer.Option("--thread", "-t", help="Only this thread (repeatable).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
) -> None:
    """Export threads. json: a list of threads in the seed's dialogue shape plus ids and timestamps."""
    data = list(_store().export(thread or None))
    text = render_export(data, format_)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        console.print(f"wrote {len(data)} threads to {escape(str(output))}")


def render_export(data: list[tuple[Thread, list[Message]]], format_: ExportFormat) -> str:
    if format_ is ExportFormat.json:
        threads = [{**_thread_dict(t), "messages": [_export_message(m) for m in ms]} for t, ms in data]
        return json.dumps(threads, ensure_ascii=False, indent=2) + "\n"
    if format_ is ExportFormat.jsonl:
        return "".join(json.dumps(m.to_dict(), ensure_ascii=False) + "\n" for _, ms in data for m in ms)
    parts = []
    for t, ms in data:
        parts.append(f"# {t.title or t.id}\n\n`{t.id}` · assistant `{t.assistant_id}` · model `{t.model}` · "
                     f"{t.created_at.isoformat()}\n")
        for m in ms:
            reaction = f", reaction: {m.reaction}" if m.reaction else ""
            parts.append(f"\n**{m.role}** ({m.sentiment}{reaction}):\n\n{m.content}\n")
        parts.append("\n")
    return "".join(parts)


def _export_message(m: Message) -> dict:
    # The seed's entry (role, content, sentiment) first, then what the store adds.
    return {"role": m.role, "content": m.content, "sentiment": m.sentiment, "id": m.id,
            "sentiment_score": m.sentiment_score, "reaction": m.reaction, "model": m.model,
            "language": m.language, "feedback": m.feedback, "feedback_note": m.feedback_note,
            "correction": m.correction.to_dict() if m.correction else None,
            "created_at": m.created_at.isoformat()}


def _thread_dict(t: Thread) -> dict:
    return {"id": t.id, "assistant_id": t.assistant_id, "model": t.model, "title": t.title,
            "system_instruction": t.system_instruction, "created_at": t.created_at.isoformat(),
            "updated_at": t.updated_at.isoformat(), "message_count": t.message_count,
            "kind": t.kind or "chat", "metadata": t.metadata, "end_user": t.end_user}
