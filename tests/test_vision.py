"""Images: real photographs and hostile edge cases, prepared and sent to a vision endpoint, or refused."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import MODELS_DIR, assert_one_line_error, run_cli
from PIL import Image
from standin import StandIn
from tiny_vlm import build_tiny_vlm

from tuneloop import OpenAIModel
from tuneloop.asgi import create_app
from tuneloop.errors import ModelCannotSeeError, ReplyNotJSONError
from tuneloop.providers.images import ImageError, ImageTooLargeError, prepare_image
from tuneloop.runtime import Runtime
from tuneloop.serving import ServerThread, server_settings

PHOTOS = Path(__file__).parent / "data"
KEY = "sk-vision-secret-42"


def sent_image(body: dict[str, Any]) -> tuple[Image.Image, str, str]:
    """The image the endpoint received in the last user message: (decoded image, mime, detail)."""
    parts = [p for p in body["messages"][-1]["content"] if p["type"] == "image_url"]
    assert len(parts) == 1
    url = parts[0]["image_url"]["url"]
    header, data = url.split(",", 1)
    mime = header.removeprefix("data:").removesuffix(";base64")
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    assert image.format.lower() == mime.split("/")[1]
    return image, mime, parts[0]["image_url"].get("detail", "auto")


def within_limits(image: Image.Image) -> bool:
    return max(image.size) <= 2048 and min(image.size) <= 768


def save(image: Image.Image, path: Path, fmt: str, **options: Any) -> Path:
    image.save(path, fmt, **options)
    return path


@pytest.fixture
def vision(home: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    with StandIn(api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "rocket.jpg"])
def test_real_photographs_are_sent_as_they_are(vision: StandIn, name: str) -> None:
    original = Image.open(PHOTOS / name)
    answer = OpenAIModel().describe_image(PHOTOS / name, "What is in this photo?")
    assert answer.startswith("Stand-in reply")
    image, mime, detail = sent_image(vision.requests[-1])
    assert image.size == original.size and within_limits(image)  # all three are already small enough
    assert mime == "image/jpeg" and image.mode == "RGB" and detail == "auto"
    assert vision.requests[-1]["model"] == "gpt-4o-mini"


def exif_rotated(path: Path) -> Path:
    image = Image.new("RGB", (4000, 3000), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 2000, 3000))  # left half red as stored
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the stored left half is on top
    return save(image, path / "rotated.jpg", "JPEG", exif=exif.tobytes())


def cmyk(path: Path) -> Path:
    return save(Image.new("CMYK", (1200, 900), (0, 200, 200, 0)), path / "label.jpg", "JPEG")


def sixteen_bit(path: Path) -> Path:
    image = Image.new("I;16", (640, 480))
    image.putdata([(x * 100) % 65536 for x in range(640)] * 480)
    return save(image, path / "scan16.png", "PNG")


def palette_with_transparency(path: Path) -> Path:
    image = Image.new("P", (300, 200), 1)
    image.putpalette([0, 0, 0, 255, 128, 0] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 150, 200))
    return save(image, path / "logo.png", "PNG", transparency=0)


def animated(path: Path) -> Path:
    frames = [Image.new("RGB", (320, 240), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return save(frames[0], path / "anim.gif", "GIF", save_all=True, append_images=frames[1:], duration=100)


def forty_megapixels(path: Path) -> Path:
    gradient = Image.linear_gradient("L").resize((8000, 5000))
    return save(Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient)),
                path / "huge.jpg", "JPEG", quality=85)


def jpeg_named_png(path: Path) -> Path:
    image = Image.linear_gradient("L").resize((900, 600)).convert("RGB")
    return save(image, path / "really-a-jpeg.png", "JPEG")


CASES = {
    "exif-rotated JPEG": (exif_rotated, (768, 1024), "RGB"),
    "CMYK JPEG": (cmyk, (1024, 768), "RGB"),
    "16-bit PNG": (sixteen_bit, (640, 480), "L"),
    "palette PNG with transparency": (palette_with_transparency, (300, 200), "RGBA"),
    "animated GIF": (animated, (320, 240), "RGB"),
    "40-megapixel JPEG": (forty_megapixels, (1229, 768), "RGB"),
    "JPEG named .png": (jpeg_named_png, (900, 600), "RGB"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_edge_cases_arrive_upright_converted_and_sized(vision: StandIn, tmp_path: Path, case: str) -> None:
    make, size, mode = CASES[case]
    path = make(tmp_path)
    OpenAIModel().describe_image(path)
    image, mime, _ = sent_image(vision.requests[-1])
    assert image.size == size and image.mode == mode and within_limits(image), (image.size, image.mode)
    rgb = image.convert("RGBA")
    if case == "exif-rotated JPEG":
        assert rgb.getpixel((384, 50))[:3] > (200, 0, 0) and rgb.getpixel((384, 1000))[2] > 200  # red on top
    if case == "palette PNG with transparency":
        assert mime == "image/png" and rgb.getpixel((10, 10))[3] == 0 and rgb.getpixel((290, 10)) == (255, 128, 0, 255)
    if case == "animated GIF":
        assert rgb.getpixel((5, 5))[:3] == (255, 0, 0)  # the first frame
    if case == "16-bit PNG":
        assert image.getextrema()[1] - image.getextrema()[0] > 200  # the range survives, scaled to 8 bits
    if case == "JPEG named .png":
        assert prepare_image(path).source_format == "jpeg"


def png_header_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def test_hostile_and_broken_files_are_refused_quickly(vision: StandIn, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_claiming(50_000, 50_000))
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        OpenAIModel().describe_image(bomb)
    assert time.perf_counter() - started < 1.0  # refused from the header, nothing decoded

    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((PHOTOS / "rocket.jpg").read_bytes()[:20_000])
    with pytest.raises(ImageError, match=r"cut\.jpg.*(damaged|truncated)"):
        OpenAIModel().describe_image(truncated)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(ImageError, match=r"notes\.png.*not an image"):
        OpenAIModel().describe_image(text)
    with pytest.raises(ImageError, match="missing.jpg"):
        OpenAIModel().describe_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageTooLargeError, match="rocket.jpg"):
        prepare_image(PHOTOS / "rocket.jpg", max_bytes=10_000)
    assert not vision.requests  # nothing was sent


def test_low_detail_is_smaller(vision: StandIn) -> None:
    OpenAIModel().describe_image(PHOTOS / "coffee.png", detail="low")
    image, _, detail = sent_image(vision.requests[-1])
    assert detail == "low" and max(image.size) <= 512


def test_json_replies_become_dicts(vision: StandIn, home: Path) -> None:
    vision.reply_for = lambda body: '```json\n{"color": "orange", "text_on_label": "DSCOVR"}\n```'
    model = OpenAIModel()
    fields = model.describe_image(PHOTOS / "rocket.jpg", "Return JSON with keys color and text_on_label.")
    assert fields == {"color": "orange", "text_on_label": "DSCOVR"}
    assert model.describe_image(PHOTOS / "rocket.jpg", "What colour?", json_reply=True) == fields
    assert "JSON object" in vision.requests[-1]["messages"][-1]["content"][0]["text"]

    vision.reply_for = lambda body: "It is an orange rocket."
    with pytest.raises(ReplyNotJSONError, match="not a JSON object"):
        model.describe_image(PHOTOS / "rocket.jpg", "Describe it as JSON.")
    vision.reply_for = lambda body: "[1, 2]"
    with pytest.raises(ReplyNotJSONError, match="list"):
        model.describe_image(PHOTOS / "rocket.jpg", "Describe it as JSON.")

    # Logged like any other exchange, with a reference to the image and never its bytes.
    user_turns = [m for m in model.runtime.db.dialogue.messages(model.thread_id) if m.role == "user"]
    reference = user_turns[0].attachments[0]
    assert reference["format"] == "jpeg" and (reference["width"], reference["height"]) == (640, 427)
    assert len(reference["sha256"]) == 64
    assert reference["sent"]["mime"] == "image/jpeg"
    sent = sent_image(vision.requests[-1])
    assert sent is not None
    url = vision.requests[-1]["messages"][-1]["content"][1]["image_url"]["url"]
    assert url.split(",", 1)[1][1000:1100].encode() not in (home / "tuneloop.db").read_bytes()
    assert KEY.encode() not in (home / "tuneloop.db").read_bytes()


def test_describe_image_by_requests_is_deprecated_but_works(vision: StandIn) -> None:
    model = OpenAIModel()
    with pytest.warns(DeprecationWarning, match="describe_image"):
        answer = model.describe_image_by_requests(PHOTOS / "chelsea.png", "What animal is this?")
    assert answer.startswith("Stand-in reply")
    image, _, _ = sent_image(vision.requests[-1])  # validated by the stand-in against OpenAI's schema
    assert image.size == (451, 300)
    assert model.dialogue[-1]["content"] == answer


def test_models_declare_whether_they_see(home: Path, vision: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    # A remote model tuneloop knows nothing about is sent the image: its server decides.
    assert OpenAIModel(model_name="standin-model").describe_image(PHOTOS / "coffee.png").startswith("Stand-in")
    assert vision.requests[-1]["model"] == "standin-model"
    # One whose server refuses images: that refusal, as the typed error, and nothing logged as a reply.
    refused = OpenAIModel(model_name="standin-text")
    with pytest.raises(ModelCannotSeeError, match="standin-text.*server refused the image.*only supported by"):
        refused.describe_image(PHOTOS / "coffee.png")
    assert vision.requests[-1]["model"] == "standin-text" and refused.dialogue == []
    result = run_cli("describe", "--model", "standin-text", str(PHOTOS / "coffee.png"))
    assert_one_line_error(result, "standin-text", "refused the image")
    # Declared text-only in the configuration: refused before anything is sent.
    sent = len(vision.requests)
    monkeypatch.setenv("TUNELOOP_MODELS", json.dumps({"standin-text": {"vision": False}}))
    with pytest.raises(ModelCannotSeeError, match="standin-text.*reads text only"):
        OpenAIModel(model_name="standin-text").describe_image(PHOTOS / "coffee.png")
    assert len(vision.requests) == sent
    listed = {m["id"]: m["vision"] for m in json.loads(run_cli("models", "--json").stdout)["models"]}
    assert listed == {"smollm2-135m-instruct": False, "gpt-4o-mini": True, "standin-model": None,
                      "standin-text": False}


def test_the_local_model_cannot_see(home: Path) -> None:
    with pytest.raises(ModelCannotSeeError, match="smollm2-135m-instruct.*cannot see images"):
        OpenAIModel().describe_image(PHOTOS / "chelsea.png")
    result = run_cli("describe", str(PHOTOS / "chelsea.png"))
    assert_one_line_error(result, "smollm2-135m-instruct", "cannot see images", "--model")


@pytest.mark.slow
def test_describe_command(vision: StandIn, tmp_path: Path) -> None:
    vision.reply_for = lambda body: '{"animal": "cat"}'
    result = run_cli("describe", str(PHOTOS / "chelsea.png"), "--json", "--prompt", "Which animal?")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"animal": "cat"}
    vision.reply_for = lambda body: "A tabby cat."
    plain = run_cli("describe", str(PHOTOS / "chelsea.png"), "--detail", "low")
    assert plain.code == 0 and plain.stdout.strip() == "A tabby cat."
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_claiming(50_000, 50_000))
    assert_one_line_error(run_cli("describe", str(bomb)), "bomb.png", "pixels")
    assert_one_line_error(run_cli("describe", str(PHOTOS / "chelsea.png"), "--detail", "huge"), "--detail")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    return build_tiny_vlm(models_dir / "smollm2-135m-instruct", tmp_path_factory.mktemp("vlm") / "tiny-llava")


def test_describe_image_through_serve_with_a_vision_model(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, tiny_vlm: Path, engine: Any) -> None:
    settings = server_settings(home=tmp_path / "server", models_dir=MODELS_DIR, database_url=None, model=None)
    app = create_app(Runtime(settings), api_key=KEY, vision_model=tiny_vlm)
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        listed = client.models.list().data
        assert [m.id for m in listed][:2] == ["smollm2-135m-instruct", "tiny-llava"]
        # The server says which models take images, so its clients know before they send one.
        assert [m.model_extra["input_modalities"] for m in listed][:2] == [["text"], ["text", "image"]]

        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("TUNELOOP_PROVIDER", "openai")
        model = OpenAIModel(model_name="tiny-llava")
        assert model.runtime.accepts_images("tiny-llava") is True  # read from the server, nothing configured
        answer = model.describe_image(PHOTOS / "chelsea.png", "What animal is this?", max_tokens=8)
        assert isinstance(answer, str) and model.last_reply.result.tokens_out == 8  # random weights: noise
        assert model.runtime.db.dialogue.messages(model.thread_id)[0].attachments[0]["width"] == 451
        with pytest.raises(ReplyNotJSONError):  # noise is not JSON, and that is said clearly
            model.describe_image(PHOTOS / "coffee.png", "Describe it as JSON.", max_tokens=8)

        # The image really goes through the vision tower: its placeholder becomes 16 patch embeddings.
        image = prepare_image(PHOTOS / "rocket.jpg")
        with_image = client.chat.completions.create(model="tiny-llava", max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, image.content_part()]}])
        without = client.chat.completions.create(model="tiny-llava", max_tokens=4,
                                                 messages=[{"role": "user", "content": "Hi"}])
        assert with_image.usage.prompt_tokens == without.usage.prompt_tokens + 16
        chunks = list(client.chat.completions.create(model="tiny-llava", max_tokens=4, stream=True, messages=[
            {"role": "user", "content": [image.content_part()]}]))
        assert chunks[-1].choices[0].finish_reason == "length"

        def refused(part: dict[str, Any], model_id: str = "tiny-llava") -> str:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model=model_id, max_tokens=4,
                                               messages=[{"role": "user", "content": [part]}])
            return str(caught.value)

        assert "does not fetch" in refused({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
        bomb = base64.b64encode(png_header_claiming(50_000, 50_000)).decode()
        assert "pixels" in refused({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{bomb}"}})
        assert "base64" in refused({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}})
        assert "read text only" in refused(image.content_part(), "smollm2-135m-instruct")


def test_serve_refuses_a_missing_vision_model(home: Path, tmp_path: Path) -> None:
    result = run_cli("serve", "--vision-model", str(tmp_path / "nowhere"))
    assert_one_line_error(result, "--vision-model", "nowhere", "config.json")
