"""The ``box`` cropper: one view per garment, for off-center and "artistic" shots.

Two engines find the garment boxes:

- ``foreground`` (no weights; for flat white or light backgrounds): the background color is the
  median of the image border; pixels far from it are foreground; a little morphology removes
  specks, connected components become boxes.
- ``detector``: a torchvision detector (``fasterrcnn_mobilenet_v3_large_fpn`` or
  ``ssdlite320_mobilenet_v3_large``, two classes: background and garment) kept as a submodule,
  so its weights travel in the model bundle. Train it with :func:`train_detector` or
  ``fashion train-detector ANNOTATIONS --out DIR`` on COCO boxes.

Each box is padded, made square and cut out at S x S. When nothing is found the view is the
whole image with the note ``"no garment found; used the full image"``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import nn

from fashion import ComponentOptions, Cropper, CropperOptions, View, hookimpl
from fashion.contract.hookspecs import Register
from fashion.data.images import resize_square, to_rgb
from fashion.errors import BundleError, ConfigError

Box = tuple[float, float, float, float]  # (left, top, right, bottom)
Architecture = Literal["fasterrcnn_mobilenet_v3_large_fpn", "ssdlite320_mobilenet_v3_large"]
NO_GARMENT = "no garment found; used the full image"
WEIGHTS_FILE = "cropper.safetensors"
CONFIG_FILE = "cropper.json"
_MIN_AUTO_THRESHOLD = 24.0  # RGB distance to the background below which a pixel is background


class BoxOptions(CropperOptions):
    engine: Literal["foreground", "detector"] = Field(
        "foreground", description="foreground: no weights, light backgrounds; detector: trained."
    )
    max_boxes: int = Field(1, ge=1, le=32, description="At most this many views, best first.")
    min_area: float = Field(
        0.01, ge=0.0, lt=1.0, description="Drop components/boxes under this image fraction."
    )
    padding: float = Field(
        0.05, ge=0.0, le=1.0, description="Margin per side, fraction of the box's longer side."
    )
    square: bool = Field(True, description="Grow each box to a square (kept inside the image).")
    threshold: float | None = Field(
        None, gt=0.0, description="foreground: RGB distance to the background that counts as "
        "garment (0-441); None: max(24, 4 x the border's 75th-percentile distance)."
    )
    work_size: int = Field(
        128, ge=16, le=1024, description="foreground: mask resolution (longer side)."
    )
    architecture: Architecture = Field(
        "fasterrcnn_mobilenet_v3_large_fpn", description="detector: torchvision architecture."
    )
    score_threshold: float = Field(0.5, ge=0.0, le=1.0, description="detector: minimum box score.")
    image_size: int = Field(
        320, ge=32, le=2048, description="detector: longer image side it sees (ssdlite: 320x320)."
    )


class BoxCropper(Cropper[BoxOptions]):
    """Views cut around the garments of a product photo (see the module docstring)."""

    name = "box"

    def __init__(
        self,
        options: ComponentOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
    ) -> None:
        super().__init__(options, assets=assets)
        if self.options.engine == "detector":
            self.detector = build_detector(self.options.architecture, self.options.image_size)
            # 1 once trained; saved with the weights, so a bundle knows what it holds.
            self.register_buffer("trained", torch.zeros(1, dtype=torch.uint8))
            self._warned = False

    # ------------------------------------------------------------------ cropping

    def crop(self, image: Image.Image) -> list[View]:
        rgb = to_rgb(image)
        width, height = rgb.size
        if self.options.engine == "detector":
            found = self.detect(rgb)
        else:
            found = foreground_boxes(rgb, self.options)
        views = []
        for raw in found[: self.options.max_boxes]:
            box = self.frame(raw, width, height)
            views.append(View(resize_square(rgb.crop(box), self.options.size, resample=self.options.resample), box=box))
        if not views:
            full = resize_square(rgb, self.options.size, resample=self.options.resample)
            views.append(View(full, box=(0, 0, width, height), note=NO_GARMENT))
        return views

    def frame(self, box: Box, width: int, height: int) -> tuple[int, int, int, int]:
        """Pad ``box``, square it when asked, keep it inside the image; integer pixels."""
        left, top, right, bottom = box
        pad = self.options.padding * max(right - left, bottom - top)
        left, top, right, bottom = left - pad, top - pad, right + pad, bottom + pad
        if self.options.square:
            # Grow to a square, then shift it inside the image rather than clip it, so it stays
            # square (unless the square is larger than the image's shorter side).
            side = max(1, math.ceil(max(right - left, bottom - top)))
            side_x, side_y = min(side, width), min(side, height)
            x = min(max(round((left + right - side_x) / 2), 0), width - side_x)
            y = min(max(round((top + bottom - side_y) / 2), 0), height - side_y)
            return (x, y, x + side_x, y + side_y)
        box_int = (
            max(0, math.floor(left)),
            max(0, math.floor(top)),
            min(width, math.ceil(right)),
            min(height, math.ceil(bottom)),
        )
        if box_int[2] <= box_int[0] or box_int[3] <= box_int[1]:
            return (0, 0, width, height)
        return box_int

    @torch.no_grad()
    def detect(self, image: Image.Image) -> list[Box]:
        """Detector boxes in source pixels over ``score_threshold`` and ``min_area``, best first."""
        o = self.options
        if not bool(self.trained.any()) and not self._warned:
            self._warned = True
            warnings.warn(
                "the box cropper's detector has random weights: train it with `fashion "
                "train-detector` and load it with `cropper.load_detector(DIR)`.",
                stacklevel=3,
            )
        scaled, scale = shrink_image(image, o.image_size)
        parameter = next(self.detector.parameters())
        pixels = image_tensor(scaled).to(parameter.device, parameter.dtype)
        was_training = self.detector.training
        self.detector.eval()
        try:
            out = self.detector([pixels])[0]
        finally:
            self.detector.train(was_training)
        width, height = image.size
        boxes = []
        scored = zip(out["boxes"].float().tolist(), out["scores"].float().tolist(), strict=True)
        for box, score in scored:
            if score < o.score_threshold:
                continue
            left, top, right, bottom = (v / scale for v in box)
            if (right - left) * (bottom - top) >= o.min_area * width * height:
                boxes.append((left, top, right, bottom))
        return boxes

    # ------------------------------------------------------------------ weights

    def load_detector(self, directory: str | Path) -> BoxCropper:
        """Load weights written by ``fashion train-detector`` (or :func:`save_box_cropper`)."""
        if self.options.engine != "detector":
            raise ConfigError(
                "this box cropper uses engine 'foreground', which has no weights; set the option "
                "engine: detector to load a trained detector."
            )
        saved = _read_config(Path(directory))
        theirs = saved["options"].get("architecture", BoxOptions().architecture)
        theirs_size = saved["options"].get("image_size", BoxOptions().image_size)
        if (theirs, theirs_size) != (self.options.architecture, self.options.image_size):
            raise ConfigError(
                f"{directory} holds a {theirs} detector at image_size {theirs_size}, but this "
                f"cropper is {self.options.architecture} at {self.options.image_size}; set the "
                "same architecture and image_size options, or use load_box_cropper()."
            )
        _load_weights(self, Path(directory) / WEIGHTS_FILE)
        return self


@hookimpl
def register_croppers(register: Register) -> None:
    register(BoxCropper)


# ------------------------------------------------------------------------- foreground engine


def foreground_boxes(image: Image.Image, options: BoxOptions) -> list[Box]:
    """Boxes (source coordinates) of the largest foreground components, largest first."""
    width, height = image.size
    small, _ = shrink_image(image, options.work_size, Image.Resampling.BOX)
    sx, sy = width / small.size[0], height / small.size[1]
    pixels = np.asarray(small, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(pixels - background, axis=-1)
    threshold = options.threshold
    if threshold is None:
        border_distance = np.linalg.norm(border - background, axis=-1)
        threshold = max(_MIN_AUTO_THRESHOLD, 4.0 * float(np.percentile(border_distance, 75)))
    mask = _close(_open(distance > threshold))
    min_pixels = options.min_area * mask.size
    boxes = []
    for area, (x0, y0, x1, y1) in _components(mask):
        if area < max(min_pixels, 1):
            continue
        boxes.append((x0 * sx, y0 * sy, x1 * sx, y1 * sy))
    return boxes


def _shift_any(mask: np.ndarray, value: bool) -> np.ndarray:
    """3x3 dilation (value=False pads with False) or erosion (value=True pads with True)."""
    padded = np.pad(mask, 1, constant_values=value)
    h, w = mask.shape
    out = padded[1 : h + 1, 1 : w + 1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            window = padded[dy : dy + h, dx : dx + w]
            if value:
                out &= window
            else:
                out |= window
    return out


def _open(mask: np.ndarray) -> np.ndarray:
    return _shift_any(_shift_any(mask, True), False)  # erode, dilate: drops specks


def _close(mask: np.ndarray) -> np.ndarray:
    return _shift_any(_shift_any(mask, False), True)  # dilate, erode: fills small gaps


def _components(mask: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """8-connected components of a bool mask: (area, (x0, y0, x1, y1) exclusive), largest first.

    Labels runs of foreground pixels row by row and joins touching runs with union-find.
    """
    runs: list[tuple[int, int, int]] = []  # (row, start, end) with end exclusive
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[int] = []
    for y, row in enumerate(mask):
        edges = np.diff(np.concatenate(([0], row.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        current, k = [], 0
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            index = len(runs)
            runs.append((y, start, end))
            parent.append(index)
            while k < len(previous) and runs[previous[k]][2] < start:
                k += 1  # ends left of this run (diagonals included): touches no later run either
            j = k
            while j < len(previous) and runs[previous[j]][1] <= end:
                a, b = find(index), find(previous[j])
                if a != b:
                    parent[max(a, b)] = min(a, b)
                j += 1
            current.append(index)
        previous = current
    stats: dict[int, list[int]] = {}
    for index, (y, start, end) in enumerate(runs):
        root = find(index)
        s = stats.setdefault(root, [0, start, y, end, y + 1])
        s[0] += end - start
        s[1], s[2] = min(s[1], start), min(s[2], y)
        s[3], s[4] = max(s[3], end), max(s[4], y + 1)
    found = [(s[0], (s[1], s[2], s[3], s[4])) for s in stats.values()]
    return sorted(found, key=lambda item: -item[0])


# --------------------------------------------------------------------------- detector engine


def build_detector(architecture: str, image_size: int = 320) -> nn.Module:
    """A randomly initialised two-class (background, garment) torchvision detector, offline."""
    from torchvision.models import detection

    if architecture == "fasterrcnn_mobilenet_v3_large_fpn":
        return detection.fasterrcnn_mobilenet_v3_large_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=2,
            min_size=image_size,
            max_size=image_size,
            rpn_pre_nms_top_n_test=150,
            rpn_post_nms_top_n_test=150,
        )
    if architecture == "ssdlite320_mobilenet_v3_large":
        return detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=2
        )
    raise ConfigError(
        f"unknown detector architecture {architecture!r}; use fasterrcnn_mobilenet_v3_large_fpn "
        "or ssdlite320_mobilenet_v3_large."
    )


def shrink_image(
    image: Image.Image, longest: int, resample: Image.Resampling = Image.Resampling.BILINEAR
) -> tuple[Image.Image, float]:
    """``image`` with its longer side at most ``longest``, and the scale applied."""
    scale = min(1.0, longest / max(image.size))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return image.resize(size, resample), scale


def image_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


# ------------------------------------------------------------------------------ save / load


def save_box_cropper(cropper: BoxCropper, directory: str | Path) -> Path:
    """Write ``cropper.safetensors`` (its state) and ``cropper.json`` (name, options)."""
    from fashion.data.weights import save_safetensors, tensors_for_saving

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors_for_saving(cropper), directory / WEIGHTS_FILE)
    config = {"kind": "cropper", "name": cropper.component_name, "options": cropper.options_dict()}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _read_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"cannot read {directory / CONFIG_FILE}: {exc}. Point at a folder written by "
            "`fashion train-detector --out DIR`."
        ) from None
    if config.get("name") != BoxCropper.name or not isinstance(config.get("options"), dict):
        raise BundleError(f"{directory / CONFIG_FILE} does not describe a `box` cropper.")
    return config


def _load_weights(cropper: BoxCropper, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise BundleError(
            f"{path} is missing; re-run `fashion train-detector --out {path.parent}`."
        )
    try:
        cropper.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise BundleError(
            f"{path} does not match the cropper's options ({exc}); it was written for other "
            "options: use the cropper.json beside it."
        ) from None


def load_box_cropper(directory: str | Path) -> BoxCropper:
    """Rebuild a cropper saved by :func:`save_box_cropper` (strict weights)."""
    directory = Path(directory)
    cropper = BoxCropper(_read_config(directory)["options"])
    _load_weights(cropper, directory / WEIGHTS_FILE)
    return cropper.eval()
