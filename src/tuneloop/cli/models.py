"""`tuneloop models`: the models on offer; register a local model folder or GGUF file as a base model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from tuneloop.cli._output import console, conversion_progress, error_console, print_json
from tuneloop.config import load_settings
from tuneloop.models import parameters_text
from tuneloop.runtime import Runtime

models_app = typer.Typer(
    help="The models you can use (local base models, fine-tuned models, the provider's); register your own.",
    invoke_without_command=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _runtime() -> Runtime:
    return Runtime(load_settings(), progress=conversion_progress())


@models_app.callback()
def _default(ctx: typer.Context, json_: JsonOption = False) -> None:
    """List the models you can use: local base and fine-tuned models, and the provider's when one is configured.

    Register your own base model with `tuneloop models add ID PATH`.
    """
    if ctx.invoked_subcommand is None:
        list_models(json_=json_)


@models_app.command("list")
def list_models(json_: JsonOption = False) -> None:
    """List the models with their architecture, size and where they live."""
    rt = _runtime()
    infos, problem = rt.models()
    default = rt.default_model()
    if json_:
        print_json({"default": default, "models": [{**info.__dict__, "default": info.id == default} for info in infos],
                    "remote_error": problem})
        return
    table = Table(Column("model", overflow="fold"), "provider", "kind", "architecture", "size", "images",
                  Column("where", overflow="fold"), "note")
    for info in infos:
        marker = " [bold green](default)[/]" if info.id == default else ""
        table.add_row(escape(info.id) + marker, info.provider, info.kind, escape(info.architecture),
                      parameters_text(info.parameters), {True: "yes", False: "no", None: "?"}[info.vision],
                      escape(info.path), escape(info.note))
    console.print(table)
    if any(info.vision is None for info in infos):
        console.print(escape('images "?": not known; an image is sent, and a refusal by its server becomes a clear '
                             'error (or set [models."ID"] vision = true/false in tuneloop.toml)'), highlight=False)
    if problem:
        error_console.print(f"[yellow]warning:[/] remote models not listed: {escape(problem)}")


@models_app.command("add")
def add_model(
    model_id: Annotated[str, typer.Argument(help="The id to use it by (letters, digits, . _ - /; no ':').")],
    path: Annotated[str, typer.Argument(help="A Hugging Face causal LM folder (config.json, safetensors or .bin, "
                                             "a tokenizer with a chat template) or a .gguf file.")],
    json_: JsonOption = False,
) -> None:
    """Register a local model as a base model: chat with it, serve it, fine-tune it (`train --base ID`).

    The folder is checked first: its architecture must be one transformers loads as a causal LM, and its
    tokenizer must have a chat template. A GGUF file is converted to safetensors once, on first use.
    Registrations live in the store, so every process and worker that shares the store sees them.

    Examples:
      tuneloop models add qwen2.5-0.5b ~/models/Qwen2.5-0.5B-Instruct
      tuneloop models add llama-3.2-1b ~/models/Llama-3.2-1B-Instruct-Q8_0.gguf
    """
    rt = _runtime()
    entry = rt.registry.add(model_id, path)
    _entry, found, _note = rt.registry.describe(entry.id)
    if json_:
        print_json({"id": entry.id, "path": str(entry.path), "format": entry.format,
                    "architecture": found.architecture if found else None,
                    "parameters": found.parameters if found else None})
        return
    shape = f"{found.architecture}, {parameters_text(found.parameters) or '?'} parameters" if found else entry.format
    console.print(f"Registered [bold]{escape(entry.id)}[/] ({escape(shape)}) → {escape(str(entry.path))}")
    console.print(f"Try it: tuneloop ask -m {escape(entry.id)} \"Hello\"   ·   fine-tune: tuneloop train FILE --base "
                  f"{escape(entry.id)}")


@models_app.command("remove")
def remove_model(model_id: Annotated[str, typer.Argument(help="A model id registered with `models add`.")]) -> None:
    """Forget a registered base model (its files stay where they are)."""
    entry = _runtime().registry.remove(model_id)
    console.print(f"Removed {escape(entry.id)} (its files in {escape(str(entry.path))} are untouched)")
