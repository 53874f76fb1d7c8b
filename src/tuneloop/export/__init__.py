"""Export a model where people serve models: the PEFT adapter (vLLM, Ollama's ADAPTER), the merged model in
safetensors (anything that loads Hugging Face models), or a GGUF of the merged model (llama.cpp, Ollama).

>>> from tuneloop.export import export_model
>>> result = export_model(runtime, "ft:smollm2-135m-instruct:facts:ftjob-…", "gguf", Path("out"))
>>> print(result.recipes["llama.cpp"])       # llama-server -m out/….gguf

Every export is written to a temporary folder beside ``out`` and renamed into place: an interrupted export
leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuneloop.engine.template import given_template
from tuneloop.engine.weights import offline_environment
from tuneloop.errors import InputError, UnknownModelError
from tuneloop.export.gguf import TYPES as GGUF_TYPES
from tuneloop.export.gguf import GGUFExportError, write_gguf
from tuneloop.export.recipes import recipes, safe_name
from tuneloop.models.registry import base_of
from tuneloop.runtime import Runtime

FORMATS = ("peft", "merged", "gguf")
# (what is happening, done, total)
ExportProgress = Callable[[str, int, int], None]

__all__ = ["FORMATS", "GGUF_TYPES", "ExportResult", "GGUFExportError", "export_model"]


@dataclass
class ExportResult:
    model: str
    format: str
    path: Path  # the output folder
    files: list[Path]
    base: str
    base_path: Path  # the base model's Hugging Face folder
    recipes: dict[str, str] = field(default_factory=dict)  # engine → how to serve it
    notes: list[str] = field(default_factory=list)


def export_model(runtime: Runtime, model: str, format: str, out: Path, *, gguf_type: str = "f16",
                 overwrite: bool = False, progress: ExportProgress | None = None) -> ExportResult:
    """Write ``model`` (a fine-tuned ``ft:…`` id, or a base model for merged and gguf) to the folder ``out``."""
    report = progress or (lambda what, done, total: None)
    if format not in FORMATS:
        raise InputError(f"export format {format!r}: use {', '.join(FORMATS)}", param="format")
    if format == "gguf" and gguf_type not in GGUF_TYPES:
        raise InputError(f"GGUF type {gguf_type!r}: use {', '.join(GGUF_TYPES)}", param="gguf_type")
    adapters = runtime.fine_tuned_models()
    fine_tuned = model.startswith("ft:")
    if fine_tuned and model not in adapters:
        raise UnknownModelError(model, [*runtime.registry.ids(), *adapters], "export a model whose job "
                                "succeeded").with_hint("`tuneloop models` lists them")
    if not fine_tuned and not runtime.registry.has(model):
        raise UnknownModelError(model, [*runtime.registry.ids(), *adapters])
    if format == "peft" and not fine_tuned:
        raise InputError(f"{model} is a base model; the peft format is a fine-tuned model's LoRA adapter: export a "
                         "base model merged or as GGUF", param="format").with_hint("--format merged or gguf")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"{out} already exists and is not empty; choose another folder, or replace it",
                         param="out").with_hint("-o names another folder; --force replaces it")
    base = base_of(model)
    report("finding the base model", 0, 1)
    base_path = runtime.registry.checkpoint(base, runtime.progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    notes: list[str] = []
    try:
        if format == "peft":
            _copy_adapter(adapters[model], work)
        elif format == "merged":
            _merge(base_path, adapters.get(model), work, report)
        else:
            # A base model in safetensors is written as it is; anything else is merged (and saved) first.
            direct = not fine_tuned and any(base_path.glob("*.safetensors"))
            source = base_path if direct else work / ".merged"
            if not direct:
                _merge(base_path, adapters.get(model), source, report)
            target = work / f"{safe_name(model)}.{gguf_type}.gguf"
            written = write_gguf(source, target, name=model, qtype=gguf_type,
                                 progress=lambda done, total: report("writing the GGUF file", done, total))
            notes.extend(written.notes)
            if written.chat_template is not None:  # for engines that take the tokenizer elsewhere (vLLM)
                (work / "chat_template.jinja").write_text(written.chat_template, "utf-8")
            if not direct:
                shutil.rmtree(source)
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    result = ExportResult(model, format, out, files, base, base_path, notes=notes)
    result.recipes = recipes(result)
    if format == "peft" or (format == "gguf" and "ollama" in result.recipes):
        modelfile = result.recipes.get("ollama-modelfile")
        if modelfile:
            (out / "Modelfile").write_text(modelfile)
            result.files.append(out / "Modelfile")
    return result


def _copy_adapter(adapter: Path, target: Path) -> None:
    """The PEFT adapter folder as trained (config, weights, tokenizer), without the epoch checkpoints."""
    for item in adapter.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)


def _merge(base_path: Path, adapter: Path | None, target: Path, report: ExportProgress) -> None:
    """The base with the adapter merged in, saved as safetensors with its tokenizer and generation config."""
    offline_environment()
    import warnings

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    report("loading the base model", 0, 3)
    model = AutoModelForCausalLM.from_pretrained(str(base_path), local_files_only=True, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    tokenizer.chat_template = given_template(tokenizer)  # conversations rendered as tuneloop renders them
    if adapter is not None:
        from peft import PeftModel

        report("merging the adapter", 1, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    report("writing safetensors", 2, 3)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    report("done", 3, 3)
