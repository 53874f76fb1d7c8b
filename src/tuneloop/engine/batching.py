"""Continuous batching for the fast engine: every reply being generated is decoded together, one token each per step.

A request joins the running batch between two steps: its prompt is read into a free slot of the key/value cache
(the prompts of requests that join at the same step are read together, right-padded), and its first token comes
out of that. A prompt longer than ``PREFILL_CHUNK`` tokens is read a chunk at a time instead, with a step of the
batch between two chunks, so it does not stall the replies under way (those asked for after it wait until it is
read). From then on one step of the model gives every row its next token. A row leaves between two steps,
as soon as it ends: end of turn, ``max_tokens``, or its consumer gone (a stop string was met, the client
disconnected, Ctrl-C); the last row moves into its slot so the rows stay packed.
Requests beyond ``max_batch`` wait, first come first served.

The cache is ours (numpy arrays, one ``[max_batch, kv_heads, capacity, head_size]`` pair per layer), handed to
onnxruntime as the past *and* present of each step, so nothing is copied: the model's GroupQueryAttention writes
each row's new key and value at that row's own length and attends over that row's own tokens only. A row's tokens
are therefore the ones it gets alone (greedy; ``tests/test_batching.py`` checks it).
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneloop.engine.sampling import Sampler
from tuneloop.generation import GenerationOptions

_END = object()
STEP_TIMES = 512  # step times kept per number of rows (benches read them; a server runs for days)
PREFILL_TOKENS = 1024  # the most prompt tokens (padding included) read in one run when several rows join
PREFILL_CHUNK = 256  # a longer prompt is read this many tokens at a time, the batch decoding a token in between


@dataclass(frozen=True)
class Layout:
    """What the converted model's graph looks like (from its genai_config.json)."""

    layers: int
    kv_heads: int
    head_size: int
    past_key: str  # e.g. "past_key_values.%d.key"
    past_value: str
    present_key: str
    present_value: str


class _Row:
    """One reply in the batch: its slot in the cache, its length there, and the queue its tokens go out by."""

    def __init__(self, prompt: list[int], max_tokens: int, sampler: Sampler,
                 should_stop: Callable[[], bool] | None) -> None:
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.sampler = sampler
        self.should_stop = should_stop
        self.out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.slot = -1
        self.length = 0  # tokens in its slot of the cache
        self.last = 0  # the token to feed next
        self.produced = 0
        self.done = False
        self.closed = False  # its consumer has gone

    def live(self) -> bool:
        return not self.done and not self.closed

    def stop_asked(self) -> bool:
        """Asked once before each of its tokens (``should_stop``'s contract)."""
        return self.should_stop is not None and bool(self.should_stop())

    def take(self, logits: np.ndarray, eos: set[int]) -> None:
        try:
            token = self.sampler.pick(logits)
        except Exception as exc:  # noqa: BLE001 - this reply's own choice failed: it ends, the batch goes on
            self.end(exc)
            return
        self.produced += 1
        self.last = token
        self.out.put(token)
        if token in eos or self.produced >= self.max_tokens:
            self.end()

    def end(self, error: BaseException | None = None) -> None:
        if not self.done:
            self.done = True
            self.out.put(_END if error is None else error)


class Batcher:
    """Decodes every submitted reply of one model together, on one thread of its own (started on first use).

    ``session`` is called before each step and returns the onnxruntime session to run (the engine swaps it when
    the thread count should change: the cache is ours, so a step may run on another session than the last).
    ``largest``, ``steps``, ``steps_while_reading``, ``prompt_reads`` and ``step_seconds`` are for tests and
    benches: the most rows one step decoded, how many steps ran (and how many of them between two chunks of a long
    prompt), how many runs read prompts, and the seconds the last ``STEP_TIMES`` steps took, by their number of rows.
    """

    def __init__(self, session: Callable[[], Any], layout: Layout, eos: set[int], *, max_batch: int = 8,
                 dtype: Any = np.float32, position_ids: bool = False, last_only: bool = False,
                 min_capacity: int = 0) -> None:
        self._session = session
        self.layout = layout
        self.eos = eos
        self.max_batch = max(1, max_batch)
        self._dtype = dtype
        self._position_ids = position_ids
        self.last_only = last_only  # the model gives the logits of each row's last position only
        # Attention over a sliding window wants a cache at least as long as the window (onnxruntime checks it).
        self.min_capacity = min_capacity
        self._cond = threading.Condition()
        self._pending: deque[_Row] = deque()
        self._active: list[_Row] = []
        self._reading: _Row | None = None  # a long prompt being read a chunk at a time, in the slot after the rows
        self._keys: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self.capacity = 0
        self._binding: tuple[Any, Any] | None = None  # (what it binds, the binding)
        self._vocab = 0  # the logits' width, known after the first run
        self._thread: threading.Thread | None = None
        self._held = False
        self._stopping = False
        self._retiring = False  # let go of by its engine's cache: the thread ends once the batch is empty
        self.largest = 0
        self.steps = 0
        self.steps_while_reading = 0
        self.step_seconds: defaultdict[int, deque[float]] = defaultdict(lambda: deque(maxlen=STEP_TIMES))
        self.prompt_reads = 0

    @property
    def waiting(self) -> int:
        """Replies asked for that have not joined the batch yet."""
        return len(self._pending)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """No reply joins the batch inside this block (the ones in it go on); on leaving it, the waiting ones join
        together, in order. For tests and benches that need several replies to start at the same step."""
        with self._cond:
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify()

    def submit(self, prompt: Sequence[int], *, sampler: Sampler | None = None, max_tokens: int | None = None,
               should_stop: Callable[[], bool] | None = None) -> Iterator[int]:
        """The reply's tokens as they come, chosen by ``sampler`` (greedy when None), at most ``max_tokens`` (default:
        the sampler's options'); it joins the batch when first iterated and leaves when closed."""
        if sampler is None:
            sampler = Sampler(GenerationOptions() if max_tokens is None else GenerationOptions(max_tokens=max_tokens))
        row = _Row(list(prompt), max_tokens or sampler.options.max_tokens, sampler, should_stop)
        return self._tokens(row)

    def _tokens(self, row: _Row) -> Iterator[int]:
        with self._cond:
            self._pending.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tuneloop-batch", daemon=True)
                self._thread.start()
                atexit.register(self._stop)
            self._cond.notify()
        try:
            while True:
                item = row.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.closed = True  # the batch lets it go before the next step

    def retire(self) -> None:
        """End the batch's thread once no reply is in it or waiting (a later reply starts it again)."""
        with self._cond:
            self._retiring = True
            self._cond.notify()

    def _stop(self) -> None:
        """At exit: the step under way ends first (a thread stopped inside onnxruntime aborts the process)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- the batch's thread ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while (not self._stopping and not self._active and self._reading is None
                       and (self._held or not self._pending)):
                    self._free()
                    if self._retiring:
                        self._thread, self._retiring = None, False  # a later reply starts a new one
                        atexit.unregister(self._stop)  # a batch let go is not kept alive by its exit hook
                        return
                    self._cond.wait()
                if self._stopping:
                    return
                joining = []
                while (self._reading is None and not self._held and self._pending
                       and len(self._active) + len(joining) < self.max_batch):
                    if len(self._pending[0].prompt) > PREFILL_CHUNK:  # a long prompt: read a chunk at a time
                        if not joining:
                            self._reading = self._pending.popleft()
                        break  # later requests wait until it is read (first come, first served)
                    joining.append(self._pending.popleft())
            try:
                session = self._session()
                self._join(session, joining)
                if self._reading is not None:
                    self._read_chunk(session)
                for row in self._active:
                    if row.live() and row.stop_asked():
                        row.end()
                self._leave()
                if self._active:
                    self._step(session)
                    self._leave()
            except Exception as exc:  # noqa: BLE001 - handed to every reply it broke, which raise it
                for row in [*self._active, *joining, *([self._reading] if self._reading else [])]:
                    row.end(exc)
                self._active, self._reading = [], None

    def _read_chunk(self, session: Any) -> None:
        """The next ``PREFILL_CHUNK`` tokens of the long prompt being read, into the slot after the batch's rows;
        the rows decoding meanwhile get a token between two chunks instead of waiting for the whole prompt."""
        row = self._reading
        assert row is not None
        if not row.live():  # its consumer went while its prompt was being read
            row.end()
            self._reading = None
            return
        slot = len(self._active)
        if row.length == 0:
            row.slot = slot
            self._reserve(len(row.prompt) + row.max_tokens)
        elif row.slot != slot:  # rows before it left: what it has read moves down with it
            for cache in (*self._keys, *self._values):
                cache[slot, :, :row.length] = cache[row.slot, :, :row.length]
            row.slot = slot
        start = row.length
        chunk = row.prompt[start:start + PREFILL_CHUNK]
        end = start + len(chunk)
        logits = self._run(session, np.array([chunk], np.int64), np.ones((1, end), np.int64),
                           slice(slot, slot + 1), np.arange(start, end, dtype=np.int64)[None, :])
        self.prompt_reads += 1
        row.length = end
        if end == len(row.prompt):
            self._reading = None
            self._active.append(row)
            row.take(logits[0, -1 if self.last_only else len(chunk) - 1], self.eos)

    def _join(self, session: Any, joining: list[_Row]) -> None:
        """Rows join: their prompts are read together where the model allows it, each into a slot of its own."""
        ready = []
        for row in joining:
            if not row.live() or row.stop_asked():
                row.end()
            else:
                ready.append(row)
        for group in self._groups(ready):
            self._reserve(max(len(row.prompt) + row.max_tokens for row in group))
            first = len(self._active)
            width = max(len(row.prompt) for row in group)
            ids = np.zeros((len(group), width), np.int64)  # right-padded: the mask leaves the padding out
            mask = np.zeros((len(group), width), np.int64)
            for i, row in enumerate(group):
                row.slot = first + i
                self._active.append(row)
                ids[i, :len(row.prompt)] = row.prompt
                mask[i, :len(row.prompt)] = 1
            positions = np.broadcast_to(np.arange(width, dtype=np.int64), ids.shape) * mask
            logits = self._run(session, ids, mask, slice(first, first + len(group)), positions)
            self.prompt_reads += 1
            for i, row in enumerate(group):
                row.length = len(row.prompt)
                row.take(logits[i, -1 if self.last_only else row.length - 1], self.eos)

    def _groups(self, rows: list[_Row]) -> list[list[_Row]]:
        """Prompts read together: of similar lengths (padding is work too), ``PREFILL_TOKENS`` at most in all.
        One at a time where the model gives every position's logits (they would take prompt × vocabulary floats)."""
        if not self.last_only:
            return [[row] for row in rows]
        groups: list[list[_Row]] = []
        for row in sorted(rows, key=lambda r: len(r.prompt)):
            group = groups[-1] if groups else None
            n = len(row.prompt)
            if (group is not None and (len(group) + 1) * n <= PREFILL_TOKENS
                    and n <= 2 * len(group[0].prompt) + 16):
                group.append(row)
            else:
                groups.append([row])
        return groups

    def _step(self, session: Any) -> None:
        started = time.perf_counter()
        rows = self._active
        lengths = np.array([row.length for row in rows], np.int64)
        mask = (np.arange(int(lengths.max()) + 1)[None, :] <= lengths[:, None]).astype(np.int64)
        logits = self._run(session, np.array([[row.last] for row in rows], np.int64), mask, slice(0, len(rows)),
                           lengths[:, None])
        self.steps += 1
        self.steps_while_reading += self._reading is not None
        self.largest = max(self.largest, len(rows))
        for i, row in enumerate(rows):
            row.length += 1
            row.take(logits[i, -1], self.eos)
        self.step_seconds[len(rows)].append(time.perf_counter() - started)

    def _leave(self) -> None:
        """Rows that ended leave; the last row moves into each freed slot, so rows 0..n-1 are the batch."""
        i = 0
        while i < len(self._active):
            row = self._active[i]
            if row.live():
                i += 1
                continue
            row.end()
            last = self._active.pop()
            if last is not row:
                for cache in (*self._keys, *self._values):
                    cache[row.slot, :, :last.length] = cache[last.slot, :, :last.length]
                last.slot = row.slot
                self._active[i] = last

    def _run(self, session: Any, ids: np.ndarray, mask: np.ndarray, rows: slice, positions: np.ndarray) -> np.ndarray:
        binding = self._bound(session, rows)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self._position_ids:
            binding.bind_cpu_input("position_ids", positions)
        positions_out = 1 if self.last_only else ids.shape[1]
        logits = np.empty((ids.shape[0], positions_out, self._vocab), np.float32) if self._vocab else None
        if logits is None:
            binding.bind_output("logits")
        else:
            binding.bind_output("logits", "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        session.run_with_iobinding(binding)
        if logits is None:
            logits = binding.get_outputs()[-1].numpy()
            self._vocab = logits.shape[-1]
        return logits

    def _bound(self, session: Any, rows: slice) -> Any:
        """The session's binding with these rows' cache as past and present; kept while the batch stays the same
        (binding sixty cache tensors costs about a millisecond, a tenth of a step)."""
        key = (id(session), rows.start, rows.stop, self.capacity)
        if self._binding is not None and self._binding[0] == key:
            return self._binding[1]
        import onnxruntime as ort

        binding = session.io_binding()
        layout = self.layout
        for layer in range(layout.layers):
            for cache, past, present in ((self._keys, layout.past_key, layout.present_key),
                                         (self._values, layout.past_value, layout.present_value)):
                value = ort.OrtValue.ortvalue_from_numpy(cache[layer][rows])  # a view: written in place
                binding.bind_ortvalue_input(past % layer, value)
                binding.bind_ortvalue_output(present % layer, value)
        self._binding = (key, binding)
        return binding

    def _reserve(self, need: int) -> None:
        """Room for ``need`` tokens in every slot; a larger cache keeps the rows already in it."""
        if need <= self.capacity and self._keys[0].shape[0] >= self.max_batch:
            return
        capacity = max(need, 2 * self.capacity, 256, self.min_capacity)
        shape = (self.max_batch, self.layout.kv_heads, capacity, self.layout.head_size)
        keys = [np.zeros(shape, self._dtype) for _ in range(self.layout.layers)]  # pages are taken as written
        values = [np.zeros(shape, self._dtype) for _ in range(self.layout.layers)]
        rows = [*self._active, *([self._reading] if self._reading else [])]  # with the long prompt being read
        for new, old in zip((*keys, *values), (*self._keys, *self._values), strict=False):
            for row in rows:  # what each has written, not the zeros after it (they would take memory)
                new[row.slot, :, :row.length] = old[row.slot, :, :row.length]
        self._keys, self._values, self.capacity = keys, values, capacity
        self._binding = None

    def _free(self) -> None:
        self._keys, self._values, self.capacity = [], [], 0
        self._binding = None
