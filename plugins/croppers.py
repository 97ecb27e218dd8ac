"""The ``full`` and ``center`` croppers: the whole picture, and its middle at full resolution.

A product photo is usually much larger than the backbone's input. ``full`` shows the backbone
the whole image, downsampled (antialiased, so fine patterns blur into their mean color);
``center`` cuts the central square (rule of thirds: the subject sits in the middle cell) at
about its native resolution, so stripes, checks and prints survive.
"""

from __future__ import annotations

from typing import Annotated, Literal

from PIL import Image, ImageColor
from pydantic import Field, field_validator

from fashion import Cropper, CropperOptions, View, hookimpl
from fashion.contract.hookspecs import Register
from fashion.data.images import resize_square, to_rgb

Channel = Annotated[int, Field(ge=0, le=255)]


class FullOptions(CropperOptions):
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


class FullCropper(Cropper[FullOptions]):
    """The whole image downsampled to S x S: overall shape, silhouette and color."""

    name = "full"

    def crop(self, image: Image.Image) -> list[View]:
        o = self.options
        rgb = to_rgb(image, o.fill)
        view = resize_square(rgb, o.size, o.mode, o.fill, o.resample)
        return [View(view, box=(0, 0, *rgb.size))]


class CenterOptions(CropperOptions):
    fraction: float = Field(
        1 / 3,
        gt=0.0,
        le=1.0,
        description="Side of the central square as a fraction of the shorter image side. "
        "fraction * min(width, height) == size keeps the native resolution.",
    )


class CenterCropper(Cropper[CenterOptions]):
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
        return [View(resize_square(rgb.crop(box), self.options.size, resample=self.options.resample), box=box)]


@hookimpl
def register_croppers(register: Register) -> None:
    register(FullCropper)
    register(CenterCropper)
