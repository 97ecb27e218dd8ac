"""Images sent to the server: base64 text or data URIs in, PIL images (RGB) out, within limits.

URLs and server-side paths are refused, never fetched or read: the server makes no outgoing
requests (no SSRF) and reads no files on a client's behalf. :func:`open_image` is the one place
bytes become pixels (through :func:`fashion.data.images.load_image`), with the pixel limit checked on
the header before anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

_URL = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.\-]*://|//)")
_DATA_URI = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.IGNORECASE)
_PATH_HINT = re.compile(
    r"(^[/~.]|^[a-zA-Z]:[\\/]|\\|\.(?:jpe?g|png|gif|webp|bmp|tiff?|avif|heic)$)", re.IGNORECASE
)
_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


class ImageRejected(ValueError):
    """One image cannot be used; the message says why and what to send instead."""


def image_bytes(value: Any, where: str) -> bytes:
    """The bytes of one ``images`` entry of a JSON request: base64 text or a data URI."""
    if not isinstance(value, str):
        raise ImageRejected(
            f"{where}: expected a base64 string or a data URI, got {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        raise ImageRejected(f"{where}: the image string is empty")
    if _URL.match(text):
        raise ImageRejected(
            f"{where}: images are not fetched by URL ({text[:60]}); the server makes no "
            "outgoing requests. Download the image and send its bytes base64-encoded or as a "
            "data URI (data:image/jpeg;base64,...)."
        )
    match = _DATA_URI.match(text)
    if match:
        kind = match.group("type").strip().lower()
        if kind and not kind.startswith("image/"):
            raise ImageRejected(f"{where}: the data URI has type {kind!r}; send an image/* type")
        if ";base64" not in match.group("params").lower():
            raise ImageRejected(f"{where}: the data URI is not base64-encoded (add ';base64')")
        text = text[match.end():]
    path_like = not match and len(text) < 1024 and bool(_PATH_HINT.search(text))
    compact = re.sub(r"\s+", "", text)
    altchars = b"-_" if ("-" in compact or "_" in compact) else None  # URL-safe base64
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars, validate=True)
    except (binascii.Error, ValueError):
        data = None
    # "/etc/passwd" is valid base64 too: a path-like string that decodes to no image is a path.
    if path_like and (data is None or not data.startswith(_MAGIC)):
        raise ImageRejected(
            f"{where}: {text[:60]!r} looks like a file path; the server reads no files on a "
            "client's behalf. Send the image bytes base64-encoded or as a data URI."
        )
    if data is None:
        raise ImageRejected(f"{where}: not valid base64 (nor a data URI)")
    if not data:
        raise ImageRejected(f"{where}: the image decodes to 0 bytes")
    return data


def open_image(data: bytes, *, max_pixels: int, where: str) -> Any:
    """Decode ``data`` into an RGB PIL image with :func:`fashion.data.images.load_image` (the one
    image loader: EXIF orientation, 16-bit scaling, transparency on white, as the Predictor
    reads a file), refusing images over ``max_pixels`` (w x h).

    The size is read from the header, so a decompression bomb (a small file that decodes to
    gigapixels) is refused before it is decoded.
    """
    from fashion.data.images import load_image
    from fashion.errors import DataError

    try:
        return load_image(data, where=where, max_pixels=max_pixels)
    except DataError as exc:
        raise ImageRejected(str(exc)) from None


#: Peak bytes per pixel of decoding one image to RGB with ``load_image``, by the mode its header
#: declares (measured on 9 and 39 Mpx images with /proc/self VmHWM: PIL stores RGB in 4 bytes;
#: transparency is composited on white through two RGBA copies; 16/32-bit samples are scaled to
#: 8 bits through float64 arrays). A mode not listed counts as the most expensive one.
DECODE_BYTES_PER_PIXEL: dict[str, int] = {
    "RGB": 4, "L": 5, "P": 5, "1": 5, "CMYK": 8, "YCbCr": 8, "LAB": 8, "HSV": 8,
    "RGBA": 20, "LA": 20, "PA": 20, "RGBa": 20, "La": 20,
    "I;16": 34, "I;16B": 34, "I;16L": 34, "I;16N": 34, "I": 36, "F": 44,
}
_WORST = max(DECODE_BYTES_PER_PIXEL.values())
RGB_BYTES_PER_PIXEL = DECODE_BYTES_PER_PIXEL["RGB"]


def decode_cost(data: bytes) -> tuple[int, int] | None:
    """``(pixels, bytes)`` that decoding ``data`` will take, read from the image header only
    (PIL opens lazily: no pixel is decoded), or ``None`` when the header cannot be read (the
    decode step then refuses the image with its own message)."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                mode = image.mode
                transparent = "transparency" in image.info
    except Exception:  # noqa: BLE001 - any unreadable header is the decoder's to explain
        return None
    pixels = max(0, int(width)) * max(0, int(height))
    per_pixel = DECODE_BYTES_PER_PIXEL.get(mode, _WORST)
    if transparent:
        per_pixel = max(per_pixel, DECODE_BYTES_PER_PIXEL["RGBA"])
    return pixels, pixels * per_pixel
