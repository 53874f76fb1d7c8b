"""Local text generation with transformers + torch, on the device ``hardware.choose`` picks (the CPU here).

A small decode loop over the model's forward pass with a KV cache: it streams token by token, can
be stopped between any two tokens (Ctrl-C in the chat, a cancelled request), honours stop strings,
and never asks the network for anything.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneloop.engine.base import ChatEngine, Message, emit_pieces
from tuneloop.engine.grammar import Grammars
from tuneloop.engine.inspection import check_fits, count_parameters
from tuneloop.engine.sampling import Sampler
from tuneloop.engine.template import as_given
from tuneloop.engine.weights import offline_environment
from tuneloop.errors import ModelLoadError
from tuneloop.generation import GenerationResult
from tuneloop.structured import Tool, for_template, template_knows_tools
from tuneloop.util.hardware import choose


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


class LocalEngine(ChatEngine):
    """One loaded causal LM and its tokenizer. Thread-safe: one generation at a time, in the order asked."""

    def __init__(self, checkpoint: Path, adapter: Path | None = None, *, device: str | None = None,
                 model_id: str | None = None) -> None:
        offline_environment()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

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
        self.grammars = Grammars(self._tokenizer_json, self.eos_token_ids)
        self._lock = FifoLock()

    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> list[int]:
        messages, tool_list = for_template(messages, tools, template_knows_tools(self.tokenizer.chat_template))
        encoded = self.tokenizer.apply_chat_template(
            as_given(self.tokenizer, messages), tools=tool_list, add_generation_prompt=True, tokenize=True,
            return_dict=True)
        return list(encoded["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _tokenizer_json(self) -> str:
        """The tokenizer as ``tokenizer.json`` would hold it, added tokens included (what llguidance reads)."""
        import copy

        backend = copy.copy(self.tokenizer.backend_tokenizer)
        backend.no_padding()
        backend.no_truncation()
        return backend.to_str()

    def _decode(self, prompt_ids: list[int], result: GenerationResult, sampler: Sampler,
                should_stop: Callable[[], bool] | None) -> Iterator[str]:
        torch = self._torch
        started = time.perf_counter()
        options = sampler.options
        with self._lock, torch.inference_mode():
            try:
                yield from emit_pieces(self._tokens(prompt_ids, options.max_tokens, sampler, should_stop),
                                       lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
                                       self.eos_token_ids, list(options.stop), result, started, options.max_tokens)
            finally:
                result.seconds = time.perf_counter() - started

    def _tokens(self, prompt_ids: list[int], max_tokens: int, sampler: Sampler,
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
            token = sampler.pick(out.logits[0, -1].float().cpu().numpy())
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


_engines: OrderedDict[tuple[Path, Path | None, str | None], LocalEngine] = OrderedDict()
_engines_lock = threading.Lock()


def get_engine(checkpoint: Path, adapter: Path | None = None, *, device: str | None = None,
               model_id: str | None = None, keep: int = 4) -> LocalEngine:
    """The process-wide engine for a checkpoint (plus a LoRA adapter), loaded on first use; at most ``keep`` are
    kept, the one used least recently let go."""
    key = (checkpoint.resolve(), adapter.resolve() if adapter is not None else None, (device or "auto").lower())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = LocalEngine(key[0], key[1], device=device, model_id=model_id)
            _engines[key] = engine
        _engines.move_to_end(key)
        while len(_engines) > max(1, keep):
            _engines.popitem(last=False)
        return engine
