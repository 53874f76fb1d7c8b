"""Continuous batching on the fast engine: replies decoded together are each exactly what they get alone, a reply
joins a running batch and leaves it between two steps, and replies beyond ``max_batch`` wait in arrival order."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import wait_until

from tuneloop.engine import batching
from tuneloop.generation import GenerationOptions, GenerationResult


def ask(text: str, **options: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "options": GenerationOptions(**options)}


REQUESTS = [
    ask("Write a long story about a dragon.", max_tokens=48),
    ask("What is the capital of France?", max_tokens=32),
    ask("Name three colours.", max_tokens=40, stop=[","]),
    ask("Write a poem about the sea.", max_tokens=64),
    ask("What is 6 times 7?", max_tokens=24),
    ask("Invent a name for a cat.", max_tokens=16, temperature=0.9, seed=3),
    {"messages": [{"role": "system", "content": "Answer in a few words."},
                  {"role": "user", "content": "What colour is the sky?"}], "options": GenerationOptions(max_tokens=30)},
    ask("Say something about ünïcödé and 日本語.", max_tokens=30),
]


def outcome(result: GenerationResult) -> tuple[str, int, str | None]:
    return result.text, result.tokens_out, result.finish_reason


def together(engine: Any, requests: list[dict[str, Any]]) -> list[GenerationResult]:
    """The replies, all asked for at once; they join the batch at the same step."""
    results: list[Any] = [None] * len(requests)

    def run(i: int) -> None:
        try:
            results[i] = engine.stream(**requests[i]).read()
        except BaseException as exc:  # noqa: BLE001 - checked below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    with engine.batcher.hold():
        for thread in threads:
            thread.start()
        wait_until(lambda: engine.batcher.waiting == len(requests), every=0.01)
    for thread in threads:
        thread.join()
    assert not [r for r in results if isinstance(r, BaseException)], results
    return results


def test_replies_decoded_together_are_each_what_they_get_alone(fast_engine) -> None:  # noqa: ANN001
    alone = [outcome(fast_engine.stream(**r).read()) for r in REQUESTS]
    fast_engine.batcher.largest = 0
    fast_engine.batcher.step_seconds.clear()
    reads = fast_engine.batcher.prompt_reads
    batched = together(fast_engine, REQUESTS)
    assert fast_engine.batcher.largest == len(REQUESTS)  # all eight decoded in the same steps
    assert len(fast_engine.batcher.step_seconds[len(REQUESTS)]) > 1  # what bench/batching.py reads, by rows
    assert fast_engine.batcher.prompt_reads - reads < len(REQUESTS)  # prompts of similar length read together
    assert [outcome(r) for r in batched] == alone
    assert {a[2] for a in alone} >= {"stop", "length"}  # some left the batch early, at a stop string or the end


def test_a_reply_joins_a_running_batch_and_leaves_it(fast_engine) -> None:  # noqa: ANN001
    question = ask("What is the capital of Italy?", max_tokens=24)
    short_alone = outcome(fast_engine.stream(**question).read())
    story = [{"role": "user", "content": "Write a long story about a dragon."}]  # greedy: 600+ tokens, measured
    stop = threading.Event()
    fast_engine.batcher.largest = 0
    long = fast_engine.stream(story, GenerationOptions(max_tokens=2000), should_stop=stop.is_set)
    pieces = iter(long)
    next(pieces)  # the story is being generated
    short = outcome(fast_engine.stream(**question).read())  # joins the story's batch, and leaves it
    stop.set()
    for _ in pieces:
        pass
    assert long.result.finish_reason == "interrupted"  # the story was still going when the question was answered
    assert fast_engine.batcher.largest == 2
    assert short == short_alone
    again = fast_engine.stream(story, GenerationOptions(max_tokens=long.result.tokens_out)).read()
    assert long.result.text == again.text


@pytest.mark.slow
def test_a_long_prompt_is_read_a_chunk_at_a_time_while_the_batch_decodes(fast_engine, monkeypatch) -> None:  # noqa: ANN001
    facts = " ".join(f"Box {i} holds {i * 7 % 13} apples." for i in range(120))
    question = ask(facts + "\nHow many apples does box 42 hold?", max_tokens=16)
    chunks = -(-len(fast_engine.encode_chat(question["messages"])) // batching.PREFILL_CHUNK)
    assert chunks >= 3
    batcher = fast_engine.batcher
    reads = batcher.prompt_reads
    alone = outcome(fast_engine.stream(**question).read())
    assert batcher.prompt_reads - reads == chunks  # a chunk at a time, alone too
    with monkeypatch.context() as patch:
        patch.setattr(batching, "PREFILL_CHUNK", 10**6)
        assert outcome(fast_engine.stream(**question).read()) == alone  # the same as reading it whole

    story = [{"role": "user", "content": "Write a long story about a dragon."}]  # greedy: 600+ tokens, measured
    stop = threading.Event()
    long = fast_engine.stream(story, GenerationOptions(max_tokens=2000), should_stop=stop.is_set)
    pieces = iter(long)
    next(pieces)  # the story is being generated
    steps = batcher.steps_while_reading
    answer = outcome(fast_engine.stream(**question).read())  # its prompt is read while the story goes on
    stop.set()
    for _ in pieces:
        pass
    assert long.result.finish_reason == "interrupted"  # the story was still going when the answer came
    assert batcher.steps_while_reading - steps >= chunks - 1  # the story got a token between two chunks
    assert answer == alone
    again = fast_engine.stream(story, GenerationOptions(max_tokens=long.result.tokens_out)).read()
    assert long.result.text == again.text


@pytest.mark.slow
def test_a_long_prompt_being_read_moves_down_when_a_row_before_it_leaves(fast_engine) -> None:  # noqa: ANN001
    facts = " ".join(f"Box {i} holds {i * 5 % 11} pears." for i in range(120))
    requests = [ask("Write a long story about a dragon.", max_tokens=40),
                ask("Say hello.", max_tokens=3),  # leaves while the long prompt is being read
                ask(facts + "\nHow many pears does box 17 hold?", max_tokens=16)]
    alone = [outcome(fast_engine.stream(**r).read()) for r in requests]
    results: list[Any] = [None] * len(requests)

    def run(i: int) -> None:
        results[i] = outcome(fast_engine.stream(**requests[i]).read())

    batcher = fast_engine.batcher
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    steps = batcher.steps_while_reading
    with batcher.hold():
        for i, thread in enumerate(threads):
            thread.start()
            wait_until(lambda i=i: batcher.waiting == i + 1, every=0.01)  # in this order
    for thread in threads:
        thread.join()
    assert batcher.steps_while_reading - steps >= 2  # both rows decoded while it was read, then one left
    assert results == alone


def test_replies_beyond_the_batch_wait_in_arrival_order(fast_engine) -> None:  # noqa: ANN001
    finished: list[int] = []
    requests = [ask("Write a long story about a dragon.", max_tokens=30)] + [ask("Hi", max_tokens=3)] * 3
    done = threading.Lock()

    def run(i: int) -> None:
        fast_engine.stream(**requests[i]).read()
        with done:
            finished.append(i)

    batcher = fast_engine.batcher
    batcher.max_batch = 1
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        with batcher.hold():
            for i, thread in enumerate(threads):
                thread.start()
                wait_until(lambda i=i: batcher.waiting == i + 1, every=0.01)  # arrival order 0, 1, 2, 3
        for thread in threads:
            thread.join()
    finally:
        batcher.max_batch = 8
    assert finished == [0, 1, 2, 3]  # the long first reply is not overtaken by the short ones
