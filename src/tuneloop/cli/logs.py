"""`tuneloop logs`: every logged thread, searchable and exportable."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from tuneloop.cli._output import console, print_json, sentiment_text, when
from tuneloop.config import load_settings
from tuneloop.errors import InputError
from tuneloop.fileio import atomic_write_text
from tuneloop.runtime import Runtime
from tuneloop.store import DialogueStore, Message, Thread
from tuneloop.store.search import START, STOP, words

logs_app = typer.Typer(
    help="Browse, search and export the dialogue log (every exchange, with sentiment).",
    invoke_without_command=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class ExportFormat(StrEnum):
    json = "json"
    jsonl = "jsonl"
    md = "md"


def _store() -> DialogueStore:
    return Runtime(load_settings()).store


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
) -> None:
    """List threads, most recently active first."""
    threads = _store().list_threads(limit=limit)
    if json_:
        print_json([_thread_dict(t) for t in threads])
        return
    # Thread ids are for copying: never cut them.
    # kind: chat (tuneloop's own), or what a client of `tuneloop serve` stored: conversation, response (a
    # previous_response_id chain), completion (a chat completion with store: true).
    assistants = any(t.assistant_id for t in threads)  # a column only when some thread has one
    table = Table(Column("thread", no_wrap=True), "updated", "kind", *(["assistant"] if assistants else []), "model",
                  Column("messages", justify="right"), Column("title", ratio=1))
    for t in threads:
        kind = {"chat.completion": "completion"}.get(t.kind or "chat", t.kind or "chat")
        table.add_row(t.id, when(t.updated_at), kind, *([escape(t.assistant_id or "")] if assistants else []),
                      escape(t.model), str(t.message_count), escape(t.title or ""))
    console.print(table)


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
                  + (f" · metadata {escape(json.dumps(thread.metadata))}" if thread.metadata else ""))
    for m in messages:
        extra = f"  reaction {sentiment_text(m.reaction, m.reaction_score)}" if m.reaction else ""
        if m.feedback:
            extra += "  [green]rated up[/]" if m.feedback > 0 else "  [red]rated down[/]"
        console.print(f"\n[bold]{m.role}[/] [dim]#{m.id}[/] {sentiment_text(m.sentiment, m.sentiment_score)}{extra}")
        console.print(escape(m.content))


class Rating(StrEnum):
    up = "up"
    down = "down"
    clear = "clear"


@logs_app.command("rate")
def rate(
    message_id: Annotated[int, typer.Argument(help="The reply's number (the #N shown by `logs show`).")],
    rating: Annotated[Rating, typer.Argument(help="up, down, or clear.")],
) -> None:
    """Rate a reply up or down; ratings decide what `data build --from-dialogues` learns from."""
    value = {Rating.up: 1, Rating.down: -1, Rating.clear: 0}[rating]
    message = _store().set_feedback(message_id, value)
    console.print(f"reply #{message.id} in {message.thread_id}: {'rating cleared' if not value else 'rated ' + rating}")


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
            "created_at": m.created_at.isoformat()}


def _thread_dict(t: Thread) -> dict:
    return {"id": t.id, "assistant_id": t.assistant_id, "model": t.model, "title": t.title,
            "system_instruction": t.system_instruction, "created_at": t.created_at.isoformat(),
            "updated_at": t.updated_at.isoformat(), "message_count": t.message_count,
            "kind": t.kind or "chat", "metadata": t.metadata}
