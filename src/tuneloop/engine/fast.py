"""The fast local engine: onnxruntime over a model converted by :mod:`tuneloop.engine.convert` (onnxruntime-genai's
model builder).

Same contract as :class:`~tuneloop.engine.reference.LocalEngine` (stream token by token, stop between any two
tokens, stop strings, the context window, conversations rendered as given), without torch or transformers:
importing this module and answering costs a fraction of a second, which is what makes ``tuneloop ask`` quick
from a cold start. Our own decode loop (:mod:`tuneloop.engine.batching`) drives the onnxruntime session: it is
faster than onnxruntime-genai's generator on the same model (112 against 80 tokens/s here) and decodes concurrent
replies together.

Threads follow the load: while a local training job of this home holds the training lock, the engine runs
on one thread (a 2-thread engine beside a training job gets a fifth of its speed, a 1-thread one keeps most);
otherwise on every core. The thread count is looked at before each step; a change reloads the session
(a fraction of a second) and the replies under way go on.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.engine.base import ChatEngine, emit_pieces
from tuneloop.engine.batching import Batcher, Layout
from tuneloop.engine.grammar import Grammars
from tuneloop.engine.sampling import Sampler
from tuneloop.engine.tokenizer import ChatTokenizer
from tuneloop.errors import ModelLoadError
from tuneloop.generation import GenerationOptions, GenerationResult
from tuneloop.structured import Tool
from tuneloop.util.hardware import thread_limit

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


class FastEngine(ChatEngine):
    """One converted model in onnxruntime. Thread-safe: replies asked for at the same time are decoded together
    (:class:`~tuneloop.engine.batching.Batcher`), up to ``max_batch`` at once, the others waiting in order."""

    def __init__(self, folder: Path, *, model_id: str | None = None, training_lock: Path | None = None,
                 max_batch: int = 8) -> None:
        self.folder = folder
        self.model_id = model_id or folder.name
        self.training_lock = training_lock
        self.threads: int | None = None
        try:
            config = json.loads((folder / "genai_config.json").read_text())
            model = config["model"]
            decoder = model["decoder"]
            self._model_file = folder / decoder.get("filename", "model.onnx")
            if not config.get("search", {}).get("past_present_share_buffer", False):
                raise ValueError("its key/value cache is not shared between steps (past_present_share_buffer)")
            self._session = self._load(self._wanted_threads())
            inputs = {i.name: i.type for i in self._session.get_inputs()}
            logits = next(o for o in self._session.get_outputs() if o.name == "logits").shape
            last_only = len(logits) == 3 and logits[1] == 1  # convert.last_position_logits
            names, outs = decoder["inputs"], decoder["outputs"]
            layout = Layout(int(decoder["num_hidden_layers"]), int(decoder["num_key_value_heads"]),
                            int(decoder["head_size"]), names["past_key_names"], names["past_value_names"],
                            outs["present_key_names"], outs["present_value_names"])
            dtype = np.float16 if inputs.get(layout.past_key % 0) == "tensor(float16)" else np.float32
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelLoadError(
                f"model {self.model_id!r}: cannot load the fast engine's files in {folder}: {exc}; delete that folder "
                "to convert the model anew, or set TUNELOOP_ENGINE=reference") from exc
        self.tokenizer = ChatTokenizer(folder, model_id=self.model_id)
        self.context_window = int(model.get("context_length", 2048))
        eos = model.get("eos_token_id")
        self.eos_token_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.grammars = Grammars(self.tokenizer.to_json, self.eos_token_ids)
        window = (decoder.get("sliding_window") or {}).get("window_size") or 0
        self.batcher = Batcher(self._current_session, layout, self.eos_token_ids, max_batch=max_batch, dtype=dtype,
                               position_ids="position_ids" in inputs, last_only=last_only, min_capacity=int(window))

    # -- loading -------------------------------------------------------------------------------------------
    def _wanted_threads(self) -> int | None:
        # One while a training job runs here; else what OMP_NUM_THREADS asks (a process told to share the cores);
        # else None: onnxruntime's default, every core.
        return 1 if training_running(self.training_lock) else thread_limit()

    def _load(self, threads: int | None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: they reach the caller as exceptions anyway
        if threads is not None:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(self._model_file), options, providers=["CPUExecutionProvider"])
        self.threads = threads
        return session

    def _current_session(self) -> Any:
        """The session for the next step, reloaded when a training job starts or ends (the cache is the batch's)."""
        wanted = self._wanted_threads()
        if wanted != self.threads:
            self._session = self._load(wanted)
        return self._session

    # -- prompts -------------------------------------------------------------------------------------------
    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> list[int]:
        return self.tokenizer.encode_chat(messages, tools)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    # -- generation ----------------------------------------------------------------------------------------
    def _decode(self, prompt_ids: list[int], result: GenerationResult, sampler: Sampler,
                should_stop: Callable[[], bool] | None) -> Iterator[str]:
        started = time.perf_counter()
        options = sampler.options
        tokens = self.batcher.submit(prompt_ids, sampler=sampler, should_stop=should_stop)
        try:
            yield from emit_pieces(tokens, self.tokenizer.decode, self.eos_token_ids, list(options.stop), result,
                                   started, options.max_tokens)
        finally:
            tokens.close()  # leaves the batch (a stop string, or the caller stopped reading)
            result.seconds = time.perf_counter() - started

    def complete_batch(self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 64,
                       batch_size: int = 16, on_answer: Callable[[int], None] | None = None) -> list[str]:
        """Greedy replies to many conversations (evals), decoded together; each is what a chat alone gets."""
        from concurrent.futures import ThreadPoolExecutor

        def answer(conversation: Sequence[Message]) -> str:
            text = self.stream(conversation, GenerationOptions(max_tokens=max_tokens)).read().text.strip()
            if on_answer is not None:
                on_answer(1)
            return text

        with ThreadPoolExecutor(max_workers=max(1, min(batch_size, self.batcher.max_batch))) as pool:
            return list(pool.map(answer, conversations))


_engines: OrderedDict[Path, FastEngine] = OrderedDict()
_engines_lock = threading.Lock()


def get_fast_engine(folder: Path, *, model_id: str | None = None, training_lock: Path | None = None,
                    max_batch: int = 8, keep: int = 4) -> FastEngine:
    """The process-wide fast engine for a converted model folder, loaded on first use; at most ``keep`` are kept,
    the one used least recently let go (its replies in progress finish first)."""
    key = folder.resolve()
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = FastEngine(key, model_id=model_id, training_lock=training_lock, max_batch=max_batch)
            _engines[key] = engine
        _engines.move_to_end(key)
        while len(_engines) > max(1, keep):
            _, gone = _engines.popitem(last=False)
            gone.batcher.retire()
        return engine
