"""A Hugging Face model folder (safetensors) written as a GGUF file for llama.cpp and Ollama, with the ``gguf``
package's own ``GGUFWriter``, ``TensorNameMap`` and ``SpecialVocab``.

What goes where follows llama.cpp's ``convert_hf_to_gguf.py``: the hyperparameters each architecture needs, the
tensor names, the Q/K row permutation of Llama-family attention (llama.cpp's rotary layout), Gemma's norm
weights stored as ``1 + w``, Llama 3's ``rope_freqs``, and the tokenizer (byte-level BPE with its pre-tokenizer
recognised by the same hash, or SentencePiece-style BPE through ``LlamaHfVocab``). Tensors are streamed one at a
time, so memory stays at one tensor whatever the model's size.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.engine.template import given_template
from tuneloop.errors import GGUFExportError

# HF model_type → (GGUF architecture, permute Q/K rows, Gemma norm shift)
ARCHITECTURES: dict[str, tuple[str, bool, bool]] = {
    "llama": ("llama", True, False),
    "mistral": ("llama", True, False),
    "qwen2": ("qwen2", False, False),
    "qwen3": ("qwen3", False, False),
    "gemma2": ("gemma2", False, True),
    "phi3": ("phi3", False, False),
}
TYPES = ("f16", "q8_0", "f32")


@dataclass
class GGUFResult:
    path: Path
    architecture: str
    tensors: int
    notes: list[str]
    chat_template: str | None = None  # the template the file carries (tokenizer.chat_template), as trained


@cache
def _pre_tokenizer_hashes() -> dict[str, Any]:
    return json.loads(resources.files("tuneloop.export").joinpath("bpe_pre.json").read_text("utf-8"))


def _permute(weights: Any, n_head: int, n_head_kv: int) -> Any:
    """llama.cpp's ``LlamaModel.permute``: HF's rotary halves → llama.cpp's interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(folder: Path, target: Path, *, name: str, qtype: str = "f16",
               progress: Callable[[int, int], None] | None = None) -> GGUFResult:
    """Write the model in ``folder`` (config.json, safetensors, tokenizer) as one GGUF file ``target``."""
    import gguf

    if qtype not in TYPES:
        raise GGUFExportError(f"GGUF type {qtype!r}: use {', '.join(TYPES)}")
    config = json.loads((folder / "config.json").read_text("utf-8"))
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise GGUFExportError(
            f"model {name!r}: GGUF export knows the architectures {', '.join(ARCHITECTURES)}, not {model_type!r}; "
            "export it merged and convert that folder with llama.cpp's convert_hf_to_gguf.py"
        )
    arch_name, permute, norm_shift = ARCHITECTURES[model_type]
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    blocks = int(config["num_hidden_layers"])
    tensor_map = gguf.get_tensor_name_map(arch, blocks)
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "f32": gguf.LlamaFileType.ALL_F32}[qtype]
    notes: list[str] = []
    writer = gguf.GGUFWriter(str(target), arch_name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    _hyperparameters(writer, config, model_type, blocks, ftype)
    template = _vocabulary(writer, folder, config, notes)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tied = bool(config.get("tie_word_embeddings", model_type == "gemma2"))
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)

    def tensors() -> Iterator[tuple[str, tuple[int, ...], Callable[[], np.ndarray]]]:
        from safetensors import safe_open

        for extra_name, values in _extra_tensors(config, model_type):
            yield extra_name, values.shape, lambda values=values: values
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
            for key, shape in shapes.items():
                if key.endswith(".rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
                    continue
                mapped = tensor_map.get_name(key, try_suffixes=(".weight", ".bias"))
                if mapped is None:
                    raise GGUFExportError(f"model {name!r}: no GGUF name for tensor {key!r} of a {model_type} model")

                def load(file: Path = file, key: str = key) -> np.ndarray:
                    with safe_open(str(file), framework="pt") as handle:
                        data = handle.get_tensor(key).float()
                    if permute and key.endswith(("q_proj.weight", "q_proj.bias")):
                        data = _permute(data, n_head, n_head)
                    elif permute and key.endswith(("k_proj.weight", "k_proj.bias")):
                        data = _permute(data, n_head, n_kv)
                    if norm_shift and key.endswith("norm.weight"):
                        data = data + 1
                    return data.numpy()

                yield mapped, shape, load

    # The header lists every tensor (name, shape, type) before any data; then the data follows one at a time.
    encoded: list[tuple[str, Callable[[], np.ndarray], Any]] = []
    for gguf_name, shape, load in tensors():
        kind = _tensor_type(gguf_name, shape, qtype)
        nbytes = _nbytes(shape, kind)
        writer.add_tensor_info(gguf_name, _byte_shape(shape, kind), np.dtype(np.uint8) if _quantized(kind)
                               else np.dtype(np.float16 if kind == gguf.GGMLQuantizationType.F16 else np.float32),
                               nbytes, raw_dtype=kind)
        encoded.append((gguf_name, load, kind))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for i, (_gguf_name, load, kind) in enumerate(encoded):
        writer.write_tensor_data(_convert(load(), kind))
        if progress is not None:
            progress(i + 1, len(encoded))
    writer.close()
    return GGUFResult(target, arch_name, len(encoded), notes, template)


def _quantized(kind: Any) -> bool:
    import gguf

    return kind not in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32)


def _tensor_type(gguf_name: str, shape: tuple[int, ...], qtype: str) -> Any:
    import gguf

    types = gguf.GGMLQuantizationType
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight") or gguf_name.startswith("rope_"):
        return types.F32  # llama.cpp keeps norms, biases and other 1-D tensors in f32
    if qtype == "q8_0":
        block = gguf.GGML_QUANT_SIZES[types.Q8_0][0]
        return types.Q8_0 if shape[-1] % block == 0 else types.F16
    return types.F16 if qtype == "f16" else types.F32


def _byte_shape(shape: tuple[int, ...], kind: Any) -> tuple[int, ...]:
    import gguf

    return tuple(gguf.quant_shape_to_byte_shape(shape, kind)) if _quantized(kind) else shape


def _nbytes(shape: tuple[int, ...], kind: Any) -> int:
    import gguf

    if _quantized(kind):
        return int(np.prod(gguf.quant_shape_to_byte_shape(shape, kind)))
    return int(np.prod(shape)) * (2 if kind == gguf.GGMLQuantizationType.F16 else 4)


def _convert(data: np.ndarray, kind: Any) -> np.ndarray:
    import gguf

    if kind == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32)
    if kind == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data.astype(np.float32), kind)


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope = dict(rope.get("full_attention", rope))
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return rope


def _hyperparameters(writer: Any, config: dict[str, Any], model_type: str, blocks: int, ftype: Any) -> None:
    import gguf

    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = config.get("head_dim") or hidden // heads
    rope = _rope(config)
    writer.add_block_count(blocks)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_file_type(ftype)
    if model_type in ("llama", "mistral"):
        writer.add_vocab_size(int(config["vocab_size"]))
        writer.add_rope_dimension_count(int(head_dim))
    if model_type in ("llama", "mistral", "qwen3", "gemma2") and config.get("head_dim"):
        writer.add_key_length(int(head_dim))
        writer.add_value_length(int(head_dim))
    kind, factor = rope.get("rope_type"), rope.get("factor")
    if kind == "linear" and factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    elif kind == "yarn" and factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(factor))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    if model_type == "gemma2":
        writer.add_attn_logit_softcapping(float(config["attn_logit_softcapping"] or 0.0))
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"] or 0.0))
        writer.add_sliding_window(int(config["sliding_window"]))
    if model_type == "phi3":
        rotary = float(rope.get("partial_rotary_factor", config.get("partial_rotary_factor") or 1.0))
        writer.add_rope_dimension_count(int(rotary * hidden) // heads)
        writer.add_rope_scaling_orig_ctx_len(int(config.get("original_max_position_embeddings")
                                                 or config["max_position_embeddings"]))
        writer.add_sliding_window(int(config.get("sliding_window") or 0))


def _extra_tensors(config: dict[str, Any], model_type: str) -> Iterator[tuple[str, np.ndarray]]:
    """Llama 3.1+'s rope frequency factors (``rope_type: llama3``), as llama.cpp computes them."""
    rope = _rope(config)
    if model_type != "llama" or str(rope.get("rope_type", "")).lower() != "llama3":
        return
    base = float(rope["rope_theta"])
    dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi / (1.0 / base ** (i / dim))
        if wavelength < old / high:
            factors.append(1.0)
        elif wavelength > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    yield "rope_freqs.weight", np.array(factors, dtype=np.float32)


def _vocabulary(writer: Any, folder: Path, config: dict[str, Any], notes: list[str]) -> str | None:
    """The tokenizer's fields; returns the chat template written."""
    import gguf

    tokenizer_json = folder / "tokenizer.json"
    try:
        spec = json.loads(tokenizer_json.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise GGUFExportError(f"{folder} has no readable tokenizer.json ({exc}); GGUF export needs a fast tokenizer"
                              ) from None
    model = spec.get("model") or {}
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(
        spec.get("decoder"))
    if model.get("type") == "BPE" and byte_level:
        return _gpt2_vocabulary(writer, folder, config, notes)
    elif model.get("type") == "BPE" and model.get("byte_fallback"):
        vocab = gguf.LlamaHfVocab(folder)
        tokens, scores, types = zip(*vocab.all_tokens(), strict=True)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(list(tokens))
        writer.add_token_scores(list(scores))
        writer.add_token_types(list(types))
        return _add_special(writer, gguf.SpecialVocab(folder, n_vocab=len(tokens)), folder)
    raise GGUFExportError(f"{folder}: GGUF export knows byte-level BPE and SentencePiece-style BPE tokenizers, "
                          f"not this one ({model.get('type')}); export it merged and convert it with "
                          "llama.cpp's convert_hf_to_gguf.py")


def _gpt2_vocabulary(writer: Any, folder: Path, config: dict[str, Any], notes: list[str]) -> str | None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    vocab = tokenizer.get_vocab()
    size = int(config.get("vocab_size") or len(vocab))
    reverse = {index: token for token, index in vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if token in added:
            special = decoder[i].special if i in decoder else False
            types.append(gguf.TokenType.CONTROL if special or (token.startswith("<|") and token.endswith("|>"))
                         else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    table = _pre_tokenizer_hashes()
    digest = hashlib.sha256(str(tokenizer.encode(table["text"])).encode()).hexdigest()
    pre = table["hashes"].get(digest)
    if pre is None:
        pre = "default"
        notes.append("the tokenizer's pre-tokenizer is not one llama.cpp knows by hash; the GGUF says 'default', "
                     "so llama.cpp may split some text differently from transformers")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    return _add_special(writer, gguf.SpecialVocab(folder, load_merges=True), folder, tokenizer)


def _add_special(writer: Any, special: Any, folder: Path, tokenizer: Any = None) -> str | None:
    """The special tokens and the chat template, made to render as tuneloop trained (no default system prompt)."""
    if isinstance(special.chat_template, str):
        from transformers import AutoTokenizer

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        tokenizer.chat_template = special.chat_template
        special.chat_template = given_template(tokenizer)
    special.add_to_gguf(writer, quiet=True)
    return special.chat_template if isinstance(special.chat_template, str) else None
