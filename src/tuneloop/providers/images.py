"""Images made ready for any vision endpoint: checked, upright, in a common mode, sized within OpenAI's limits.

>>> from tuneloop.providers.images import prepare_image
>>> image = prepare_image("photo.jpg")          # or bytes
>>> image.data_url[:23], image.width, image.height, image.reference()
('data:image/jpeg;base64,', 2048, 1536, {...})

The format comes from the bytes, never the file name. The header is read first: files over the size
limit and images whose header claims more pixels than the limit are refused before any pixel is
decoded (a decompression bomb never reaches memory). Then EXIF orientation is applied, the first frame
of an animation is taken, CMYK / palette / 16-bit / alpha modes become RGB(A) or L, and the image is
scaled so the long side is at most 2048 px and the short side at most 768 px (512 px for
``detail="low"``), then re-encoded: PNG when it has transparency or few colours, JPEG otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tuneloop.errors import ImageError, ImageTooLargeError, InputError

Detail = Literal["auto", "low", "high"]

MAX_FILE_BYTES = 20 * 1024 * 1024  # OpenAI's own limit per image
MAX_PIXELS = 100_000_000  # a 40-megapixel photo passes; a 50,000 × 50,000 header does not
LONG_SIDE = 2048
SHORT_SIDE = 768
LOW_DETAIL_SIDE = 512
JPEG_QUALITY = 88


@dataclass(frozen=True)
class PreparedImage:
    """An image encoded for an ``image_url`` content part, and what is logged about it instead of its bytes."""

    data: bytes
    mime: str
    width: int
    height: int
    source: str
    source_format: str
    source_width: int
    source_height: int
    source_bytes: int
    sha256: str  # of the original file
    detail: Detail

    @property
    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def content_part(self) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": self.data_url, "detail": self.detail}}

    def reference(self) -> dict[str, Any]:
        """What the dialogue log keeps: enough to find and recognise the image, never the pixels."""
        return {"type": "image", "source": self.source, "sha256": self.sha256, "format": self.source_format,
                "bytes": self.source_bytes, "width": self.source_width, "height": self.source_height,
                "sent": {"mime": self.mime, "width": self.width, "height": self.height, "bytes": len(self.data),
                         "detail": self.detail}}


def _read(source: str | Path | bytes, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        data, name = bytes(source), "image"
    else:
        path = Path(source).expanduser()
        name = str(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageError(f"cannot be read: {exc.strerror or exc}", source=name) from None
        if path.is_dir():
            raise ImageError("is a folder, not an image file", source=name)
        if size > max_bytes:
            raise ImageTooLargeError(f"is {size:,} bytes, over the {max_bytes:,}-byte limit; make it smaller first",
                                     source=name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot be read: {exc.strerror or exc}", source=name) from None
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"is {len(data):,} bytes, over the {max_bytes:,}-byte limit", source=name)
    if not data:
        raise ImageError("is empty", source=name)
    return data, name


def _target_size(width: int, height: int, detail: Detail) -> tuple[int, int]:
    long_limit, short_limit = (LOW_DETAIL_SIDE, LOW_DETAIL_SIDE) if detail == "low" else (LONG_SIDE, SHORT_SIDE)
    scale = min(1.0, long_limit / max(width, height), short_limit / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _normalise_mode(image: Any) -> Any:
    """RGB, RGBA or L: what every endpoint and encoder accepts."""

    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode == "RGBA":
        return image if image.getextrema()[3][0] < 255 else image.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grey: scale the used range to 8 bits rather than clip it.
        grey = image if mode == "I" else image.convert("I")
        low, high = grey.getextrema()
        span = max(1, high - low)
        return grey.point(lambda v: (v - low) * 255 / span, "F").convert("L")
    if mode == "F":
        return image.convert("L")
    if mode == "CMYK":
        return image.convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBa"):
        has_alpha = mode in ("PA", "LA", "La", "RGBa") or "transparency" in image.info
        converted = image.convert("RGBA" if has_alpha else "RGB")
        return _normalise_mode(converted)
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _encode(image: Any) -> tuple[bytes, str]:
    out = io.BytesIO()
    colours = image.getcolors(256)  # None when there are more than 256
    few_colours = colours is not None and (image.mode == "RGB" or len(colours) <= 16)
    if image.mode == "RGBA" or few_colours:
        image.save(out, format="PNG", optimize=True)
        return out.getvalue(), "image/png"
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), "image/jpeg"


def prepare_image(source: str | Path | bytes, *, detail: Detail = "auto", max_bytes: int = MAX_FILE_BYTES,
                  max_pixels: int = MAX_PIXELS) -> PreparedImage:
    """Read, check, orient, convert, resize and encode an image; raises :class:`ImageError` naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if detail not in ("auto", "low", "high"):
        raise InputError(f"detail {detail!r}: use auto, low or high", param="detail")
    data, name = _read(source, max_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError:
            raise ImageError("is not an image in a format Pillow reads (JPEG, PNG, GIF, WebP, BMP, TIFF…)",
                             source=name) from None
        except Image.DecompressionBombError:
            raise ImageTooLargeError(
                f"declares more than {max_pixels:,} pixels; this is refused before decoding (a header this large "
                "usually means a decompression bomb)", source=name) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"cannot be read as an image: {exc}", source=name) from None
        source_format = (image.format or "unknown").lower()
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"declares {width:,} × {height:,} pixels, over the {max_pixels:,}-pixel limit; this is refused "
                "before decoding (a file this size is usually a decompression bomb)", source=name)
        try:
            image.seek(0)  # the first frame of an animation
            upright = _upright_size(image)
            target = _target_size(*upright, detail)
            if source_format == "jpeg":  # decode a big JPEG at 1/2…1/8 scale, never below the target size
                image.draft(image.mode, target if upright == image.size else (target[1], target[0]))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _normalise_mode(image)
            target = _target_size(image.width, image.height, detail)
            if image.size != target:
                image = image.resize(target, Image.Resampling.LANCZOS)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"is damaged or truncated ({exc}); re-export it and try again", source=name) from None
    encoded, mime = _encode(image)
    return PreparedImage(
        data=encoded, mime=mime, width=image.width, height=image.height, source=name, source_format=source_format,
        source_width=width, source_height=height, source_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        detail=detail,
    )


def _upright_size(image: Any) -> tuple[int, int]:
    """The size once EXIF orientation is applied (5–8 swap width and height)."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses the rotation
        orientation = 1
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
