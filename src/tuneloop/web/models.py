"""The models page: base models (bundled and registered) and fine-tunes with their architecture, size and where they
live; the forms that register a folder or GGUF (as `tuneloop models add`) and export a model (as `tuneloop
export`), whose result shows the serve recipes to copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tuneloop.engine.weights import BASE_MODEL_ID
from tuneloop.errors import TuneloopError
from tuneloop.models import parameters_text
from tuneloop.models.registry import base_of
from tuneloop.providers import ModelInfo
from tuneloop.runtime import Runtime
from tuneloop.serving import state_of
from tuneloop.web._pages import PageError, back_to, posted, render

router = APIRouter()
ROUTERS = [router]
FORMATS = (("peft", "peft: the LoRA adapter (fine-tunes only)"), ("merged", "merged: the whole model, safetensors"),
           ("gguf", "gguf: one GGUF file (llama.cpp, Ollama)"))
GGUF_TYPES = (("f16", "f16"), ("q8_0", "q8_0 (half the size)"), ("f32", "f32 (exact)"))
RECIPE_NAMES = {"vllm": "vLLM", "llama.cpp": "llama.cpp", "ollama": "Ollama", "transformers": "transformers"}


def disk_size(where: str) -> int | None:
    """Bytes on disk of a model's file or folder (its top level: an adapter's epoch checkpoints are not counted);
    None when ``where`` is not a path here."""
    path = Path(where)
    if not where or not path.is_absolute():
        return None
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return None
    return None


def human_bytes(size: int | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _row(info: ModelInfo, default: str, models_dir: Path) -> dict[str, Any]:
    # The bundled model's weights: the folder it is converted into (none before its first use).
    where = str(models_dir / BASE_MODEL_ID) if info.id == BASE_MODEL_ID and info.kind == "base" else info.path
    return {"id": info.id, "kind": info.kind, "provider": info.provider, "architecture": info.architecture,
            "parameters": parameters_text(info.parameters), "disk": human_bytes(disk_size(where)), "path": info.path,
            "note": info.note, "default": info.id == default, "base": base_of(info.id) if info.kind != "base" else "",
            "job": _job_of(info.id)}


def _job_of(model: str) -> str:
    """The job that trained ``ft:BASE:SUFFIX:JOB`` (or one of its checkpoints), if the id names one."""
    parts = model.split(":")
    return parts[3] if model.startswith("ft:") and len(parts) > 3 and parts[3].startswith("ftjob-") else ""


def catalog(rt: Runtime) -> dict[str, Any]:
    """What the page lists: base models, fine-tunes (and checkpoints), remote models, and why remote ones are
    missing."""
    infos, problem = rt.models()
    default = rt.default_model()
    rows = [_row(info, default, rt.settings.resolved_models_dir) for info in infos]
    return {"bases": [r for r in rows if r["kind"] == "base"],
            "tuned": [r for r in rows if r["kind"] in ("fine-tuned", "checkpoint")],
            "remote": [r for r in rows if r["kind"] not in ("base", "fine-tuned", "checkpoint")],
            "remote_problem": problem,
            "exportable": [r["id"] for r in rows if r["provider"] == "local"]}


def _page(request: Request, *, status: int = 200, **context: Any) -> Response:
    """The page (blocking: it lists the models and sizes their files; async routes run it in a thread)."""
    rt = state_of(request).runtime
    given = {"form": {}, "error": None, "exported": None, "notice": None, **context}
    return render(request, "models.html", status=status, formats=FORMATS, gguf_types=GGUF_TYPES,
                  exports_dir=str(exports_dir(rt)), **catalog(rt), **given)


@router.get("/models")
def models_page(request: Request) -> Response:
    added = request.query_params.get("added")
    return _page(request, notice=f"Registered {added}." if added else None)


@router.post("/models")
async def register(request: Request) -> Response:
    form = await posted(request)
    given = {k: str(form.get(k) or "").strip() for k in ("id", "path")}
    return await run_in_threadpool(_register, request, given)


def _register(request: Request, given: dict[str, str]) -> Response:
    rt = state_of(request).runtime
    try:
        if not given["id"] or not given["path"]:
            raise PageError("give both an id and the path of a model folder or .gguf file to register")
        entry = rt.registry.add(given["id"], given["path"])
    except (PageError, TuneloopError) as exc:
        return _page(request, status=400, error=str(exc), form=given, failed="register")
    return back_to("/ui/models", "base-models", added=entry.id)


def exports_dir(rt: Runtime) -> Path:
    """Where the dashboard exports: HOME/exports (the page's output folder is a name under it, nothing else)."""
    return rt.settings.home / "exports"


def output_folder(rt: Runtime, given: str) -> Path:
    """The export's folder: ``given`` is a folder name (a relative path without ``..``), resolved (symlinks
    followed) under HOME/exports; a PageError for anything else, as replacing the folder deletes what it holds."""
    exports = exports_dir(rt)
    what = f"type a folder name, such as my-model-gguf: the export goes in a folder under {exports}"
    if not given:
        raise PageError(f"give the folder to export to: {what}")
    parts = given.split("/")
    if given.startswith(("/", "~")) or Path(given).is_absolute():
        raise PageError(f"output folder {given!r} is a full path; {what}")
    if any(part in ("", ".", "..") for part in parts) or "\\" in given \
            or any(ord(c) < 32 or ord(c) == 127 for c in given):
        raise PageError(f"output folder {given!r} is not a plain folder name ('..', '.', empty parts, "
                        f"backslashes and control characters are refused); {what}")
    try:
        root = exports.resolve()
        out = (root / given).resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links, a name too long
        raise PageError(f"output folder {given!r} cannot be used ({exc}); {what}") from exc
    if out == root or not out.is_relative_to(root):
        raise PageError(f"output folder {given!r} is not a folder under {exports} (a link leads elsewhere); {what}")
    return out


@router.post("/models/export")
async def export(request: Request) -> Response:
    form = await posted(request)
    given = {k: str(form.get(k) or "").strip() for k in ("model", "format", "gguf_type", "output", "replace")}
    return await run_in_threadpool(_export, request, given)


def _export(request: Request, given: dict[str, str]) -> Response:
    rt = state_of(request).runtime
    try:
        if given["format"] not in dict(FORMATS):
            raise PageError(f"export format {given['format']!r}: choose peft, merged or gguf")
        out = output_folder(rt, given["output"])
        # Lazy: exporting loads transformers, peft and gguf; the page itself does not.
        from tuneloop.export import export_model

        result = export_model(rt, given["model"], given["format"], out, gguf_type=given["gguf_type"] or "f16",
                              overwrite=given["replace"] == "yes")
    except (PageError, TuneloopError) as exc:
        return _page(request, status=400, error=str(exc), form=given, failed="export")
    except OSError as exc:  # a folder this server may not write
        return _page(request, status=400, form=given, failed="export",
                     error=f"cannot write {exc.filename or given['output']}: {exc.strerror or exc}; choose another "
                           "folder")
    size = sum(f.stat().st_size for f in result.files if f.is_file())
    recipes = [{"key": key, "name": RECIPE_NAMES.get(key, key), "text": text}
               for key, text in result.recipes.items() if key != "ollama-modelfile"]
    exported = {"model": result.model, "format": result.format, "path": str(result.path), "size": human_bytes(size),
                "files": [f.name for f in result.files], "notes": result.notes, "recipes": recipes}
    return _page(request, exported=exported, form=given)
