"""Tiny causal LMs with random weights, one per architecture family, built from configs (no download).

Each has 2 layers, a hidden size of 64 and SmolLM2's tokenizer (with its ChatML chat template), so every step a
real model of that architecture takes (loading, LoRA on its own layer names, merging, GGUF tensor names and
permutations) runs for real, in seconds. Their words are noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma2", "mistral", "phi3")


def _config(kind: str, tokenizer: Any) -> Any:
    import transformers

    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 1024, "initializer_range": 0.2, **ids}
    if kind == "llama":
        return transformers.LlamaConfig(**small, head_dim=16, tie_word_embeddings=True)
    if kind == "qwen2":
        return transformers.Qwen2Config(**small, tie_word_embeddings=False)
    if kind == "qwen3":
        # 128, as in every Qwen3: transformers' GGUF reader assumes it (it does not read attention.key_length).
        return transformers.Qwen3Config(**small, head_dim=128, tie_word_embeddings=True)
    if kind == "gemma2":
        # Defaults kept where GGUF has no field for them (query_pre_attn_scalar = head_dim = 256, the soft caps).
        return transformers.Gemma2Config(**small, tie_word_embeddings=True)
    if kind == "mistral":
        return transformers.MistralConfig(**small, head_dim=16, sliding_window=None, tie_word_embeddings=False)
    if kind == "phi3":
        return transformers.Phi3Config(**small, original_max_position_embeddings=1024, tie_word_embeddings=False)
    raise ValueError(kind)


def build_tiny_model(kind: str, tokenizer_dir: Path, target: Path, seed: int = 0, **config: Any) -> Path:
    """Save a random-weight ``kind`` model with the tokenizer of ``tokenizer_dir`` in ``target``; ``config`` sets
    fields of its config (``sliding_window=64``, say)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    settings = _config(kind, tokenizer)
    for name, value in config.items():
        setattr(settings, name, value)
    model = AutoModelForCausalLM.from_config(settings).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target
