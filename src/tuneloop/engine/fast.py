"""The fast local engine: onnxruntime-genai over a model converted by :mod:`tuneloop.engine.convert`.

Same contract as :class:`~tuneloop.engine.generation.LocalEngine` (stream token by token, stop between any two
tokens, stop strings, the context window, conversations rendered as given), without torch or transformers:
importing this module and answering costs a fraction of a second, which is what makes ``tuneloop ask`` quick
from a cold start.

Threads follow the load: while a local training job of this home holds the training lock, the engine runs
on one thread (a 2-thread engine beside a training job gets a fifth of its speed, a 1-thread one keeps most);
otherwise on every core. The thread count is looked at before each reply; a change reloads the session
(a fraction of a second).
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneloop.engine.generation import GenerationResult, TextStream, emit_pieces, fit_to_context
from tuneloop.errors import ModelLoadError

Message = dict[str, Any]


def training_running(lock: Path | None) -> bool:
    """True while a local training job holds ``lock`` (the machine-wide training lock of a home)."""
    if lock is None or not lock.exists():
        return False
    try:
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


class FastEngine:
    """One converted model in onnxruntime-genai. Thread-safe: one generation at a time."""

    def __init__(self, folder: Path, *, model_id: str | None = None, training_lock: Path | None = None) -> None:
        import onnxruntime_genai as og

        self._og = og
        self.folder = folder
        self.model_id = model_id or folder.name
        self.training_lock = training_lock
        self.threads: int | None = None
        try:
            config = json.loads((folder / "genai_config.json").read_text())
            self.model = self._load(self._wanted_threads())
            self.tokenizer = og.Tokenizer(self.model)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                f"model {self.model_id!r}: cannot load the fast engine's files in {folder}: {exc}; delete that folder "
                "to convert the model anew, or set TUNELOOP_ENGINE=reference") from exc
        self.context_window = int(config["model"].get("context_length", 2048))
        eos = config["model"].get("eos_token_id")
        self.eos_token_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._empty_system = self._injects_default_system()
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------------------
    def _wanted_threads(self) -> int | None:
        return 1 if training_running(self.training_lock) else None  # None: onnxruntime's default, every core

    def _load(self, threads: int | None) -> Any:
        config = self._og.Config(str(self.folder))
        if threads is not None:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        model = self._og.Model(config)
        self.threads = threads
        return model

    def _follow_load(self) -> None:
        wanted = self._wanted_threads()
        if wanted != self.threads:
            self.model = self._load(wanted)

    # -- prompts -------------------------------------------------------------------------------------------
    def _render(self, messages: Sequence[Message]) -> str:
        return self.tokenizer.apply_chat_template(json.dumps(list(messages)), add_generation_prompt=True)

    def _injects_default_system(self) -> bool:
        """Whether the chat template adds a system prompt of its own when there is none (see ``as_given``)."""
        user = {"role": "user", "content": "Hi"}
        try:
            return len(self._render([user])) > len(self._render([{"role": "system", "content": ""}, user]))
        except RuntimeError:  # a template that refuses a system message injects none either
            return False

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        if self._empty_system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": ""}, *messages]
        return [int(t) for t in self.tokenizer.encode(self._render(messages))]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def fit_to_context(self, messages: Sequence[Message], max_tokens: int) -> tuple[list[int], int]:
        """Token ids of the prompt, leaving out the oldest turns if the whole would not fit."""
        return fit_to_context(self.encode_chat, messages, self.context_window, max_tokens)

    # -- generation ----------------------------------------------------------------------------------------
    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, stop: Sequence[str] | None = None, seed: int | None = None,
               should_stop: Callable[[], bool] | None = None) -> TextStream:
        """Generate a reply to chat ``messages``; greedy when ``temperature`` is 0."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        prompt_ids, dropped = self.fit_to_context(messages, max_tokens)
        result = GenerationResult(tokens_in=len(prompt_ids), dropped_messages=dropped)
        pieces = self._decode(prompt_ids, result, max_tokens, temperature, top_p, list(stop or []), seed, should_stop)
        return TextStream(pieces, result)

    def _search_options(self, length: int, temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
        if temperature <= 0:
            return {"max_length": length, "do_sample": False}
        options: dict[str, Any] = {"max_length": length, "do_sample": True, "temperature": float(temperature),
                                   "top_p": float(top_p), "top_k": 0}
        if seed is not None:
            options["random_seed"] = int(seed)
        return options

    def _decode(self, prompt_ids: list[int], result: GenerationResult, max_tokens: int, temperature: float,
                top_p: float, stop: list[str], seed: int | None,
                should_stop: Callable[[], bool] | None) -> Iterator[str]:
        started = time.perf_counter()
        with self._lock:
            try:
                self._follow_load()
                yield from emit_pieces(self._tokens(prompt_ids, max_tokens, temperature, top_p, seed, should_stop),
                                       self.tokenizer.decode, self.eos_token_ids, stop, result, started, max_tokens)
            finally:
                result.seconds = time.perf_counter() - started

    def _tokens(self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float, seed: int | None,
                should_stop: Callable[[], bool] | None) -> Iterator[int]:
        """The next token from onnxruntime-genai, until ``max_tokens`` or ``should_stop``."""
        params = self._og.GeneratorParams(self.model)
        params.set_search_options(**self._search_options(len(prompt_ids) + max_tokens, temperature, top_p, seed))
        generator = self._og.Generator(self.model, params)
        generator.append_tokens(prompt_ids)
        for _ in range(max_tokens):
            if should_stop is not None and should_stop():
                return
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

    def complete_batch(self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 64,
                       batch_size: int = 16, on_answer: Callable[[int], None] | None = None) -> list[str]:
        """Greedy replies to many conversations (evals), one after the other."""
        del batch_size  # one at a time: each reply is then exactly what a chat gets
        answers = []
        for conversation in conversations:
            answers.append(self.stream(conversation, max_tokens=max_tokens).read().text.strip())
            if on_answer is not None:
                on_answer(1)
        return answers


_engines: dict[Path, FastEngine] = {}
_engines_lock = threading.Lock()


def get_fast_engine(folder: Path, *, model_id: str | None = None, training_lock: Path | None = None) -> FastEngine:
    """The process-wide fast engine for a converted model folder, loaded on first use."""
    key = folder.resolve()
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = FastEngine(key, model_id=model_id, training_lock=training_lock)
            _engines[key] = engine
        return engine
