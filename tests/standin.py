"""A stand-in for a remote OpenAI-compatible vendor, on 127.0.0.1, for the `openai` provider's tests.

It is the only test double in the suite (a remote vendor cannot be reached from here). Every request
body is validated against OpenAI's schema for createChatCompletion, as the `openai` SDK's generated
types define it, and every response is built through the SDK's response models, so a field either
side gets wrong fails the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_type_hints

from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as params
from pydantic import TypeAdapter, ValidationError

NON_STREAMING = TypeAdapter(params.CompletionCreateParamsNonStreaming)
STREAMING = TypeAdapter(params.CompletionCreateParamsStreaming)
KNOWN_KEYS = set(get_type_hints(params.CompletionCreateParamsStreaming)) | set(
    get_type_hints(params.CompletionCreateParamsNonStreaming)
)
MODELS = ["gpt-4o-mini", "standin-model"]


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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
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

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
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

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    models = [Model(id=m, created=0, object="model", owned_by="standin").model_dump() for m in MODELS]
                    self._json(200, {"object": "list", "data": models})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if self.path != "/v1/chat/completions":
                    self._error(404, f"no route {self.path}")
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
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
                if standin.fail_next > 0:
                    standin.fail_next -= 1
                    self._error(500, "temporary failure")
                    return
                text = standin.reply_for(body)
                if body.get("stream"):
                    self._stream(body, text)
                else:
                    self._complete(body, text)

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

            def _stream(self, body: dict[str, Any], text: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": body["model"]}
                words = text.split(" ")
                chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
                chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append({**base, "choices": [], "usage": {
                        "prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}})
                for chunk in chunks:
                    data = ChatCompletionChunk.model_validate(chunk).model_dump(exclude_none=True)
                    self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler
