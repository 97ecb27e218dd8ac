"""The ``full`` and ``center`` croppers: the whole picture, and its middle at full resolution.

A product photo is usually much larger than the backbone's input. ``full`` shows the backbone
the whole image, downsampled (antialiased, so fine patterns blur into their mean color);
``center`` cuts the central square (rule of thirds: the subject sits in the middle cell) at
about its native resolution, so stripes, checks and prints survive.

Both take train-time augmentation as an option (``augment``, :class:`AugmentOptions`): a random
resized crop within the view's box, a horizontal flip, a small rotation, blur and JPEG noise
like vendor photos, and colour jitter (``hue``). It runs only while the cropper is in train
mode (the trainer's epochs and its feature-cache variants), never at prediction time; it is
recorded in the bundle with the other options and left out of the cropper's fingerprint (the
views it cuts at prediction time do not depend on it).
"""

from __future__ import annotations

import io
import random
from typing import Annotated, Any, Literal

from PIL import Image, ImageColor, ImageEnhance, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fashion import Cropper, CropperOptions, View, hookimpl
from fashion.contract.components import module_fingerprint
from fashion.contract.hookspecs import Register
from fashion.data.images import augment_random, resize_square, to_rgb

AUGMENTATIONS = ("crop", "flip", "rotate", "blur", "jpeg", "hue")
"""The augmentation names an attribute's ``changed_by`` can list."""


class AugmentOptions(BaseModel):
    """Train-time augmentation of one view; every default is off."""

    model_config = ConfigDict(extra="forbid")

    crop: float = Field(1.0, gt=0.0, le=1.0, description="Random resized crop within the view's box: the smallest area kept, as a fraction (aspect 3:4 to 4:3); 1 turns it off.")
    flip: bool = Field(False, description="Mirror left-right half the time.")
    rotate: float = Field(0.0, ge=0.0, le=30.0, description="Rotate by up to this many degrees either way (corners filled white).")
    blur: float = Field(0.0, ge=0.0, le=1.0, description="Probability of a Gaussian blur (radius 0.3-1.5 px of the source).")
    jpeg: float = Field(0.0, ge=0.0, le=1.0, description="Probability of re-encoding as JPEG at quality 30-85.")
    hue: float = Field(0.0, ge=0.0, le=0.5, description="Colour jitter: brightness, contrast and saturation by up to this fraction, hue by up to half of it. Changes a color label: refused for a model with a color attribute.")

    def active(self) -> list[str]:
        """The augmentations these options turn on (names of :data:`AUGMENTATIONS`)."""
        on = {"crop": self.crop < 1.0, "flip": self.flip, "rotate": self.rotate > 0, "blur": self.blur > 0,
              "jpeg": self.jpeg > 0, "hue": self.hue > 0}
        return [name for name in AUGMENTATIONS if on[name]]


def _random_box(box: tuple[int, int, int, int], smallest: float, rng: random.Random) -> tuple[int, int, int, int]:
    """A random sub-box of ``box`` keeping ``smallest``..1 of its area, aspect 3:4..4:3."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    for _ in range(10):
        area = width * height * rng.uniform(smallest, 1.0)
        aspect = 2 ** rng.uniform(-0.415, 0.415)
        w, h = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        if 0 < w <= width and 0 < h <= height:
            x, y = left + rng.randint(0, width - w), top + rng.randint(0, height - h)
            return x, y, x + w, y + h
    return box


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    hue, saturation, value = image.convert("HSV").split()
    hue = hue.point(lambda h: (h + round(shift * 255)) % 256)
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def augment_region(image: Image.Image, box: tuple[int, int, int, int], options: AugmentOptions,
                   rng: random.Random | None = None) -> Image.Image:
    """The region ``box`` of ``image`` (RGB) with ``options``' augmentations applied; the caller
    resizes it to the view's size."""
    rng = rng or augment_random()  # this image's own generator inside FashionModel.prepare
    if options.crop < 1.0:
        box = _random_box(box, options.crop, rng)
    region = image.crop(box)
    if options.rotate > 0:
        region = region.rotate(rng.uniform(-options.rotate, options.rotate), Image.Resampling.BILINEAR,
                               fillcolor=(255, 255, 255))
    if options.flip and rng.random() < 0.5:
        region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if options.hue > 0:
        j = options.hue
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            region = enhance(region).enhance(rng.uniform(1 - j, 1 + j))
        region = _shift_hue(region, rng.uniform(-j / 2, j / 2))
    if options.blur > 0 and rng.random() < options.blur:
        region = region.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    if options.jpeg > 0 and rng.random() < options.jpeg:
        buffer = io.BytesIO()
        region.save(buffer, format="JPEG", quality=rng.randint(30, 85))
        region = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return region


class _Augmenting:
    """What ``full`` and ``center`` share: ``augmentations()`` (what the trainer checks against
    the attributes' ``changed_by``) and a fingerprint without the ``augment`` options."""

    options: Any
    training: bool
    component_name: str

    def augmentations(self) -> list[str]:
        """The train-time augmentations this cropper applies (in train mode only)."""
        return self.options.augment.active() if self.options.augment is not None else []

    def augmenting(self) -> bool:
        return self.training and self.options.augment is not None

    def fingerprint(self) -> str:
        options = {k: v for k, v in self.options.model_dump(mode="json").items() if k != "augment"}
        return module_fingerprint(self, self.component_name, options)  # type: ignore[arg-type]

Channel = Annotated[int, Field(ge=0, le=255)]


class FullOptions(CropperOptions):
    augment: AugmentOptions | None = Field(None, description="Train-time augmentation (off at prediction time).")
    mode: Literal["squash", "letterbox"] = Field(
        "squash", description="squash: stretch to a square; letterbox: keep the aspect ratio."
    )
    fill: tuple[Channel, Channel, Channel] = Field(
        (255, 255, 255), description="Letterbox padding color (RGB or a name)."
    )

    @field_validator("fill", mode="before")
    @classmethod
    def _color(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return ImageColor.getrgb(value)[:3]
            except ValueError:
                raise ValueError(
                    f"unknown color {value!r}; use a name ('white'), '#ffffff' or [255, 255, 255]"
                ) from None
        return value


class FullCropper(_Augmenting, Cropper[FullOptions]):
    """The whole image downsampled to S x S: overall shape, silhouette and color."""

    name = "full"

    def crop(self, image: Image.Image) -> list[View]:
        o = self.options
        rgb = to_rgb(image, o.fill)
        box = (0, 0, *rgb.size)
        if self.augmenting():
            rgb = augment_region(rgb, box, o.augment)  # type: ignore[arg-type]
        view = resize_square(rgb, o.size, o.mode, o.fill, o.resample)
        return [View(view, box=box)]


class CenterOptions(CropperOptions):
    augment: AugmentOptions | None = Field(None, description="Train-time augmentation (off at prediction time).")
    fraction: float = Field(
        1 / 3,
        gt=0.0,
        le=1.0,
        description="Side of the central square as a fraction of the shorter image side. "
        "fraction * min(width, height) == size keeps the native resolution.",
    )


class CenterCropper(_Augmenting, Cropper[CenterOptions]):
    """The central square of the image, resized only as far as needed to reach S x S."""

    name = "center"

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The centered square (left, top, right, bottom) of a ``width`` x ``height`` image."""
        side = min(width, height, max(1, round(self.options.fraction * min(width, height))))
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side

    def crop(self, image: Image.Image) -> list[View]:
        rgb = to_rgb(image)
        box = self.box(*rgb.size)
        region = augment_region(rgb, box, self.options.augment) if self.augmenting() else rgb.crop(box)  # type: ignore[arg-type]
        return [View(resize_square(region, self.options.size, resample=self.options.resample), box=box)]


@hookimpl
def register_croppers(register: Register) -> None:
    register(FullCropper)
    register(CenterCropper)
