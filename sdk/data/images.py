"""Image helpers for every component that reads pictures: decoding, RGB conversion, resizing.

Public API (built-in and third-party plugins use these, never each other's private functions):

- :func:`load_image`: open a path, bytes or PIL image as RGB, with an error naming the source.
- :func:`to_rgb`: a PIL image as RGB, transparency composited onto a background (white).
- :func:`to_8bit`, :func:`upright`, :func:`max_image_pixels`: the steps :func:`load_image` takes
  (high-bit-depth scaling, EXIF orientation, the pixel limit), for plugins that open images.
- :func:`resize_square`: an ``S x S`` view, stretched (``squash``) or padded (``letterbox``).
- :func:`augment_random`: the random source a cropper's train-time augmentation draws from, one
  per image (:func:`augment_seed`), so a seeded run augments alike however its images are cut.
"""

from __future__ import annotations

import contextlib
import io
import random
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from fashion.errors import DataError

RGB = tuple[int, int, int]
ResizeMode = Literal["squash", "letterbox"]
Resample = Literal["bicubic", "bilinear", "lanczos", "box", "hamming", "nearest"]
"""Resize filters by name: a cropper's ``resample`` option (saved with the model)."""


def to_rgb(image: Any, background: RGB = (255, 255, 255)) -> Any:
    """A PIL ``image`` as RGB (itself when it already is); transparent pixels are composited
    onto ``background`` (white, as on a product-on-white shot) rather than turning black."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


#: The most pixels an image may have (width x height); larger ones are refused per product.
#: ``FASHION_MAX_IMAGE_PIXELS`` changes it. 64 megapixels is a 8000 x 8000 photo: far more than
#: any backbone reads, and small enough that a decompression bomb (a few KB of PNG that expands
#: to gigabytes) is refused from its header, before it is decoded.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
_ORIENTATION = 0x0112


def max_image_pixels() -> int:
    """The pixel limit in force (``FASHION_MAX_IMAGE_PIXELS`` or the default)."""
    import os

    setting = os.environ.get("FASHION_MAX_IMAGE_PIXELS", "").strip()
    if not setting:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(setting)
    except ValueError:
        value = 0
    if value < 1:
        from fashion.errors import ConfigError

        raise ConfigError(
            f"FASHION_MAX_IMAGE_PIXELS={setting!r} is not a positive whole number; "
            "set it to e.g. 64000000."
        )
    return value


def _check_size(image: Any, where: str, max_pixels: int | None = None) -> None:
    width, height = image.size
    limit = max_image_pixels() if max_pixels is None else max_pixels
    if width * height > limit:
        raise DataError(
            f"{where}: the image is {width}x{height} = {width * height:,} pixels, over the limit "
            f"of {limit:,} (a decompression bomb or a huge scan); resize it"
            + (", or raise FASHION_MAX_IMAGE_PIXELS if you trust the file." if max_pixels is None
               else " before sending it.")
        )
    if width < 1 or height < 1:
        raise DataError(f"{where}: the image is {width}x{height} pixels (empty)")


def _bits(image: Any) -> int:
    """Bits per sample of a 32-bit-mode (``I``) image: 16 for 16-bit PNG/TIFF data, else 32."""
    if image.format == "PNG":
        return 16
    tags = getattr(image, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return int(bits) if isinstance(bits, int) and bits in (8, 16, 32) else 32


def to_8bit(image: Any) -> Any:
    """A high-bit-depth grayscale image (``I;16*``, ``I``, ``F``) scaled, not clipped, to ``L``.

    16-bit data is divided by 257 (65535 -> 255); 32-bit integers by their full range (negative
    values become 0); floats in [0, 1] are multiplied by 255, floats up to 255 or 65535 are read
    as 8- or 16-bit values, anything wider is stretched from its minimum to its maximum.
    Other modes are returned as they are.
    """
    import numpy as np
    from PIL import Image

    mode = image.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return image
    values = np.asarray(image).astype(np.float64)
    if mode.startswith("I;16"):
        scaled = values / 257.0
    elif mode == "I":
        bits = _bits(image)
        scaled = values * (255.0 / (2**bits - 1 if bits < 32 else 2**31 - 1))
    else:
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        elif low >= 0.0 and high <= 65535.0:
            scaled = values / 257.0
        else:
            scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def upright(image: Any) -> Any:
    """``image`` turned the way its EXIF orientation says (itself when there is nothing to do)."""
    from PIL import ImageOps

    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: the pixels are still fine as stored
        return image
    if orientation in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _describe(source: Any) -> str:
    text = str(source)
    return text if len(text) <= 200 else text[:200] + "..."


def _open(source: Any, where: str) -> Any:
    """A lazily opened PIL image of a path or bytes, with the source checked first."""
    import os

    from PIL import Image

    if source is None:
        raise DataError(f"{where}: the image is None (null); remove it or give a path, bytes or a "
                        "PIL image")
    if isinstance(source, memoryview):
        source = source.tobytes()
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise DataError(f"{where}: the image bytes are empty")
        return Image.open(io.BytesIO(bytes(source)))
    if type(source).__module__ == "numpy":
        raise DataError(
            f"{where}: a numpy array is not accepted as an image; pass "
            "PIL.Image.fromarray(array) (uint8, H x W x 3), a path or encoded bytes."
        )
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(
            f"{where}: an image must be a path, bytes or a PIL image, got {type(source).__name__} "
            f"{_describe(source)[:40]!r}."
        )
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise DataError(f"{where}: the image path is empty")
    if "://" in text[:16]:
        raise DataError(
            f"{where}: {_describe(text)} is a URL; URLs are not fetched. Download the image and "
            "give its local path."
        )
    if "\x00" in text:
        raise DataError(f"{where}: the image path contains a NUL character")
    path = Path(text)
    try:
        if path.is_dir():
            raise DataError(f"{where}: {path} is a folder, not an image file")
        if not path.is_file():
            raise DataError(f"{where}: image file {path} does not exist")
        if path.stat().st_size == 0:
            raise DataError(f"{where}: image file {path} is empty (0 bytes)")
        return Image.open(path)
    except PermissionError:
        raise DataError(f"{where}: image file {path} cannot be read (permission denied)") from None


def load_image(source: Any, *, where: str = "image", max_pixels: int | None = None) -> Any:
    """Open a path, bytes or PIL image as RGB, with an error naming the source on failure.

    Every image goes through the same steps: the source is checked (``None``, a URL, a folder,
    a numpy array and other types get their own message), the size is checked against
    :func:`max_image_pixels` from the header before decoding, the pixels are decoded, turned
    upright by their EXIF orientation, scaled to 8 bits (:func:`to_8bit`) and converted to RGB
    (transparency becomes white). A PIL image already in RGB with no EXIF rotation is returned
    as is (not copied). Every failure is a :class:`DataError` starting with ``where``.
    ``max_pixels`` replaces :func:`max_image_pixels` with a caller's own limit (``fashion serve
    --max-image-pixels``, which may not exceed it).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if hasattr(source, "convert") and hasattr(source, "size"):
        _check_size(source, where, max_pixels)
        if source.mode == "RGB" and not source.info.get("exif"):
            return source
        return to_rgb(to_8bit(upright(source)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(source, where)
            _check_size(image, where, max_pixels)
            image.load()
            return to_rgb(to_8bit(upright(image)))
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"{where}: the image is over the pixel limit, refused before decoding ({exc})"
        ) from None
    except UnidentifiedImageError:
        shown = _describe(source) if isinstance(source, (str, Path)) else "(bytes)"
        raise DataError(f"{where}: cannot decode image {shown}: not an image format Pillow "
                        "reads (PNG, JPEG, WebP, TIFF, ...)") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError,
            IndexError, KeyError, ZeroDivisionError, struct.error, MemoryError) as exc:
        kind = type(exc).__name__
        raise DataError(
            f"{where}: cannot decode image {_describe(source) if isinstance(source, (str, Path)) else '(bytes)'}: "
            f"{exc or kind}"
        ) from None


def resize_square(
    image: Any,
    size: int,
    mode: ResizeMode = "squash",
    fill: RGB = (255, 255, 255),
    resample: Resample = "bicubic",
) -> Any:
    """Resize ``image`` to ``size`` x ``size``: stretch it (squash) or pad it with ``fill``.

    ``resample`` names the filter (default bicubic; PIL widens the kernel when reducing, so every
    filter but ``nearest`` resizes antialiased).
    """
    from PIL import Image

    if image.size == (size, size):
        return image
    method = Image.Resampling[resample.upper()]
    if mode == "squash":
        return image.resize((size, size), method)
    w, h = image.size
    scale = size / max(w, h)
    inner = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(image.resize(inner, method), ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


_AUGMENT = threading.local()


def augment_random() -> random.Random:
    """The generator a cropper's train-time augmentation draws from for the image it is cutting.

    ``FashionModel.prepare`` cuts a batch's images in a few threads; draws from the shared global
    :mod:`random` would then depend on which thread got there first, and a seeded run (a cache of
    augmented variants, a fine-tuning run) would augment differently each time. So prepare draws
    one seed per image from the global :mod:`random`, in the batch's order, and cuts each image
    inside :func:`augment_seed`: this returns that image's generator. Outside it (a cropper called
    directly) it returns a fresh generator seeded from the global :mod:`random`."""
    rng = getattr(_AUGMENT, "rng", None)
    return rng if rng is not None else random.Random(random.getrandbits(64))


@contextlib.contextmanager
def augment_seed(seed: int | None) -> Iterator[None]:
    """Within this block (in this thread), :func:`augment_random` is ``random.Random(seed)``;
    ``None`` leaves it as it is. Blocks nest: the outer generator is back after an inner one."""
    if seed is None:
        yield
        return
    outer = getattr(_AUGMENT, "rng", None)
    _AUGMENT.rng = random.Random(seed)
    try:
        yield
    finally:
        _AUGMENT.rng = outer


__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "RGB",
    "Resample",
    "ResizeMode",
    "augment_random",
    "augment_seed",
    "load_image",
    "max_image_pixels",
    "resize_square",
    "to_8bit",
    "to_rgb",
    "upright",
]
