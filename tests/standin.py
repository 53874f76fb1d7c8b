"""A stand-in for a remote OpenAI-compatible vendor, on 127.0.0.1, for the `openai` provider's tests.

It is the only test double in the suite (a remote vendor cannot be reached from here). Every request
body is validated against OpenAI's schema for createChatCompletion, as the `openai` SDK's generated
types define it, and every response is built through the SDK's response models, so a field either
side gets wrong fails the test.

It injects faults on demand: append to ``faults`` and each request that arrives takes the first one
(see FAULTS), or aim one at a path with ``path_faults``; ``arrivals`` records when each request came and which fault
it got. ``history`` holds an account's past (jobs, files, stored completions) for `tuneloop import openai`.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_type_hints

from openai.types import FileObject, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as params
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent, job_create_params
from pydantic import TypeAdapter, ValidationError
from standin_history import History

NON_STREAMING = TypeAdapter(params.CompletionCreateParamsNonStreaming)
STREAMING = TypeAdapter(params.CompletionCreateParamsStreaming)
KNOWN_KEYS = set(get_type_hints(params.CompletionCreateParamsStreaming)) | set(
    get_type_hints(params.CompletionCreateParamsNonStreaming)
)
MODELS = ["gpt-4o-mini", "standin-model", "standin-text"]
TEXT_ONLY = {"standin-text"}  # refuses image parts, as OpenAI refuses them for its text models
# Faults a request can be given: "429", "429:SECONDS" (with Retry-After), "429ms:MILLISECONDS" (retry-after-ms),
# "500", "503", "slow:SECONDS" (answers only after that long), "reset" (connection reset, no answer),
# "cut" (a streamed reply stops half-way: the connection closes; a plain one resets), "badjson" (200, not JSON).
FAULTS = ("429", "500", "503", "slow", "reset", "cut", "badjson")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away (timeouts, injected resets) is expected here
JOB_CREATE = TypeAdapter(job_create_params.JobCreateParams)
JOB_KEYS = set(get_type_hints(job_create_params.JobCreateParams))
# A remote job moves one state further each time it is read, like a platform that trains meanwhile.
JOB_STATES = ["validating_files", "queued", "running", "succeeded"]


def parse_upload(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """multipart/form-data → (fields, files); raises ValueError when it is not a valid upload."""
    if not content_type.startswith("multipart/form-data"):
        raise ValueError(f"expected multipart/form-data, got {content_type!r}")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            files[name] = (filename, payload)
        else:
            fields[name] = payload.decode()
    return fields, files


def validate_chat_request(body: Any) -> dict[str, Any]:
    """Validate a createChatCompletion body; raise ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    unknown = set(body) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    adapter = STREAMING if body.get("stream") else NON_STREAMING
    validated = adapter.validate_python(body)
    # Iterable fields are validated lazily by pydantic: materialise them so each item is checked.
    messages = list(validated["messages"])
    if not messages:
        raise ValueError("messages is empty")
    for message in messages:
        content = message.get("content")
        if content is not None and not isinstance(content, str) and isinstance(content, Iterable):
            list(content)
    if "stop" in validated and isinstance(validated["stop"], Iterable) and not isinstance(validated["stop"], str):
        list(validated["stop"])
    return body


class StandIn:
    """Start with `with StandIn() as server:`; `server.base_url` goes into OPENAI_BASE_URL."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0  # answer this many chat requests with 500 before succeeding
        self.faults: list[str] = []
        self.arrivals: list[tuple[float, str, str | None]] = []  # (time.monotonic(), path, fault given)
        self._lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.history = History()  # the account's past: jobs, files, stored completions (tests/standin_history.py)
        # (path fragment, fault): the next request whose path holds the fragment takes the fault, before ``faults``.
        self.path_faults: list[tuple[str, str]] = []
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def reply_for(body: dict[str, Any]) -> str:
        last = list(body["messages"])[-1]["content"]
        return f"Stand-in reply to: {last}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, code: str | None = None) -> None:
                self._json(status, {"error": {"message": message, "type": "invalid_request_error",
                                              "param": None, "code": code}})

            def _authorized(self) -> bool:
                if standin.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {standin.api_key}":
                    return True
                given = self.headers.get("Authorization", "")[7:]
                # Like OpenAI, echo a masked key back: the client must not pass it on.
                self._error(401, f"Incorrect API key provided: {given[:5]}***{given[-4:]}", "invalid_api_key")
                return False

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _fault(self) -> str | None:
                """Take the next injected fault; answer it here unless it shapes the answer (cut, slow). Returns
                the fault still to apply, or "done" when the request has been answered."""
                with standin._lock:
                    aimed = next((i for i, (part, _) in enumerate(standin.path_faults) if part in self.path), None)
                    if aimed is not None:
                        fault = standin.path_faults.pop(aimed)[1]
                    else:
                        fault = standin.faults.pop(0) if standin.faults else None
                    standin.arrivals.append((time.monotonic(), self.path, fault))
                if fault is None:
                    return None
                kind, _, value = fault.partition(":")
                if kind in ("429", "429ms"):
                    headers = {"retry-after-ms" if kind == "429ms" else "Retry-After": value} if value else {}
                    self._json(429, {"error": {"message": "Rate limit reached, slow down", "type": "requests",
                                               "param": None, "code": "rate_limit_exceeded"}}, headers)
                    return "done"
                if kind in ("500", "503"):
                    self._error(int(kind), "The server had an error while processing your request")
                    return "done"
                if kind == "reset":
                    self._reset()
                    return "done"
                if kind == "badjson":
                    data = b'{"id": "chatcmpl-x", "choices": [ {"message": '
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return "done"
                if kind == "slow":
                    time.sleep(float(value or 5))
                    return None
                return kind

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                fault = self._fault()
                if fault == "done":
                    return
                path, _, query = self.path.partition("?")
                answered = standin.history.answer(path, query)
                if answered is not None:
                    status, body = answered
                    data = body if isinstance(body, bytes) else json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes)
                                     else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if fault == "cut":  # half the page, then the connection resets
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self._reset()
                        return
                    self.wfile.write(data)
                    return
                if path == "/v1/models":
                    models = [Model(id=m, created=0, object="model", owned_by="standin").model_dump() for m in MODELS]
                    self._json(200, {"object": "list", "data": models})
                elif path.startswith("/v1/fine_tuning/jobs/") and path.endswith("/events"):
                    job = standin.jobs.get(path.split("/")[4])
                    if job is None:
                        self._error(404, "no such job")
                        return
                    events = [FineTuningJobEvent.model_validate({
                        "id": f"ftevent-{i}", "object": "fine_tuning.job.event", "created_at": job["created_at"] + i,
                        "level": "info", "message": f"Job is {state}", "type": "message"}).model_dump()
                        for i, state in enumerate(JOB_STATES[: JOB_STATES.index(job["status"]) + 1]
                                                  if job["status"] in JOB_STATES else ["cancelled"])]
                    self._json(200, {"object": "list", "data": events[::-1], "has_more": False})
                elif path.startswith("/v1/fine_tuning/jobs/"):
                    job = standin.jobs.get(path.split("/")[4])
                    if job is None:
                        self._error(404, "no such job")
                        return
                    if job["status"] in JOB_STATES[:-1]:
                        job["status"] = JOB_STATES[JOB_STATES.index(job["status"]) + 1]
                        if job["status"] == "succeeded":
                            job.update(fine_tuned_model=f"ft:{job['model']}:standin:{job['user_provided_suffix']}:1",
                                       trained_tokens=1234, finished_at=job["created_at"] + 60)
                    self._json(200, FineTuningJob.model_validate(job).model_dump())
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fault = self._fault()
                if fault == "done":
                    return
                if self.path in ("/v1/files", "/v1/fine_tuning/jobs") or self.path.endswith("/cancel"):
                    self._fine_tuning(raw)
                    return
                if self.path != "/v1/chat/completions":
                    self._error(404, f"no route {self.path}")
                    return
                try:
                    body = validate_chat_request(json.loads(raw))
                except (ValueError, ValidationError) as exc:
                    standin.requests.append({"invalid": str(exc)})
                    self._error(400, f"invalid request: {exc}")
                    return
                standin.requests.append(body)
                if body["model"] not in MODELS:
                    self._error(404, f"The model `{body['model']}` does not exist", "model_not_found")
                    return
                if body["model"] in TEXT_ONLY and any(
                        isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
                        for m in body["messages"]):
                    self._error(400, "Invalid content type. image_url is only supported by certain models.")
                    return
                if standin.fail_next > 0:
                    standin.fail_next -= 1
                    self._error(500, "temporary failure")
                    return
                text = standin.reply_for(body)
                if fault == "cut" and not body.get("stream"):
                    self._reset()
                elif body.get("stream"):
                    self._stream(body, text, cut=fault == "cut")
                else:
                    self._complete(body, text)

            def _fine_tuning(self, raw: bytes) -> None:
                now = int(time.time())
                if self.path == "/v1/files":
                    try:
                        fields, files = parse_upload(self.headers.get("Content-Type", ""), raw)
                        if fields.get("purpose") != "fine-tune" or "file" not in files:
                            raise ValueError(f"need purpose=fine-tune and a file, got {sorted(fields)}/{sorted(files)}")
                    except ValueError as exc:
                        self._error(400, f"invalid upload: {exc}")
                        return
                    name, data = files["file"]
                    file_id = f"file-standin{len(standin.files)}"
                    standin.uploads[file_id] = data
                    stored = FileObject.model_validate({"id": file_id, "object": "file", "bytes": len(data),
                                                        "created_at": now, "filename": name, "purpose": "fine-tune",
                                                        "status": "processed"}).model_dump()
                    standin.files[file_id] = stored
                    self._json(200, stored)
                    return
                if self.path.endswith("/cancel"):
                    job = standin.jobs.get(self.path.split("/")[4])
                    if job is None:
                        self._error(404, "no such job")
                    elif job["status"] in ("succeeded", "failed", "cancelled"):
                        self._error(400, f"Job has already {job['status']}")
                    else:
                        job.update(status="cancelled", finished_at=now)
                        self._json(200, FineTuningJob.model_validate(job).model_dump())
                    return
                try:
                    body = json.loads(raw)
                    if not isinstance(body, dict) or set(body) - JOB_KEYS:
                        raise ValueError(f"unknown fields {sorted(set(body) - JOB_KEYS)}")
                    JOB_CREATE.validate_python(body)
                except (ValueError, ValidationError) as exc:
                    standin.requests.append({"invalid": str(exc)})
                    self._error(400, f"invalid request: {exc}")
                    return
                standin.requests.append(body)
                if body["training_file"] not in standin.files:
                    self._error(400, f"invalid training_file: {body['training_file']}", "invalid_training_file")
                    return
                job_id = f"ftjob-standin{len(standin.jobs)}"
                method = body.get("method") or {"type": "supervised", "supervised": {}}
                hyper = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto",
                         **(method.get(method["type"]) or {}).get("hyperparameters", {})}
                job = {"id": job_id, "object": "fine_tuning.job", "created_at": now, "error": None,
                       "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper,
                       "model": body["model"], "organization_id": "org-standin", "result_files": [],
                       "seed": body.get("seed") or 42, "status": "validating_files", "trained_tokens": None,
                       "training_file": body["training_file"], "validation_file": body.get("validation_file"),
                       "method": {"type": method["type"], method["type"]: {"hyperparameters": hyper}},
                       "user_provided_suffix": body.get("suffix")}
                standin.jobs[job_id] = job
                self._json(200, FineTuningJob.model_validate(job).model_dump())

            def _complete(self, body: dict[str, Any], text: str) -> None:
                completion = ChatCompletion.model_validate({
                    "id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": len(text.split()),
                              "total_tokens": 7 + len(text.split())},
                })
                self._json(200, completion.model_dump(exclude_none=True))

            def _stream(self, body: dict[str, Any], text: str, cut: bool = False) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": body["model"]}
                words = text.split(" ")
                chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
                tools = body.get("tools") or []
                if tools and body.get("tool_choice") != "none":
                    # A call of the first tool, streamed as OpenAI does: id and name, then the arguments in pieces.
                    name = tools[0]["function"]["name"]
                    arguments = json.dumps({"city": "Paris"})
                    chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": 0, "id": "call_standin", "type": "function",
                         "function": {"name": name, "arguments": ""}}]}}]})
                    for piece in (arguments[:5], arguments[5:]):
                        chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                            {"index": 0, "function": {"arguments": piece}}]}}]})
                    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
                    words = []
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    logprobs = {"content": [{"token": piece, "logprob": -0.5, "bytes": list(piece.encode()),
                                             "top_logprobs": []}]} if body.get("logprobs") else None
                    chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                                        "logprobs": logprobs}]})
                if words:
                    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append({**base, "choices": [], "usage": {
                        "prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}})
                if cut:  # half the reply, then the connection closes (HTTP/1.0: no length, so a clean EOF)
                    chunks = chunks[: max(2, len(chunks) // 2)]
                for chunk in chunks:
                    data = ChatCompletionChunk.model_validate(chunk).model_dump(exclude_none=True)
                    self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                if not cut:
                    self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler
