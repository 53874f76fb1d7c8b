"""Local text generation with transformers + torch, on the device ``hardware.choose`` picks (the CPU here).

A small decode loop over the model's forward pass with a KV cache: it streams token by token, can
be stopped between any two tokens (Ctrl-C in the chat, a cancelled request), honours stop strings,
and never asks the network for anything.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.engine.template import as_given
from tuneloop.engine.weights import offline_environment
from tuneloop.errors import ContextLengthError, ModelLoadError

Message = dict[str, Any]


@dataclass
class GenerationResult:
    """What one generation produced, filled in while it streams."""

    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None  # "stop", "length" or "interrupted"
    first_token_seconds: float | None = None
    seconds: float = 0.0
    dropped_messages: int = 0  # oldest turns left out to fit the context window


@dataclass
class TextStream:
    """Iterate to get text pieces as they are generated; ``result`` is complete once exhausted."""

    _pieces: Iterator[str]
    result: GenerationResult = field(default_factory=GenerationResult)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close:
            close()

    def read(self) -> GenerationResult:
        for _ in self._pieces:
            pass
        return self.result


class FifoLock:
    """A lock handed over in the order it was asked for (``threading.Lock`` is not fair): concurrent replies on the
    reference engine are generated one at a time, first come first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    def __enter__(self) -> None:
        me = object()
        with self._cond:
            self._waiting.append(me)
            try:
                self._cond.wait_for(lambda: not self._held and self._waiting[0] is me)
            except BaseException:  # Ctrl-C while waiting: the next in line must not wait for us
                self._waiting.remove(me)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


class ChatEngine:
    """What the local engines share: a conversation is fitted to the context window (the oldest turns left out
    first), then the engine's ``_decode`` streams the reply to its prompt."""

    context_window: int

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        raise NotImplementedError

    def _decode(self, prompt_ids: list[int], result: GenerationResult, max_tokens: int, temperature: float,
                top_p: float, stop: list[str], seed: int | None,
                should_stop: Callable[[], bool] | None) -> Iterator[str]:
        raise NotImplementedError

    def fit_to_context(self, messages: Sequence[Message], max_tokens: int) -> tuple[list[int], int]:
        """Token ids of the prompt, leaving out the oldest turns if the whole would not fit."""
        return fit_to_context(self.encode_chat, messages, self.context_window, max_tokens)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TextStream:
        """Generate a reply to chat ``messages``; greedy when ``temperature`` is 0."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        prompt_ids, dropped = self.fit_to_context(messages, max_tokens)
        result = GenerationResult(tokens_in=len(prompt_ids), dropped_messages=dropped)
        pieces = self._decode(prompt_ids, result, max_tokens, temperature, top_p, list(stop or []), seed,
                              should_stop)
        return TextStream(pieces, result)


class LocalEngine(ChatEngine):
    """One loaded causal LM and its tokenizer. Thread-safe: one generation at a time, in the order asked."""

    def __init__(self, checkpoint: Path, adapter: Path | None = None, *, device: str | None = None,
                 model_id: str | None = None) -> None:
        offline_environment()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from tuneloop.hardware import choose
        from tuneloop.models.inspection import check_fits, count_parameters

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self._torch = torch
        self.plan = choose(device)
        name = model_id or checkpoint.name
        check_fits(name, count_parameters(checkpoint), self.plan, purpose="load")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                str(checkpoint), local_files_only=True, dtype=self.plan.torch_dtype
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"model {name!r}: cannot load the checkpoint in {checkpoint}: {exc}; if it was converted by "
                "tuneloop, delete that folder and run again to convert the model anew"
            ) from exc
        if adapter is not None:
            # A fine-tuned model is the base plus a LoRA adapter; merged once, it generates as fast as the base.
            import warnings

            from peft import PeftModel

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes, via peft
                    self.model = PeftModel.from_pretrained(self.model, str(adapter)).merge_and_unload()
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load the fine-tuned adapter in {adapter}: {exc}") from exc
        self.adapter = adapter
        self.model.to(self.plan.device)
        self.model.eval()
        self.checkpoint = checkpoint
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        # The end of a turn: what generation_config says, and the tokenizer's eos (the chat template's end of turn).
        eos = self.model.generation_config.eos_token_id
        ends = set(eos if isinstance(eos, list) else [eos])
        ends.add(self.tokenizer.eos_token_id)
        self.eos_token_ids = {e for e in ends if e is not None}
        self._lock = FifoLock()

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            as_given(self.tokenizer, messages), add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(
        self,
        prompt_ids: list[int],
        result: GenerationResult,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        seed: int | None,
        should_stop: Callable[[], bool] | None,
    ) -> Iterator[str]:
        torch = self._torch
        generator = None
        if temperature > 0 and seed is not None:
            generator = torch.Generator(device=self.plan.device).manual_seed(seed)
        started = time.perf_counter()
        with self._lock, torch.inference_mode():
            try:
                yield from emit_pieces(self._tokens(prompt_ids, max_tokens, temperature, top_p, generator, should_stop),
                                       lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
                                       self.eos_token_ids, stop, result, started, max_tokens)
            finally:
                result.seconds = time.perf_counter() - started

    def _tokens(self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float, generator: Any,
                should_stop: Callable[[], bool] | None) -> Iterator[int]:
        """The next token, one forward pass at a time with a KV cache, until ``max_tokens`` or ``should_stop``."""
        torch = self._torch
        from transformers import DynamicCache

        cache = DynamicCache()
        device = self.plan.device
        inputs = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        for _ in range(max_tokens):
            if should_stop is not None and should_stop():
                return
            out = self.model(input_ids=inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            token = self._pick(out.logits[0, -1], temperature, top_p, generator)
            yield token
            inputs = torch.tensor([[token]], dtype=torch.long, device=device)

    def complete_batch(self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 64, batch_size: int = 16,
                       on_answer: Callable[[int], None] | None = None) -> list[str]:
        """Greedy replies to many conversations, decoded together in left-padded batches of similar lengths
        (evals: many short questions). ``on_answer(n)`` is called as each batch of ``n`` finishes."""
        prompts = [self.fit_to_context(c, max_tokens)[0] for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        answers: list[str] = [""] * len(prompts)
        with self._lock, self._torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                outputs = greedy_batch(self.model, self.tokenizer, [prompts[i] for i in chunk], max_tokens,
                                       self.plan.device, eos=sorted(self.eos_token_ids))
                for i, ids in zip(chunk, outputs, strict=True):
                    answers[i] = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                if on_answer is not None:
                    on_answer(len(chunk))
        return answers

    def _pick(self, logits: Any, temperature: float, top_p: float, generator: Any) -> int:
        torch = self._torch
        if temperature <= 0:
            return int(torch.argmax(logits).item())
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        if top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
            sorted_probs = sorted_probs * keep
            choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
            return int(order[choice].item())
        return int(torch.multinomial(probs, 1, generator=generator).item())


def greedy_batch(model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_tokens: int, device: str, *,
                 eos: list[int] | None = None) -> list[list[int]]:
    """The greedy continuation token ids of each prompt (token ids), decoded together, left-padded; rows that
    finished early end with the end-of-turn token and padding."""
    import torch

    pad = tokenizer.pad_token_id
    if pad is None:
        pad = eos[0] if eos else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    options: dict[str, Any] = {"eos_token_id": eos} if eos else {}
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                             temperature=None, top_p=None, top_k=None, pad_token_id=pad, **options)
    return [row[width:].tolist() for row in out]


def emit_pieces(tokens: Iterator[int], decode: Callable[[list[int]], str], eos_token_ids: set[int], stop: list[str],
                result: GenerationResult, started: float, max_tokens: int) -> Iterator[str]:
    """Text pieces from an engine's tokens, filling ``result``: the reply ends at an end-of-turn token ("stop"), at
    a stop string (cut before it, "stop"), after ``max_tokens`` ("length"), or when the tokens end early because
    the engine was asked to stop ("interrupted"). An incomplete multi-byte character waits for its next token."""
    generated: list[int] = []
    emitted = ""
    result.finish_reason = "interrupted"
    for token in tokens:
        if result.first_token_seconds is None:
            result.first_token_seconds = time.perf_counter() - started
        if token in eos_token_ids:
            result.finish_reason = "stop"
            return
        generated.append(token)
        result.tokens_out = len(generated)
        text = decode(generated)
        if not text.endswith("\ufffd"):
            hit = first_stop(text, stop)
            if hit is not None:
                text = text[:hit]
            if len(text) > len(emitted) and text.startswith(emitted):
                piece = text[len(emitted):]
                emitted = text
                result.text = emitted
                yield piece
            if hit is not None:
                result.finish_reason = "stop"
                return
    if len(generated) >= max_tokens:
        result.finish_reason = "length"


def fit_to_context(encode_chat: Callable[[Sequence[Message]], list[int]], messages: Sequence[Message],
                   context_window: int, max_tokens: int) -> tuple[list[int], int]:
    """Token ids of the prompt and how many messages were left out: the oldest turns go (a user turn takes its reply
    with it, the system message stays) until the prompt and ``max_tokens`` fit in ``context_window``."""
    messages = list(messages)
    budget = context_window - max_tokens
    dropped = 0
    while True:
        ids = encode_chat(messages)
        if len(ids) <= budget:
            return ids, dropped
        system = [m for m in messages[:1] if m.get("role") == "system"]
        rest = messages[len(system):]
        if len(rest) <= 1:
            raise ContextLengthError(
                f"the message is {len(ids)} tokens, more than the {budget} that fit in "
                f"{context_window}-token context with max_tokens={max_tokens}; shorten it or lower max_tokens"
            )
        cut = 2 if len(rest) > 2 and rest[0].get("role") == "user" else 1
        messages = system + rest[cut:]
        dropped += cut


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in ``text``, or None."""
    positions = [text.find(s) for s in stop if s]
    positions = [p for p in positions if p >= 0]
    return min(positions) if positions else None


_engines: dict[tuple[Path, Path | None, str | None], LocalEngine] = {}
_engines_lock = threading.Lock()


def get_engine(checkpoint: Path, adapter: Path | None = None, *, device: str | None = None,
               model_id: str | None = None) -> LocalEngine:
    """The process-wide engine for a checkpoint (plus a LoRA adapter), loaded on first use."""
    key = (checkpoint.resolve(), adapter.resolve() if adapter is not None else None, (device or "auto").lower())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = LocalEngine(key[0], key[1], device=device, model_id=model_id)
            _engines[key] = engine
        return engine
