"""A local model in the fast engine's format (ONNX, for onnxruntime-genai): converted once, cached, rebuilt when
its source changes.

The conversion runs onnxruntime-genai's own model builder in a child process (it needs torch and
transformers; the process that chats does not). A fine-tuned model is its base with the LoRA adapter
merged first. The result goes to a temporary folder that is renamed into place, with a stamp of the
source files (names, sizes, times): a changed checkpoint or adapter is converted again, an interrupted
conversion leaves nothing behind.

Modes (``TUNELOOP_ENGINE``):

- ``int8`` (the default on a CPU): 8-bit weights in blocks of 16, int8 arithmetic. Chosen by measurement:
  on the bundled quality set it is right wherever fp32 is, at about five times the reference's speed
  (``bench/generation.py`` prints both).
- ``int4``: 4-bit weights, faster still and smaller, but it loses answers (the bench prints how many).
- ``fp32``: the reference's arithmetic in onnxruntime, answers token for token the same as ``reference``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.engine.weights import ProgressCallback
from tuneloop.errors import FastConversionError, InputError
from tuneloop.util.hardware import cuda_count, mps_available

if TYPE_CHECKING:
    from tuneloop.config import Settings

FAST_MODES = ("int8", "int4", "fp32")
STAMP_FILE = "tuneloop-fast.json"
FAILED_FILE = "failed.json"  # beside the mode folders: this source could not be converted (retried when it changes)
FORMAT_VERSION = 4  # bump when the conversion changes, so cached ones are rebuilt (3: each row's last-position
# logits; 4: sliding windows on every layer that has one)

# (builder precision, builder extra options) per mode.
BUILD_OPTIONS: dict[str, tuple[str, list[str]]] = {
    "int8": ("int8", ["accuracy_level=4", "block_size=16"]),
    "int4": ("int4", ["accuracy_level=4", "block_size=32"]),
    "fp32": ("fp32", []),
}
SOURCE_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


def engine_mode(settings: Settings) -> str:
    """``TUNELOOP_ENGINE``; ``auto`` is the fast int8 engine on a CPU and the reference (torch) on a GPU."""
    mode = settings.engine
    if mode != "auto":
        return mode
    if settings.device in ("cuda", "mps"):
        return "reference"
    if settings.device == "auto" and (cuda_count() or mps_available()):
        return "reference"
    return "int8"


def _source_files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SOURCE_SUFFIXES
                  and p.name != STAMP_FILE)


def source_stamp(checkpoint: Path, adapter: Path | None, mode: str) -> dict[str, object]:
    """What a conversion was made from: every weight, config and tokenizer file, by name, size and time."""
    files = {}
    for folder in (checkpoint, adapter):
        if folder is None:
            continue
        for path in _source_files(folder):
            stat = path.stat()
            files[str(path.resolve())] = [stat.st_size, stat.st_mtime_ns]
    return {"format": FORMAT_VERSION, "mode": mode, "checkpoint": str(checkpoint.resolve()),
            "adapter": str(adapter.resolve()) if adapter else None, "files": files}


def cache_dir(models_dir: Path, checkpoint: Path, adapter: Path | None, mode: str) -> Path:
    """Where the fast format of a model lives: beside a fine-tune's adapter (``<adapter>.fast/<mode>``, so it goes
    with the job's files), and ``<models_dir>/fast/<name>-<hash of its folder>/<mode>`` for a base model."""
    if adapter is not None:
        return adapter.parent / f"{adapter.name}.fast" / mode
    digest = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:12]
    return models_dir / "fast" / f"{checkpoint.name}-{digest}" / mode


def is_current(target: Path, stamp: dict[str, object]) -> bool:
    try:
        return json.loads((target / STAMP_FILE).read_text()) == stamp
    except (OSError, ValueError):
        return False


def current_fast(models_dir: Path, checkpoint: Path, adapter: Path | None, mode: str) -> Path | None:
    """The model's fast folder if it is converted and its source has not changed since; None otherwise."""
    target = cache_dir(models_dir, checkpoint, adapter, mode)
    return target if is_current(target, source_stamp(checkpoint, adapter, mode)) else None


def ensure_fast(models_dir: Path, checkpoint: Path, adapter: Path | None, mode: str, *, model_id: str,
                progress: ProgressCallback | None = None, before: Callable[[], None] | None = None) -> Path:
    """The model (base ``checkpoint`` plus ``adapter``) in the fast format, converting it if it is missing or its
    source changed since; ``before`` runs first when a conversion is needed (a check that may refuse it)."""
    if mode not in FAST_MODES:
        raise InputError(f"engine mode {mode!r}: use one of {', '.join(FAST_MODES)}", param="mode")
    current = current_fast(models_dir, checkpoint, adapter, mode)
    if current is not None:
        return current
    target = cache_dir(models_dir, checkpoint, adapter, mode)
    stamp = source_stamp(checkpoint, adapter, mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes wanting the same conversion: the second waits for the first, then finds it done.
    with (target.parent / f".{mode}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current(target, stamp):
            return target
        if before is not None:
            before()
        return _convert(target, checkpoint, adapter, mode, stamp, model_id, progress)


def _convert(target: Path, checkpoint: Path, adapter: Path | None, mode: str, stamp: dict[str, object],
             model_id: str, progress: ProgressCallback | None) -> Path:
    failed = target.parent / f"{mode}-{FAILED_FILE}"
    try:
        previous = json.loads(failed.read_text())
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous.get("stamp") == stamp:
        raise FastConversionError(previous.get("reason", "the conversion failed before"))
    report = progress or (lambda done, total, what: None)
    report(0, 1, f"converting {model_id} for the fast engine ({mode}, once)")
    work = Path(tempfile.mkdtemp(prefix=f".{mode}-", dir=target.parent))
    try:
        command = [sys.executable, "-m", "tuneloop.engine.convert", "--checkpoint", str(checkpoint),
                   "--out", str(work / "model"), "--mode", mode]
        if adapter is not None:
            command += ["--adapter", str(adapter)]
        log = work / "convert.log"
        with log.open("w") as handle:
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        if done.returncode != 0:
            lines = log.read_text(errors="replace").strip().splitlines()
            reason = next((line for line in reversed(lines) if "Error" in line or "error" in line),
                          lines[-1] if lines else f"exit status {done.returncode}")
            reason = f"model {model_id!r} cannot be converted for the fast engine: {reason.strip()[:300]}"
            failed.write_text(json.dumps({"stamp": stamp, "reason": reason}))
            raise FastConversionError(reason)
        (work / "model" / STAMP_FILE).write_text(json.dumps(stamp))
        old = target.with_name(f".{mode}-old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        (work / "model").rename(target)
        shutil.rmtree(old, ignore_errors=True)
        failed.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(1, 1, f"converted {model_id} for the fast engine ({mode})")
    return target


def _merge(checkpoint: Path, adapter: Path, out: Path) -> None:
    """Base + LoRA adapter, merged, saved as a plain checkpoint (with the base's tokenizer) in ``out``."""
    import warnings

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), local_files_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True).save_pretrained(str(out))


def main(argv: list[str] | None = None) -> None:
    """The child process: merge (if there is an adapter), then run onnxruntime-genai's builder."""
    parser = argparse.ArgumentParser(description="Convert a checkpoint (plus a LoRA adapter) for the fast engine.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=FAST_MODES, required=True)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="merge-", dir=args.out.parent))
    try:
        source = args.checkpoint
        if args.adapter is not None:
            source = scratch / "merged"
            _merge(args.checkpoint, args.adapter, source)
        precision, extra = BUILD_OPTIONS[args.mode]
        built = subprocess.run(builder_command(source, args.out, precision, extra, scratch / "cache"),
                               check=False).returncode
        if built == 0:
            model_file = model_path(args.out)
            last_position_logits(model_file)
            sliding_window(model_file, args.out / "genai_config.json", json.loads((source / "config.json").read_text()))
        sys.exit(built)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def builder_command(source: Path, out: Path, precision: str, extra: list[str], cache: Path) -> list[str]:
    """onnxruntime-genai's model builder, for a CPU, as a command line (``extra``: its ``key=value`` options)."""
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(out),
               "-p", precision, "-e", "cpu", "-c", str(cache)]
    return command + (["--extra_options", *extra] if extra else [])


def model_path(folder: Path) -> Path:
    """The ONNX file of a converted model, as its ``genai_config.json`` names it."""
    config = json.loads((folder / "genai_config.json").read_text())
    return folder / config["model"]["decoder"].get("filename", "model.onnx")


def sliding_window(model_file: Path, genai_config: Path, config: dict[str, Any]) -> int:
    """Give every layer that attends over a sliding window in transformers that window in the converted model too.

    The builder leaves it out for some architectures (Mistral's and Phi-3's ``sliding_window`` apply to every
    layer, and no layer gets it), and those models then attend further back than they were trained to once a
    conversation is longer than the window (2,047 tokens for Phi-3-mini-4k). The window goes on each such layer's
    GroupQueryAttention (``local_window_size``), and its size into ``genai_config.json``, where the engine reads the
    least cache it needs. Returns how many layers were changed."""
    import re

    import onnx
    from onnx import helper

    window = config.get("sliding_window")
    if not isinstance(window, int) or window <= 0 or config.get("use_sliding_window") is False:
        return 0
    kinds = config.get("layer_types")  # "sliding_attention" or "full_attention" per layer, where the config says
    model = onnx.load(str(model_file), load_external_data=False)
    changed = 0
    for node in model.graph.node:
        layer = re.search(r"layers\.(\d+)/", node.name)
        if node.op_type != "GroupQueryAttention" or layer is None:
            continue
        if kinds and (int(layer.group(1)) >= len(kinds) or kinds[int(layer.group(1))] != "sliding_attention"):
            continue
        attributes = {a.name: a for a in node.attribute}
        if "local_window_size" in attributes and attributes["local_window_size"].i > 0:
            continue  # the builder gave it its window
        if "local_window_size" in attributes:
            attributes["local_window_size"].i = window
        else:
            node.attribute.append(helper.make_attribute("local_window_size", window))
        changed += 1
    if changed:
        onnx.save(model, str(model_file))
    settings = json.loads(genai_config.read_text())
    decoder = settings["model"]["decoder"]
    if changed or "sliding_window" in decoder:
        decoder.setdefault("sliding_window", {})["window_size"] = window
        genai_config.write_text(json.dumps(settings, indent=4))
    return changed


def last_position_logits(model_file: Path) -> bool:
    """Make the model compute the logits of each row's last position only (False: left as it was).

    Only the last position of a prompt is ever sampled; the others' logits cost a third of reading a short prompt
    (the vocabulary's matrix product for every token) and prompt × vocabulary floats of memory (1.5 GB for 8,000
    tokens of a 49k vocabulary). In front of the output's last matrix product, each row's hidden state at its last
    position is picked: ``min(sum(attention_mask) - 1, sequence_length - 1)``, which is the last token of each
    prompt when right-padded prompts are read together, and the one new token of each row in a decoding step.
    What follows the product (a soft cap, say) works on the one position as it did on all."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inputs = {i.name for i in graph.input}
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get("logits")
    while node is not None and node.op_type not in ("MatMul", "MatMulNBits", "Gemm"):
        node = producers.get(node.input[0])
    if node is None or opset < 13 or not {"input_ids", "attention_mask"} <= inputs:
        return False
    name = "/tuneloop/last_position"
    constants = {"one": np.array(1, np.int64), "one_1d": np.array([1], np.int64), "zero_1d": np.array([0], np.int64),
                 "two_1d": np.array([2], np.int64), "three_1d": np.array([3], np.int64),
                 "axes_1_2": np.array([1, 2], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(v, f"{name}/{k}") for k, v in constants.items())

    def c(key: str) -> str:
        return f"{name}/{key}"

    hidden = node.input[0]
    steps = [  # (op, inputs, output, attributes)
        ("ReduceSum", ["attention_mask", c("one_1d")], "tokens", {"keepdims": 0}),
        ("Sub", [c("tokens"), c("one")], "last_in_mask", {}),
        ("Shape", ["input_ids"], "ids_shape", {}),
        ("Gather", [c("ids_shape"), c("one")], "length", {"axis": 0}),
        ("Sub", [c("length"), c("one")], "last_in_input", {}),
        ("Min", [c("last_in_mask"), c("last_in_input")], "index", {}),
        ("Unsqueeze", [c("index"), c("axes_1_2")], "index_3d", {}),
        ("Shape", [hidden], "hidden_shape", {}),
        ("Slice", [c("hidden_shape"), c("zero_1d"), c("one_1d")], "batch", {}),
        ("Slice", [c("hidden_shape"), c("two_1d"), c("three_1d")], "width", {}),
        ("Concat", [c("batch"), c("one_1d"), c("width")], "picked_shape", {"axis": 0}),
        ("Expand", [c("index_3d"), c("picked_shape")], "indices", {}),
        ("GatherElements", [hidden, c("indices")], "picked", {"axis": 1}),
    ]
    where = list(graph.node).index(node)
    for offset, (op, args, out, attributes) in enumerate(steps):
        graph.node.insert(where + offset, helper.make_node(op, args, [c(out)], name=c(out), **attributes))
    node.input[0] = c("picked")
    for output in graph.output:
        if output.name == "logits" and len(output.type.tensor_type.shape.dim) == 3:
            output.type.tensor_type.shape.dim[1].ClearField("dim_param")
            output.type.tensor_type.shape.dim[1].dim_value = 1  # engines read it: one position per row
    onnx.save(model, str(model_file))
    return True


if __name__ == "__main__":
    main()
