"""What a model folder or GGUF file holds, read cheaply (config and file headers), and whether it can be used.

* :func:`describe` reads ``config.json`` and the safetensors headers (or the GGUF's metadata): architecture,
  parameter count, size on disk. No torch, no weights: ``tuneloop models`` stays quick.
* :func:`check_usable` refuses, in one line naming the model, a folder without weights or tokenizer, without
  a chat template, or whose architecture transformers cannot load as a causal LM.
* :func:`check_fits` refuses weights that do not fit in the memory of the chosen device, with the estimate.
* :func:`lora_targets` finds the linear layers of the blocks from the model's own modules (on the meta
  device): never the embeddings, never ``lm_head``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.errors import ModelTooLargeError, ModelUnusableError
from tuneloop.util.hardware import DevicePlan, available_memory

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
GIB = 1024**3
# Bytes per parameter on disk, by safetensors dtype.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class Description:
    architecture: str  # "LlamaForCausalLM", or the GGUF's general.architecture
    model_type: str  # "llama", "qwen2", …
    parameters: int | None
    bytes_on_disk: int
    context: int | None
    tied_embeddings: bool | None


def weight_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for pattern in WEIGHT_PATTERNS:
        found.extend(p for p in sorted(folder.glob(pattern)) if p not in found)
    return found


def _safetensors_parameters(path: Path) -> int:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for size in entry["shape"]:
            count *= int(size)
        total += count
    return total


def read_config(folder: Path, model_id: str) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelUnusableError(f"model {model_id!r}: {folder} has no config.json; give the folder of a Hugging Face "
                                 "model (as save_pretrained writes it) or a .gguf file") from None
    except (OSError, ValueError) as exc:
        raise ModelUnusableError(f"model {model_id!r}: cannot read {path}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelUnusableError(f"model {model_id!r}: {path} is not a JSON object")
    return config


def describe(path: Path, model_id: str) -> Description:
    """Architecture, size and context of a model folder or GGUF file, from its headers only."""
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _describe_gguf(path, model_id)
    config = read_config(path, model_id)
    files = weight_files(path)
    parameters: int | None = None
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    if safetensors:
        try:
            parameters = sum(_safetensors_parameters(f) for f in safetensors)
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise ModelUnusableError(f"model {model_id!r}: cannot read the weights in {path}: {exc}") from None
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    return Description(
        architecture=(config.get("architectures") or ["?"])[0],
        model_type=str(config.get("model_type", "?")),
        parameters=parameters,
        bytes_on_disk=sum(f.stat().st_size for f in files),
        context=text.get("max_position_embeddings"),
        tied_embeddings=text.get("tie_word_embeddings"),
    )


def _describe_gguf(path: Path, model_id: str) -> Description:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ModelUnusableError(f"model {model_id!r}: {path} is not a readable GGUF file: {exc}") from None

    def field(name: str) -> Any:
        found = reader.fields.get(name)
        if found is None or not found.data:
            return None
        value = found.parts[found.data[0]]
        return bytes(value).decode("utf-8") if found.types and found.types[0].name == "STRING" else value[0]

    arch = field("general.architecture") or "?"
    context = field(f"{arch}.context_length")
    return Description(
        architecture=str(arch),
        model_type=str(arch),
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        bytes_on_disk=path.stat().st_size,
        context=int(context) if context is not None else None,
        tied_embeddings=all(t.name != "output.weight" for t in reader.tensors),
    )


def check_usable(folder: Path, model_id: str) -> None:
    """Refuse a folder transformers cannot load as a chat model, in one line that says what to do."""
    if not folder.is_dir():
        raise ModelUnusableError(f"model {model_id!r}: {folder} is not a folder or a .gguf file")
    config = read_config(folder, model_id)
    if not weight_files(folder):
        raise ModelUnusableError(f"model {model_id!r}: {folder} has no weights (*.safetensors or pytorch_model*.bin); "
                                 "save the model with save_pretrained into that folder")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        import transformers

        raise ModelUnusableError(
            f"model {model_id!r}: architecture {model_type or '(none given)'!r} in {folder / 'config.json'} is not a "
            f"causal language model that transformers {transformers.__version__} can load; choose a supported model "
            "(Llama, Qwen, Gemma, Mistral, Phi, SmolLM…) or upgrade transformers"
        )
    if not has_chat_template(folder):
        raise ModelUnusableError(
            f"model {model_id!r}: {folder} has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); use the instruct/chat version of the model, or add a template to the folder"
        )


def has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in TEMPLATE_FILES):
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


def parameters_text(count: int | None) -> str:
    """A parameter count as people write it: 134515008 → "135M" ("" when unknown)."""
    if not count:
        return ""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def count_parameters(folder: Path) -> int:
    """Parameters of the model in ``folder``, from the safetensors headers or, failing that, its config."""
    safetensors = [f for f in weight_files(folder) if f.suffix == ".safetensors"]
    if safetensors:
        return sum(_safetensors_parameters(f) for f in safetensors)
    model = meta_model(folder)
    return sum(p.numel() for p in model.parameters())


def meta_model(folder: Path) -> Any:
    """The model built from its config on the meta device: every module, no memory, no weights read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def lora_targets(model: Any) -> list[str]:
    """Names of the linear layers inside the model's repeated blocks (q_proj, qkv_proj, gate_up_proj…).

    Read from the modules themselves, so any architecture works; the embeddings and ``lm_head`` are never
    among them (they are not inside a block), tied or not.
    """
    import torch

    blocks: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            blocks.add(name)
    targets: set[str] = set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parent = next((b for b in blocks if name.startswith(b + ".")), None)
        if parent is not None:
            targets.add(name.rsplit(".", 1)[-1])
    if not targets:
        raise ModelUnusableError(f"found no linear layers in the blocks of {type(model).__name__}; LoRA cannot be "
                                 "applied to this architecture")
    return sorted(targets)


def lora_modules(model: Any, upper: float = 1.0) -> list[str]:
    """Full names of the block linear layers (as :func:`lora_targets`) in the top ``upper`` share of the blocks.

    An adapter on the upper blocks only needs no gradient below them: the backward pass stops at the lowest
    adapted block (half the blocks: a step about a third faster on a CPU).
    """
    import torch

    lists = {name: len(module) for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and len(module) > 0}
    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        outer = min((b for b in lists if name.startswith(b + ".")), key=len, default=None)
        if outer is None:
            continue
        index = name[len(outer) + 1:].split(".", 1)[0]
        if index.isdigit() and int(index) >= int(lists[outer] * (1 - upper)):
            chosen.append(name)
    if not chosen:
        raise ModelUnusableError(f"found no linear layers in the blocks of {type(model).__name__}; LoRA cannot be "
                                 "applied to this architecture")
    return chosen


def training_bytes(parameters: int, plan: DevicePlan, quantize: str | None = None) -> int:
    """About how much memory LoRA fine-tuning needs: the frozen weights, a quarter more for activations,
    the adapter and its optimizer, and a fixed margin."""
    per_parameter = 0.55 if quantize == "4bit" else plan.bytes_per_parameter
    return int(parameters * per_parameter * 1.25 + 0.5 * GIB)


def inference_bytes(parameters: int, plan: DevicePlan) -> int:
    return int(parameters * plan.bytes_per_parameter * 1.1 + 0.25 * GIB)


def check_fits(model_id: str, parameters: int, plan: DevicePlan, *, quantize: str | None = None,
               purpose: str = "fine-tune") -> None:
    """Refuse before anything loads when the weights cannot fit; says the estimate and what is available."""
    needed = training_bytes(parameters, plan, quantize) if purpose == "fine-tune" else inference_bytes(parameters,
                                                                                                       plan)
    free = available_memory(plan)
    if needed <= free:
        return
    where = "GPU memory free" if plan.device == "cuda" else "memory available"
    quantizable = plan.device == "cuda" and quantize is None
    advice = ("use a smaller model, or train it quantized to 4 bits (QLoRA)" if quantizable
              else "use a smaller model, or a machine with a GPU")
    raise ModelTooLargeError(
        f"model {model_id!r} ({parameters / 1e9:.2f}B parameters) needs about {needed / GIB:.1f} GiB to {purpose} on "
        f"{plan.describe()}, and this machine has {free / GIB:.1f} GiB {where}; {advice}"
    )
