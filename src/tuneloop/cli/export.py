"""`tuneloop export`: write a model for vLLM, llama.cpp or Ollama, and say how to serve it."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tuneloop.cli._output import console, conversion_progress, error_console, print_json
from tuneloop.config import load_settings
from tuneloop.runtime import Runtime


class Format(StrEnum):
    peft = "peft"
    merged = "merged"
    gguf = "gguf"


class GGUFType(StrEnum):
    f16 = "f16"
    q8_0 = "q8_0"
    f32 = "f32"


def export(
    model: Annotated[str, typer.Argument(help="A fine-tuned model (ft:BASE:SUFFIX:JOB) or, for merged and gguf, a "
                                              "base model.")],
    format: Annotated[Format, typer.Option("--format", "-f", help="peft: the LoRA adapter (vLLM --lora-modules, "
                                           "Ollama ADAPTER); merged: the whole model in safetensors; gguf: the merged "
                                           "model as one GGUF file (llama.cpp, Ollama).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write (must not exist, or be empty).")],
    gguf_type: Annotated[GGUFType, typer.Option("--gguf-type", help="GGUF weights: f16, q8_0 (half the size) or "
                                                "f32 (exact).")] = GGUFType.f16,
    force: Annotated[bool, typer.Option("--force", help="Replace the folder if it is not empty.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON: files and serve commands.")] = False,
) -> None:
    """Export a model, then print the command that serves it with vLLM, llama.cpp or Ollama.

    GGUF export knows the Llama (SmolLM, Llama 2/3), Mistral, Qwen2, Qwen3, Gemma 2 and Phi-3 architectures;
    for others, export --format merged and convert it with llama.cpp's convert_hf_to_gguf.py.

    Examples:
      tuneloop export ft:smollm2-135m-instruct:facts:ftjob-abc --format gguf -o facts-gguf
      tuneloop export ft:qwen2.5-0.5b:support:ftjob-def --format peft -o support-lora
    """
    # Lazy (cold start): exporting loads transformers, peft and gguf.
    from tuneloop.export import export_model

    runtime = Runtime(load_settings(), progress=conversion_progress())
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    quiet = json_ or not error_console.is_terminal
    with Progress(*columns, console=error_console, transient=True, disable=quiet) as bar:
        task = bar.add_task("exporting", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        result = export_model(runtime, model, format.value, output, gguf_type=gguf_type.value, overwrite=force,
                              progress=progress)
    if json_:
        print_json({"model": result.model, "format": result.format, "path": str(result.path),
                    "files": [str(f) for f in result.files], "base": result.base, "serve": result.recipes,
                    "notes": result.notes})
        return
    size = sum(f.stat().st_size for f in result.files)
    console.print(f"Exported [bold]{escape(result.model)}[/] as {result.format} to {escape(str(result.path))} "
                  f"({len(result.files)} files, {size / 2**20:.1f} MiB)")
    for note in result.notes:
        error_console.print(f"[yellow]note:[/] {escape(note)}")
    for engine, recipe in result.recipes.items():
        if engine == "ollama-modelfile":
            continue
        console.print(f"\n[bold]{escape(engine)}[/]:")
        console.print(recipe, markup=False, highlight=False)
