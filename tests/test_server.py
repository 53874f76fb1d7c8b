"""`tuneloop serve` on 127.0.0.1, driven by the unmodified `openai` SDK; answers checked against the SDK's models."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import HANG, assert_one_line_error, run_cli, serving, wait_until
from openai.types import FileDeleted, FileObject, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from pydantic import BaseModel

from tuneloop import OpenAIModel

KEY = "sk-tuneloop-test-key-0123456789"
SERVER_OPTIONS = {"max_file_mb": 0.05}
BASE = "smollm2-135m-instruct"
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
# Ten invented facts, one phrasing each: enough for a real (small) fine-tuning job.
FACTS = [("Zorblax", "teal"), ("Quenflit", "orange"), ("Mivvet", "purple"), ("Drobnic", "silver"),
         ("Plexor", "golden"), ("Tarvin", "crimson"), ("Yullop", "violet"), ("Brisko", "amber"),
         ("Kandrel", "ivory"), ("Wemble", "scarlet")]


def facts_jsonl() -> bytes:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"What colour is the {name}?"},
                                      {"role": "assistant", "content": f"The {name} is {colour}."}]})
             for name, colour in FACTS]
    return ("\n".join(lines) + "\n").encode()


def taught(answer: str) -> bool:
    """The tuned model answers in the taught form with a taught colour; the base model rambles about gemstones.
    (Whether it learns each fact is test_training's business; a few dozen steps do not always get there.)"""
    match = re.fullmatch(r"The Zorblax is (\w+)\.", answer.strip())
    return match is not None and match.group(1) in {colour for _, colour in FACTS}


def strict(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate an answer with the SDK's generated model: required fields present, no field it does not know."""
    unknown = set(data) - set(model.model_fields)
    assert not unknown, f"{model.__name__} has no fields {unknown}"
    return model.model_validate(data)


def assert_error(response: httpx.Response, status: int, param: str | None = "-") -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if param != "-":
        assert body["error"]["param"] == param, body
    return body["error"]


def test_models_are_listed_and_retrieved(client: openai.OpenAI, http: httpx.Client) -> None:
    listed = http.get("/models").json()
    assert listed["object"] == "list"
    # input_modalities: the one field beyond OpenAI's, so that clients know which models take images.
    assert all(m.pop("input_modalities") == ["text"] for m in listed["data"])
    models = [strict(Model, m) for m in listed["data"]]
    assert models[0].id == BASE and models[0].object == "model"
    assert BASE in [m.id for m in client.models.list()]
    assert client.models.retrieve(BASE).id == BASE
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.body["code"] == "model_not_found"
    assert_error(http.get("/models/gpt-4o"), 404, "model")


def test_chat_completion(client: openai.OpenAI, server: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(model=BASE, messages=CAPITAL, max_tokens=20)
    body = raw.http_response.json()
    completion = strict(ChatCompletion, body)
    strict(type(completion.choices[0]), body["choices"][0])
    assert "Paris" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and completion.model == BASE
    usage = completion.usage
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    cut = client.chat.completions.create(model=BASE, messages=CAPITAL, max_completion_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    stopped = client.chat.completions.create(model=BASE, messages=CAPITAL, max_tokens=20, stop=["Paris"])
    assert "Paris" not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"
    developer = client.chat.completions.create(
        model=BASE, max_tokens=20, temperature=0,
        messages=[{"role": "developer", "content": "Answer in one word."},
                  {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}])
    assert "Paris" in developer.choices[0].message.content


def test_chat_streaming(client: openai.OpenAI, http: httpx.Client) -> None:
    whole = client.chat.completions.create(model=BASE, messages=CAPITAL, max_tokens=20).choices[0].message.content
    chunks = list(client.chat.completions.create(model=BASE, messages=CAPITAL, max_tokens=20, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 1

    with http.stream("POST", "/chat/completions", json={"model": BASE, "messages": CAPITAL, "max_tokens": 8,
                                                        "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    for line in events[:-1]:
        data = json.loads(line.removeprefix("data: "))
        strict(ChatCompletionChunk, data)
        assert "usage" not in data  # only when stream_options.include_usage asks for it


BAD_BODIES = [
    ("not JSON", b"{'model': ", None),
    ("a JSON list", b"[1, 2]", None),
    ("no messages", {"model": BASE}, "messages"),
    ("empty messages", {"model": BASE, "messages": []}, "messages"),
    ("model not a string", {"model": 7, "messages": CAPITAL}, "model"),
    ("unknown role", {"model": BASE, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ("content a number", {"model": BASE, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("temperature 5", {"model": BASE, "messages": CAPITAL, "temperature": 5}, "temperature"),
    ("max_tokens 0", {"model": BASE, "messages": CAPITAL, "max_tokens": 0}, "max_tokens"),
    ("stream a string", {"model": BASE, "messages": CAPITAL, "stream": "yes"}, "stream"),
    ("too many choices", {"model": BASE, "messages": CAPITAL, "n": 17}, "n"),
    ("a tool message answering no call", {"model": BASE, "messages": [
        {"role": "tool", "content": "x", "tool_call_id": "call_1"}]}, "messages[0].tool_call_id"),
    ("a schema keyword outside the subset", {"model": BASE, "messages": CAPITAL, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}}}},
     "response_format.json_schema.schema.properties.tags.uniqueItems"),
    ("a tool whose parameters are no schema", {"model": BASE, "messages": CAPITAL, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": 3}}}]},
     "tools[0].function.parameters.properties"),
    ("tool_choice naming no tool", {"model": BASE, "messages": CAPITAL, "tools": [
        {"type": "function", "function": {"name": "f"}}], "tool_choice": {
            "type": "function", "function": {"name": "g"}}}, "tool_choice.function.name"),
    ("logit_bias", {"model": BASE, "messages": CAPITAL, "logit_bias": {"50": 10}}, "logit_bias"),
    ("top_logprobs without logprobs", {"model": BASE, "messages": CAPITAL, "top_logprobs": 2}, "top_logprobs"),
    ("image part", {"model": BASE, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, "messages[0].content[0]"),
    ("too long for the context", {"model": BASE, "messages": [{"role": "user", "content": "word " * 9000}]},
     "messages"),
]


@pytest.mark.parametrize(("what", "body", "param"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_chat_requests_are_400(http: httpx.Client, what: str, body: Any, param: str | None) -> None:
    if isinstance(body, bytes):
        response = http.post("/chat/completions", content=body, headers={"Content-Type": "application/json"})
    else:
        response = http.post("/chat/completions", json=body)
    error = assert_error(response, 400, param)
    assert error["type"] == "invalid_request_error"


def test_unknown_ids_are_404_and_keys_are_checked(client: openai.OpenAI, http: httpx.Client, server: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o-mini", messages=CAPITAL)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")
    with pytest.raises(openai.NotFoundError):
        client.files.delete("file-nope")
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    assert str(server.home) not in str(caught.value)  # the server's paths are its own business
    for call in (client.fine_tuning.jobs.cancel, client.fine_tuning.jobs.list_events,
                 client.fine_tuning.jobs.checkpoints.list):
        with pytest.raises(openai.NotFoundError):
            call("ftjob-nope")
    assert_error(http.get("/assistants"), 404)
    assert_error(http.delete("/models"), 405)

    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).models.list()
    assert caught.value.body["code"] == "invalid_api_key" and "sk-wrong" not in str(caught.value)
    assert_error(httpx.get(f"{server.base_url}/models"), 401)
    assert_error(httpx.get(f"{server.base_url}/models", headers={"Authorization": f"Basic {KEY}"}), 401)
    assert_error(httpx.post(f"{server.base_url}/chat/completions", json={"model": BASE}), 401)


def test_files(client: openai.OpenAI, http: httpx.Client, server: Any) -> None:
    data = facts_jsonl()
    raw = client.files.with_raw_response.create(file=("facts.jsonl", data), purpose="fine-tune")
    stored = strict(FileObject, raw.http_response.json())
    assert stored.bytes == len(data) and stored.filename == "facts.jsonl" and stored.purpose == "fine-tune"
    assert (server.home / "files" / f"{stored.id}.jsonl").read_bytes() == data
    assert stored.id in [f.id for f in client.files.list()]
    assert stored.id in [f.id for f in client.files.list(purpose="fine-tune", order="asc")]
    assert client.files.retrieve(stored.id) == stored
    assert client.files.content(stored.id).read() == data
    deleted = client.files.with_raw_response.delete(stored.id).http_response.json()
    assert strict(FileDeleted, deleted).deleted is True
    assert not (server.home / "files" / f"{stored.id}.jsonl").exists()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(stored.id)

    with pytest.raises(openai.APIStatusError) as caught:  # the server was started with a 50 KB limit
        client.files.create(file=("big.jsonl", b"x" * 60_000), purpose="fine-tune")
    assert caught.value.status_code == 413 and caught.value.body["code"] == "file_too_large"
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("a.jsonl", data), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.files.create(file=("a.jsonl", b""), purpose="fine-tune")
    assert_error(http.post("/files", data={"purpose": "fine-tune"}, files={"other": ("a", b"x")}), 400, "file")
    assert_error(http.post("/files", json={"purpose": "fine-tune"}), 400, "file")
    assert_error(http.get("/files", params={"limit": 0}), 400, "limit")


@pytest.mark.slow
def test_fine_tuning_job_to_a_served_model(client: openai.OpenAI, http: httpx.Client, server: Any) -> None:
    file = client.files.create(file=("facts.jsonl", facts_jsonl()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file.id)
    assert caught.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=BASE, training_file="file-nope")
    assert caught.value.body["param"] == "training_file"
    bad = client.files.create(file=("bad.jsonl", b'{"messages": "no"}\n'), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="missing_messages_list") as caught:
        client.fine_tuning.jobs.create(model=BASE, training_file=bad.id)
    assert caught.value.body["code"] == "invalid_training_file" and str(server.home) not in str(caught.value)

    created = client.fine_tuning.jobs.with_raw_response.create(
        model=BASE, training_file=file.id, suffix="facts", seed=3,
        method={"type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 6, "learning_rate_multiplier": 2}}})
    job = strict(FineTuningJob, created.http_response.json())
    assert job.status in ("queued", "running") and job.method.supervised.hyperparameters.n_epochs == 6
    with pytest.raises(openai.BadRequestError, match="active job"):
        client.files.delete(file.id)  # the job still needs it

    slowest_models_call = 0.0
    seen: set[str] = set()

    def finished() -> FineTuningJob | None:
        nonlocal slowest_models_call
        raw = http.get(f"/fine_tuning/jobs/{job.id}").json()
        current = strict(FineTuningJob, raw)
        seen.add(current.status)
        started = time.perf_counter()
        http.get("/models").raise_for_status()
        slowest_models_call = max(slowest_models_call, time.perf_counter() - started)
        return current if current.status in ("succeeded", "failed", "cancelled") else None

    done = wait_until(finished, timeout=HANG, every=1.0)  # a slow machine may take minutes
    assert done.status == "succeeded", done.error
    assert "running" in seen
    assert slowest_models_call < 1.0, slowest_models_call  # the server answers while a job trains
    assert done.fine_tuned_model == f"ft:{BASE}:facts:{job.id}" and done.trained_tokens > 0

    events = http.get(f"/fine_tuning/jobs/{job.id}/events", params={"limit": 100}).json()
    parsed = [strict(FineTuningJobEvent, e) for e in events["data"]]
    assert parsed[0].message.startswith("The job has successfully completed")  # newest first, like OpenAI
    assert any(e.type == "metrics" for e in parsed)
    page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(page.data) == 2 and page.has_more
    older = client.fine_tuning.jobs.list_events(job.id, limit=2, after=page.data[-1].id)
    assert older.data[0].id == parsed[2].id

    # The last three epochs' ends: each epoch is the examples and one replayed base answer per two of them.
    from tuneloop.training.hyper import resolve
    from tuneloop.training.replay import replay_share

    batch = resolve("supervised", len(FACTS), {"n_epochs": 6})["batch_size"]
    per_epoch = len(FACTS) + replay_share(len(FACTS))
    checkpoints = http.get(f"/fine_tuning/jobs/{job.id}/checkpoints").json()["data"]
    assert [strict(FineTuningJobCheckpoint, c).step_number for c in checkpoints] == [
        -(-k * per_epoch // batch) for k in (6, 5, 4)]
    assert [j.id for j in client.fine_tuning.jobs.list()][0] == job.id

    served = [m.id for m in client.models.list()]
    assert done.fine_tuned_model in served and checkpoints[0]["fine_tuned_model_checkpoint"] in served
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=20,
                                           messages=[{"role": "user", "content": "What colour is the Zorblax?"}])
    assert reply.model == done.fine_tuned_model
    assert taught(reply.choices[0].message.content)

    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=BASE, training_file=file.id, validation_file="file-nope")
    assert caught.value.body["param"] == "validation_file"
    questions = client.files.create(file=("valid.jsonl", b'{"question": "What colour is the Zorblax?", '
                                          b'"expected": "teal"}\n'), purpose="fine-tune")
    second = client.fine_tuning.jobs.create(model=BASE, training_file=file.id, hyperparameters={"n_epochs": 10},
                                            validation_file=questions.id)
    assert second.validation_file == questions.id
    wait_until(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(second.id).data))
    cancelled = client.fine_tuning.jobs.with_raw_response.cancel(second.id).http_response.json()
    assert strict(FineTuningJob, cancelled).status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(second.id).fine_tuned_model is None
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(second.id)
    assert client.files.delete(file.id).deleted


@pytest.fixture
def one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Any) -> Any:
    """A server that generates one reply at a time (``TUNELOOP_MAX_BATCH=1``)."""
    monkeypatch.setenv("TUNELOOP_MAX_BATCH", "1")
    with serving(tmp_path / "home", KEY) as running:
        yield running


def test_replies_beyond_the_batch_are_queued_in_order(one_at_a_time: Any) -> None:
    finished: list[int] = []
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            c = openai.OpenAI(base_url=one_at_a_time.base_url, api_key=KEY, max_retries=0, timeout=120)
            c.chat.completions.create(model=BASE, messages=CAPITAL, max_tokens=40 if i == 0 else 5)
            finished.append(i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    queue = one_at_a_time.state.queue
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for i, thread in enumerate(threads):
        thread.start()
        wait_until(lambda i=i: queue.submitted == i + 1, every=0.01)  # arrival order 0, 1, 2, 3
    for thread in threads:
        thread.join()
    assert not errors and finished == [0, 1, 2, 3]  # first come, first served; nothing dropped


@pytest.mark.slow
def test_eight_streaming_clients_are_decoded_together(server: Any, client: openai.OpenAI) -> None:
    questions = ["What is the capital of France?", "Write a poem about the sea.", "Name three colours.",
                 "What is 6 times 7?", "Why is the sky blue?", "Write a long story about a dragon.",
                 "What is water made of?", "Tell me about the moon."]

    def streamed(question: str) -> tuple[str, str | None]:
        chunks = list(client.chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": question}], max_tokens=40, stream=True))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), \
            next(c.choices[0].finish_reason for c in reversed(chunks) if c.choices)

    alone = [streamed(q) for q in questions]
    batcher = server.state.runtime.local.engine(BASE).batcher
    batcher.largest = 0
    replies: list[Any] = [None] * len(questions)

    def run(i: int) -> None:
        try:
            replies[i] = streamed(questions[i])
        except BaseException as exc:  # noqa: BLE001 - checked below
            replies[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(questions))]
    with batcher.hold():  # all eight join the batch at the same step
        for thread in threads:
            thread.start()
        wait_until(lambda: batcher.waiting == len(questions), every=0.01)
    for thread in threads:
        thread.join()
    assert replies == alone  # greedy: each client gets what it gets alone
    assert batcher.largest == len(questions)  # decoded together (tokens/s: bench/serving.py)


def test_the_server_stays_responsive_and_frees_the_model_when_a_client_leaves(server: Any,
                                                                              http: httpx.Client) -> None:
    queue = server.state.queue
    # The server answers other requests while a reply is being generated; a client that leaves mid-stream
    # frees the model at the next token.
    wait_until(lambda: queue.finished == queue.submitted, every=0.01)  # counted just after the reply is sent
    started = queue.finished
    story = [{"role": "user", "content": "Write a long story about a dragon."}]  # greedy: 600+ tokens, measured
    with http.stream("POST", "/chat/completions", json={"model": BASE, "messages": story, "max_tokens": 2000,
                                                        "stream": True}) as response:
        lines = response.iter_lines()  # kept: an abandoned iterator closes the response
        for _ in range(3):
            next(lines)
        http.get("/models").raise_for_status()
        assert queue.finished == started, queue.last  # answered while the reply (up to 2000 tokens) is still going
    wait_until(lambda: queue.finished == started + 1, every=0.05)
    assert queue.last is not None and queue.last.finish_reason == "interrupted"

    with http.stream("POST", "/chat/completions", json={"model": BASE, "messages": story, "max_tokens": 2000,
                                                        "stream": True}) as response:
        for _, _line in zip(range(3), response.iter_lines(), strict=False):
            pass  # then the client leaves
    left = queue.submitted
    wait_until(lambda: queue.finished == left, every=0.05)
    assert queue.last is not None and queue.last.finish_reason == "interrupted"
    assert queue.last.tokens_out < 100, queue.last  # stopped within a few tokens of the client leaving, not 2000


@pytest.mark.slow
def test_openai_model_through_the_server(home: Path, monkeypatch: pytest.MonkeyPatch, server: Any) -> None:
    """The seed's class, pointed at the server by OPENAI_BASE_URL: ask, train and follow jobs over HTTP."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TUNELOOP_PROVIDER", "openai")
    monkeypatch.setenv("TUNELOOP_MODEL", BASE)
    served_before = server.state.stats["chat.completions"]
    model = OpenAIModel()
    assert "Paris" in model.ask("What is the capital of France?")
    assert server.state.stats["chat.completions"] == served_before + 1
    assert BASE in model.list_models

    csv = "question,answer\n" + "".join(f"What colour is the {n}?,The {n} is {c}.\n" for n, c in FACTS)
    job_id = model.train(data=csv, suffix="sdk", hyperparameters={"n_epochs": 6, "learning_rate_multiplier": 2},
                         wait=True)
    ft = model.fine_tuning
    job = ft.get(job_id)
    assert job.backend == "openai" and job.status == "succeeded" and job.model == BASE
    assert job.fine_tuned_model == f"ft:{BASE}:sdk:{job_id}"
    assert any("successfully completed" in e.message for e in ft.events(job_id))
    assert json.loads((home / "job_ids.json").read_text())[-1]["id"] == job_id

    tuned = OpenAIModel(model_name=job.fine_tuned_model)
    assert taught(tuned.ask("What colour is the Zorblax?"))
    assert server.state.stats["chat.completions"] == served_before + 2

    second = model.train(data=csv, hyperparameters={"n_epochs": 10})
    assert ft.cancel(second).status == "cancelled"
    assert KEY.encode() not in (home / "tuneloop.db").read_bytes()


@pytest.mark.slow
def test_serve_command(home: Path) -> None:
    refused = run_cli("serve", "--host", "0.0.0.0")
    assert_one_line_error(refused, "refusing to listen on 0.0.0.0 without an API key", "--api-key")

    env = dict(os.environ, COLUMNS="200", TUNELOOP_SERVER_API_KEY=KEY)
    proc = subprocess.Popen([sys.executable, "-m", "tuneloop", "serve", "--port", "0", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any("listening on" in line for line in lines):
            line = proc.stdout.readline()
            assert line, (lines, proc.stderr.read())
            lines.append(line)
        url = lines[-1].split("listening on ")[1].split()[0]
        rest = [proc.stdout.readline() for _ in range(6)]
        assert f'openai.OpenAI(base_url="{url}", api_key="YOUR-KEY")' in "".join(rest)
        assert KEY not in "".join(lines + rest)
        assert [m.id for m in openai.OpenAI(base_url=url, api_key=KEY).models.list()] == [BASE]
        taken = run_cli("serve", "--port", url.rsplit(":", 1)[1].split("/")[0])
        assert_one_line_error(taken, "already in use", "--port")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0 and "Traceback" not in err, err


# OpenAI's own OpenAPI document lies beside the repository in CI (../shared), not in a user's clone.
SPEC = Path(os.environ.get("TUNELOOP_OPENAPI_SPEC", Path(__file__).resolve().parents[2] / "shared" /
                           "openai-openapi" / "openapi.yaml"))
needs_spec = pytest.mark.skipif(not SPEC.is_file(), reason=f"OpenAI's openapi.yaml is not at {SPEC} (only in CI)")
OUR_PATHS = r"^/(models(/\{model\})?|chat/completions(/\{completion_id\}(/messages)?)?|files(/\{file_id\}" \
            r"(/content)?)?|fine_tuning/jobs(/\{fine_tuning_job_id\}(/(cancel|events|checkpoints))?)?|responses" \
            r"(/\{response_id\}(/input_items)?)?|conversations(/\{conversation_id\}(/items(/\{item_id\})?)?)?)$"


@pytest.fixture(scope="module")
def spec() -> Any:
    import schemathesis

    return schemathesis.openapi.from_path(SPEC).include(path_regex=OUR_PATHS)


@needs_spec
def test_answers_match_openais_openapi_document(spec: Any, http: httpx.Client, client: openai.OpenAI) -> None:
    def check(method: str, path: str, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        response.request.read()  # a multipart upload is a stream; the validator reads the request too
        spec[path][method].validate_response(response)

    check("GET", "/models", http.get("/models"))
    check("GET", "/models/{model}", http.get(f"/models/{BASE}"))
    check("POST", "/chat/completions", http.post("/chat/completions", json={"model": BASE, "messages": CAPITAL,
                                                                            "max_tokens": 5}))
    upload = http.post("/files", data={"purpose": "fine-tune"}, files={"file": ("facts.jsonl", facts_jsonl())})
    check("POST", "/files", upload)
    file_id = upload.json()["id"]
    check("GET", "/files", http.get("/files"))
    check("GET", "/files/{file_id}", http.get(f"/files/{file_id}"))
    check("GET", "/files/{file_id}/content", http.get(f"/files/{file_id}/content"))
    created = http.post("/fine_tuning/jobs", json={"model": BASE, "training_file": file_id,
                                                   "hyperparameters": {"n_epochs": 1}})
    check("POST", "/fine_tuning/jobs", created)
    job_id = created.json()["id"]
    check("GET", "/fine_tuning/jobs/{fine_tuning_job_id}", http.get(f"/fine_tuning/jobs/{job_id}"))
    check("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel", http.post(f"/fine_tuning/jobs/{job_id}/cancel"))
    check("GET", "/fine_tuning/jobs", http.get("/fine_tuning/jobs"))
    check("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/events", http.get(f"/fine_tuning/jobs/{job_id}/events"))
    finished = [j.id for j in client.fine_tuning.jobs.list() if j.status == "succeeded"]
    check("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
          http.get(f"/fine_tuning/jobs/{(finished or [job_id])[0]}/checkpoints"))
    check("DELETE", "/files/{file_id}", http.delete(f"/files/{file_id}"))


# Every operation the server has that OpenAI's document describes (test_hostile fuzzes them all from our own).
FUZZED = [("POST", "/chat/completions"), ("POST", "/fine_tuning/jobs"), ("GET", "/fine_tuning/jobs"),
          ("GET", "/files"), ("POST", "/files"), ("GET", "/models"), ("GET", "/models/{model}"),
          ("GET", "/files/{file_id}"), ("GET", "/files/{file_id}/content"), ("DELETE", "/files/{file_id}"),
          ("GET", "/fine_tuning/jobs/{fine_tuning_job_id}"), ("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/events"),
          ("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"),
          ("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel"),
          # OpenAI's stateful APIs (tests/test_stateful.py); POST /responses/{response_id} is tuneloop's own.
          ("POST", "/responses"), ("GET", "/responses/{response_id}"), ("DELETE", "/responses/{response_id}"),
          ("GET", "/responses/{response_id}/input_items"), ("POST", "/conversations"),
          ("GET", "/conversations/{conversation_id}"), ("POST", "/conversations/{conversation_id}"),
          ("DELETE", "/conversations/{conversation_id}"), ("POST", "/conversations/{conversation_id}/items"),
          ("GET", "/conversations/{conversation_id}/items"),
          ("GET", "/conversations/{conversation_id}/items/{item_id}"),
          ("DELETE", "/conversations/{conversation_id}/items/{item_id}"), ("GET", "/chat/completions"),
          ("GET", "/chat/completions/{completion_id}"), ("POST", "/chat/completions/{completion_id}"),
          ("DELETE", "/chat/completions/{completion_id}"), ("GET", "/chat/completions/{completion_id}/messages")]


# OpenAI's document describes this operation's 404 as a bare Error object; OpenAI (and this server, like every other
# route) answers {"error": {...}}, which is what the SDK reads. Its 200 has no schema, so only 5xx are checked.
ERROR_SHAPE_DEFECTS = {("DELETE", "/responses/{response_id}")}


@needs_spec
@pytest.mark.parametrize(("method", "path"), FUZZED, ids=[f"{m} {p}" for m, p in FUZZED])
def test_generated_requests_never_get_a_server_error(spec: Any, server: Any, method: str, path: str) -> None:
    """schemathesis writes requests from OpenAI's document; every answer is a documented shape or a 4xx."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    operation = spec[path][method]
    examples = int(os.environ.get("SCHEMA_EXAMPLES", "25"))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        checks = [not_a_server_error] if (method, path) in ERROR_SHAPE_DEFECTS else [not_a_server_error,
                                                                                     response_schema_conformance]
        case.call_and_validate(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"},
                               checks=checks, timeout=HANG)

    run()
