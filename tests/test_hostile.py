"""Hostile input: generated requests over every route of `tuneloop serve` (our own OpenAPI document, always; OpenAI's
document in test_server where it is present), generated images and assistants files, and the limits on bodies,
messages and file names. Nothing may answer 500, raise an untyped exception, or print a traceback."""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import MODELS_DIR, assert_one_line_error, gadget_facts, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standin import StandIn

from tuneloop.asgi import create_app
from tuneloop.conversation.assistants import load_assistants_file
from tuneloop.errors import AssistantsFileError, InputError
from tuneloop.providers.images import prepare_image
from tuneloop.runtime import Runtime
from tuneloop.serving import ServerThread, server_settings

KEY = "sk-hostile-test-key-0123456789"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Any:
    home = tmp_path_factory.mktemp("hostile-home")
    os.environ.pop("TUNELOOP_SERVER_MAX_BODY_MB", None)
    settings = server_settings(home=home, models_dir=MODELS_DIR, database_url=None, model=None,
                               server_max_body_mb=0.25, server_max_messages=50, server_max_message_chars=20_000,
                               max_tokens=8)
    app = create_app(Runtime(settings), api_key=KEY, max_file_mb=0.05)
    with ServerThread(app) as running:
        running.home = home
        running.app = app
        yield running


@pytest.fixture
def http(server: Any) -> httpx.Client:
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


@functools.cache
def our_operations() -> list[tuple[str, str]]:
    """Every operation of the server (read from the app itself, so a new route is fuzzed without a word here)."""
    with tempfile.TemporaryDirectory() as home:
        app = create_app(Runtime(server_settings(home=Path(home), models_dir=MODELS_DIR, database_url=None,
                                                 model=None)))
        return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


@pytest.mark.parametrize(("method", "path"), our_operations(), ids=[f"{m} {p}" for m, p in our_operations()])
def test_every_route_survives_generated_requests(server: Any, method: str, path: str) -> None:
    """schemathesis writes requests from the server's own OpenAPI document: no answer is a 5xx."""
    import schemathesis
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_dict(server.app.openapi())
    operation = schema[path][method]

    @settings(max_examples=max(10, EXAMPLES // 3), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        case.call_and_validate(base_url=server.base_url.removesuffix("/v1"), checks=[not_a_server_error],
                               headers={"Authorization": f"Bearer {KEY}"}, timeout=120)

    run()


def test_limits_on_bodies_messages_and_file_names(server: Any, http: httpx.Client) -> None:
    def error(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        return response.json()["error"]

    one = [{"role": "user", "content": "hi"}]
    model = "smollm2-135m-instruct"
    # A body over the limit (0.25 MB here): refused whole, whether its length is declared or not.
    big = json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * 300_000}]})
    assert error(http.post("/chat/completions", content=big, headers={"Content-Type": "application/json"}),
                 413)["code"] == "request_too_large"

    def chunks() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536].encode()

    assert error(http.post("/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}),
                 413)["code"] == "request_too_large"
    # Too many messages, or a message too long, for this server: 400 naming the parameter.
    found = error(http.post("/chat/completions", json={"model": model, "messages": one * 51}), 400)
    assert found["param"] == "messages" and found["code"] == "too_many_messages"
    found = error(http.post("/chat/completions", json={"model": model, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "y" * 20_001}]}]}), 400)
    assert found["param"] == "messages[0].content" and found["code"] == "message_too_long"
    # An upload's name is metadata only: never a path, never outside the home.
    for name in ["../../../../tmp/escaped.jsonl", "..\\..\\escaped.jsonl", "evil\nname\x00.jsonl", "..", "a" * 600]:
        made = http.post("/files", data={"purpose": "fine-tune"}, files={"file": (name, gadget_facts())})
        assert made.status_code == 200, made.text
        stored = made.json()
        assert "/" not in stored["filename"] and "\\" not in stored["filename"] and "\n" not in stored["filename"]
        assert len(stored["filename"]) <= 255
        assert http.get(f"/files/{stored['id']}/content").content == gadget_facts()
    assert not Path("/tmp/escaped.jsonl").exists()
    written = [p for p in server.home.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(server.home.resolve()) for p in written)
    # Uploads over their own limit (0.05 MB here) are 413 too.
    assert error(http.post("/files", data={"purpose": "fine-tune"}, files={"file": ("big.jsonl", b"x" * 60_000)}),
                 413)


IMAGE_FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "BMP"]


def image_bytes(fmt: str, size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(fmt=st.sampled_from(IMAGE_FORMATS), width=st.integers(1, 64), height=st.integers(1, 64),
       cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8)), max_size=4),
       truncate=st.one_of(st.none(), st.integers(0, 2000)))
def test_generated_and_damaged_images_give_typed_errors(fmt: str, width: int, height: int,
                                                         cuts: list[tuple[int, bytes]], truncate: int | None) -> None:
    data = bytearray(image_bytes(fmt, (width, height)))
    for at, junk in cuts:  # overwrite a few bytes anywhere, header included
        at %= max(1, len(data))
        data[at:at + len(junk)] = junk
    if truncate is not None:
        data = data[:truncate]
    try:
        prepared = prepare_image(bytes(data))
    except InputError:
        return  # typed, and names the problem
    assert prepared.width >= 1 and prepared.height >= 1 and prepared.data_url.startswith("data:image/")


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                      max_size=5), max_leaves=20)
ASSISTANT_KEYS = st.sampled_from(["id", "name", "model", "instructions", "temperature", "tools", "extra", "file_ids"])


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(
    JSON_VALUE,
    st.lists(st.dictionaries(ASSISTANT_KEYS, JSON_VALUE, max_size=6), max_size=4),
    st.dictionaries(st.text(max_size=10), st.dictionaries(ASSISTANT_KEYS, JSON_VALUE, max_size=6), max_size=3)),
    suffix=st.sampled_from([".json", ".toml"]), raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_generated_assistants_files_load_or_give_typed_errors(tmp_path_factory: pytest.TempPathFactory, data: Any,
                                                              suffix: str, raw: bytes | None) -> None:
    path = tmp_path_factory.mktemp("assistants") / f"assistants{suffix}"
    path.write_bytes(raw if raw is not None else json.dumps(data).encode())
    try:
        loaded = load_assistants_file(path)
    except AssistantsFileError as exc:
        assert str(path) in str(exc)
        return
    assert all(a.id for a in loaded)


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage \x80" * 50, b"{" * 5000, b"\xef\xbb\xbf",
                                     ("q" * 200_000 + ",a\n").encode()], ids=["binary", "braces", "bom", "long-line"])
def test_hostile_files_through_the_cli_give_one_line(home: Path, content: bytes) -> None:
    for name in ["data.csv", "data.jsonl"]:
        path = home / name
        path.write_bytes(content)
        for args in (["data", "validate", str(path)], ["train", str(path)], ["eval", str(path), "-m", "x"]):
            result = run_cli(*args)
            assert result.code != 0, (args, result)
            assert "Traceback" not in result.stderr + result.stdout, (args, result.stderr[-2000:])
    image = home / "picture.png"
    image.write_bytes(content)
    with StandIn() as vendor:  # a remote model that may see: the image itself is read, and refused
        described = run_cli("describe", "--model", "standin-model", str(image),
                            env={"OPENAI_BASE_URL": vendor.base_url, "OPENAI_API_KEY": "sk-unused-000000"})
        assert_one_line_error(described, "picture.png")
        assert vendor.requests == []
    (home / "assistants.json").write_bytes(content)
    assert_one_line_error(run_cli("assistants", "list"), "assistants.json")
