"""`tuneloop assistants`: the assistant definitions in use."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tuneloop.cli._output import console, print_json
from tuneloop.config import load_settings
from tuneloop.conversation.assistants import AssistantCatalog, catalog

assistants_app = typer.Typer(
    help="List and show assistants (built-in default plus TUNELOOP_ASSISTANTS_FILE or home/assistants.json).",
    no_args_is_help=False,
    invoke_without_command=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _catalog() -> AssistantCatalog:
    return catalog(load_settings())


@assistants_app.callback()
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        list_assistants(json_=False)


@assistants_app.command("list")
def list_assistants(json_: JsonOption = False) -> None:
    """List the assistants and where they are defined."""
    catalog = _catalog()
    items = catalog.all()
    if json_:
        print_json({"source": str(catalog.source) if catalog.source else None,
                    "assistants": [a.model_dump() for a in items]})
        return
    table = Table("id", "name", "model", "instructions", title=f"assistants ({escape(catalog.source_label)})")
    for item in items:
        instructions = (item.instructions or "").replace("\n", " ")
        table.add_row(escape(item.id), escape(item.name), escape(item.model or "(default)"),
                      escape(instructions[:60] + ("…" if len(instructions) > 60 else "")))
    console.print(table)


@assistants_app.command("show")
def show_assistant(
    assistant_id: Annotated[str, typer.Argument(help="Assistant id.")],
    json_: JsonOption = False,
) -> None:
    """Show one assistant's whole definition."""
    item = _catalog().get(assistant_id)
    if json_:
        print_json(item.model_dump())
        return
    for key, value in item.model_dump().items():
        console.print(f"[bold]{key}:[/] {escape(str(value))}")
