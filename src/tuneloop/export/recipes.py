"""How to serve an export: the commands for vLLM, llama.cpp and Ollama (and the Modelfile Ollama needs)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneloop.export import ExportResult

# Ollama imports safetensors LoRA adapters for these architectures only (its docs, 2026); others need a GGUF.
OLLAMA_ADAPTER_ARCHITECTURES = ("llama", "mistral", "gemma", "gemma2", "gemma3")
# Ollama has no way to take a jinja template; a Go TEMPLATE written from it would be a guess that nothing here checks.
OLLAMA_CAVEAT = ("# Ollama runs Go templates, not this export's jinja chat template: it picks a built-in one for the "
                 "model, which may prompt it differently from training (see `ollama show --template`)")


def _q(path: object) -> str:
    return shlex.quote(str(path))


def _model_type(result: ExportResult) -> str:
    try:
        return str(json.loads((result.base_path / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError):
        return ""


def recipes(result: ExportResult) -> dict[str, str]:
    """Engine → what to run. Paths are absolute, so the commands work from any folder."""
    out = result.path.resolve()
    base = result.base_path.resolve()
    name = result.model
    found: dict[str, str] = {}
    if result.format == "peft":
        rank = _lora_rank(out)
        chat = _chat_template(out)
        found["vllm"] = (f"vllm serve {_q(base)} --enable-lora --max-lora-rank {rank} "
                         f"--lora-modules {_q(f'{name}={out}')}{chat}\n"
                         f"# or, to a running server started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True:\n"
                         f"curl -X POST localhost:8000/v1/load_lora_adapter -H 'Content-Type: application/json' "
                         f"-d {_q(json.dumps({'lora_name': name, 'lora_path': str(out)}))}")
        if _model_type(result) in OLLAMA_ADAPTER_ARCHITECTURES:
            found["ollama-modelfile"] = f"FROM {base}\nADAPTER {out}\n{OLLAMA_CAVEAT}\n"
            found["ollama"] = f"ollama create {_ollama_name(name)} -f {_q(out / 'Modelfile')}\n{OLLAMA_CAVEAT}"
        found["llama.cpp"] = "llama.cpp takes GGUF files: tuneloop export " + _q(name) + " --format gguf -o DIR"
    elif result.format == "merged":
        found["vllm"] = f"vllm serve {_q(out)} --served-model-name {_q(name)}{_chat_template(out)}"
        found["transformers"] = f"AutoModelForCausalLM.from_pretrained({str(out)!r})"
        found["ollama"] = (f"printf 'FROM {out}\\n' > Modelfile && ollama create {_ollama_name(name)} -f Modelfile\n"
                           f"{OLLAMA_CAVEAT}")
        found["llama.cpp"] = "llama.cpp takes GGUF files: tuneloop export " + _q(name) + " --format gguf -o DIR"
    else:
        gguf = next(p for p in result.files if p.suffix == ".gguf").resolve()
        # --jinja: the template in the GGUF's metadata, the trained one (export/gguf.py writes it).
        found["llama.cpp"] = f"llama-server -m {_q(gguf)} --jinja --alias {_q(name)}"
        found["ollama-modelfile"] = f"FROM {gguf}\n{OLLAMA_CAVEAT}\n"
        found["ollama"] = f"ollama create {_ollama_name(name)} -f {_q(out / 'Modelfile')}\n{OLLAMA_CAVEAT}"
        # The base's tokenizer (vLLM's own reading of a GGUF's is slow), with the trained template, not the base's.
        found["vllm"] = (f"vllm serve {_q(gguf)} --tokenizer {_q(base)} --served-model-name {_q(name)}"
                         f"{_chat_template(out)}")
    return found


def _chat_template(out: Path) -> str:
    """vLLM's option for the template the export carries: conversations rendered as tuneloop trained them (no
    default system prompt added); nothing where the model has no template."""
    template = out / "chat_template.jinja"
    return f" --chat-template {_q(template)}" if template.is_file() else ""


def safe_name(model: str) -> str:
    """A model id as a file name: letters, digits, '.', '-' and '_' (what Ollama's model names allow too)."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in model).strip("-")


def _ollama_name(model: str) -> str:
    return safe_name(model.lower())


def _lora_rank(adapter: Path) -> int:
    try:
        return int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError):
        return 16
