"""Backbones: one modality's inputs -> feature vectors, and their cut points.

:class:`Backbone` is the component kind; :class:`ImageBackbone` and :class:`TextBackbone` are
the two modalities. A backbone that lists its :meth:`Backbone.stages` declares cut points for
partial fine-tuning (``freeze = ["image-backbone@layer4"]``): the stages below the cut are
frozen and their activations can be cached. Image preprocessing (mean, std) is an option of
every image backbone (:class:`ImageBackboneOptions`), so it is fingerprinted and saved in
bundles. Re-exported by :mod:`fashion.contract.components`.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import Field
from torch import Tensor, nn

from fashion._util.config import StrictModel
from fashion.contract.base import Component, ComponentOptions, OptionsT, module_fingerprint
from fashion.errors import ConfigError

Modality = Literal["image", "text"]


class Backbone(Component[OptionsT]):
    """Turns preprocessed inputs of one modality into fixed-size feature vectors.

    ``preprocess`` runs on the CPU (in DataLoader workers when asked) and returns tensors;
    ``forward`` maps them to ``(N, output_dim)`` features. Both are required.
    """

    kind: ClassVar[str] = "backbone"
    modality: ClassVar[Modality]
    output_dim: int

    def __init__(
        self,
        options: OptionsT | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options)
        self.train_from: str | None = None  # the cut point set by freeze_below (None: not cut)

    @abc.abstractmethod
    def preprocess(self, inputs: Sequence[Any]) -> Any:
        """CPU work: raw inputs of one batch -> the tensors ``forward`` reads."""

    @abc.abstractmethod
    def forward(self, inputs: Any) -> Tensor:
        """Preprocessed inputs -> features ``(N, output_dim)``."""

    def probe_inputs(self) -> list[Any]:
        """Two raw inputs the build-time ``output_dim`` check runs through preprocess + forward."""
        raise NotImplementedError

    # ------------------------------------------------------------ cut points (partial fine-tuning)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The network as named stages run in turn (stage 0 reads the preprocessed inputs, the
        last returns the features; together they compute ``forward``). A backbone that lists them
        declares its cut points: the names of the stages after the first that hold parameters.
        Partial fine-tuning (``freeze = ["image-backbone@layer4"]``) freezes the stages before
        the cut and trains the rest on cached activations. Default: no stages, no cut points."""
        return []

    def cut_points(self) -> list[str]:
        """Where this backbone can be cut, bottom to top (see :meth:`stages`)."""
        return [name for name, module in self.stages()[1:] if any(True for _ in module.parameters())]

    def resolve_cut(self, cut: str | int) -> str:
        """A cut point by name, or by depth: ``N`` (an int or digits) trains the last N blocks."""
        points = self.cut_points()
        if not points:
            raise ConfigError(
                f"backbone '{self.component_name}' declares no cut points (its stages() is empty); "
                "freeze all of it or none of it."
            )
        if isinstance(cut, int) or str(cut).isdigit():
            depth = int(cut)
            if not 1 <= depth <= len(points):
                raise ConfigError(
                    f"backbone '{self.component_name}' has {len(points)} blocks to train ({', '.join(points)}); "
                    f"got {depth}."
                )
            return points[-depth]
        if cut not in points:
            raise ConfigError(
                f"backbone '{self.component_name}' has no cut point {cut!r}; its cut points are "
                f"{', '.join(points)} (or a number of top blocks, 1-{len(points)})."
            )
        return str(cut)

    def _split(self, cut: str) -> tuple[list[nn.Module], list[nn.Module]]:
        stages = self.stages()
        names = [name for name, _ in stages]
        at = names.index(self.resolve_cut(cut))
        return [m for _, m in stages[:at]], [m for _, m in stages[at:]]

    def forward_below(self, inputs: Any, cut: str) -> Tensor:
        """The activations at ``cut``: the stages before it, on preprocessed inputs."""
        for module in self._split(cut)[0]:
            inputs = module(inputs)
        return inputs

    def forward_above(self, activations: Tensor, cut: str) -> Tensor:
        """The features from the activations at ``cut``: the stages from it up."""
        for module in self._split(cut)[1]:
            activations = module(activations)
        return activations

    def modules_below(self, cut: str) -> list[nn.Module]:
        """The stages before ``cut`` (what partial fine-tuning freezes)."""
        return self._split(cut)[0]

    def freeze_below(self, cut: str | int) -> str:
        """Freeze the stages before ``cut`` (kept in eval mode); returns the cut's name."""
        name = self.resolve_cut(cut)
        for module in self.modules_below(name):
            module.requires_grad_(False)
            module.eval()
        self.train_from = name
        return name

    def below_fingerprint(self, cut: str) -> str:
        """A content hash of the frozen part below ``cut`` (name, options, cut, its tensors)."""
        digest = hashlib.sha256(f"{self.component_name}|{cut}|".encode())
        digest.update(json.dumps(self.options_dict(), sort_keys=True).encode())
        for i, module in enumerate(self.modules_below(cut)):
            digest.update(module_fingerprint(module, str(i), {}).encode())
        return digest.hexdigest()[:16]

    def train(self, mode: bool = True) -> Backbone[OptionsT]:
        super().train(mode)
        if getattr(self, "train_from", None) is not None:
            for module in self.modules_below(self.train_from):  # type: ignore[arg-type]
                module.eval()  # frozen below the cut: BatchNorm statistics stay fixed
        return self


class Lambda(nn.Module):
    """A stage that calls a function (e.g. a bound method of the backbone) and owns no tensors."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        object.__setattr__(self, "fn", fn)  # not registered: the stage's parameters stay its own

    def forward(self, x: Any) -> Any:
        return self.fn(x)


Channels = tuple[float, float, float]


class ImagePreprocessing(StrictModel):
    """How pixels are normalized before an image backbone: ``(x / 255 - mean) / std``.

    Part of the backbone's options, so it is fingerprinted and saved in bundles; the resize
    (filter, resolution) belongs to the croppers' options (``size``, ``resample``).
    """

    mean: Channels = (0.485, 0.456, 0.406)
    std: Channels = (0.229, 0.224, 0.225)

    @classmethod
    def check_std(cls, std: Channels) -> None:
        if any(s <= 0 for s in std):
            raise ConfigError(f"preprocessing std {list(std)} must be positive in every channel")


class ImageBackboneOptions(ComponentOptions):
    """Base of every image backbone's options. ``preprocessing`` left out (``None``) means the
    backbone's own default (:meth:`ImageBackbone.default_preprocessing`), which is written into
    the options when the backbone is built, so a bundle records the values it was trained with."""

    preprocessing: ImagePreprocessing | None = Field(
        None, description="Pixel normalization (mean, std); default: the backbone's own."
    )


ImageOptionsT = TypeVar("ImageOptionsT", bound=ImageBackboneOptions)


class ImageBackbone(Backbone[ImageOptionsT]):
    """An image backbone: a list of PIL images (the cropper's views) -> pixels -> features.

    Its ``Options`` must subclass :class:`ImageBackboneOptions`. Override
    :meth:`default_preprocessing` when the network expects other than ImageNet mean/std.
    """

    modality: ClassVar[Modality] = "image"
    Options: ClassVar[type[ComponentOptions]] = ImageBackboneOptions
    probe_size: ClassVar[int] = 64  # side of the square probe images of the output_dim check

    def __init__(
        self,
        options: ImageOptionsT | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options, assets=assets, pretrained=pretrained)
        if not isinstance(self.options, ImageBackboneOptions):
            raise ConfigError(
                f"image backbone '{self.name}': its Options must subclass "
                "fashion.ImageBackboneOptions (it carries the pixel normalization)."
            )
        if self.options.preprocessing is None:
            default = self.default_preprocessing()
            self.options = self.options.model_copy(update={"preprocessing": default})
        ImagePreprocessing.check_std(self.preprocessing.std)

    @classmethod
    def default_preprocessing(cls) -> ImagePreprocessing:
        """The normalization this backbone uses unless its options say otherwise (ImageNet)."""
        return ImagePreprocessing()

    @property
    def preprocessing(self) -> ImagePreprocessing:
        value = self.options.preprocessing
        assert value is not None  # resolved in __init__
        return value

    @property
    def mean(self) -> Channels:
        return self.preprocessing.mean

    @property
    def std(self) -> Channels:
        return self.preprocessing.std

    def probe_inputs(self) -> list[Any]:
        from PIL import Image

        side = self.probe_size
        return [Image.new("RGB", (side, side), (200, 30, 30)), Image.new("RGB", (side, side))]

    def preprocess(self, inputs: Sequence[Any]) -> Tensor:
        """Stack RGB images of equal size into a normalized float tensor ``(N, 3, H, W)``."""
        import numpy as np

        if not inputs:
            return torch.zeros(0, 3, 1, 1)
        arrays = [
            np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
            for image in inputs
        ]
        sizes = {a.shape for a in arrays}
        if len(sizes) > 1:
            raise ConfigError(
                f"backbone '{self.component_name}' got views of different sizes {sorted(sizes)}; "
                "give every cropper feeding it the same `size` option."
            )
        # (x / 255 - mean) / std as one scale and one shift, in place. The permuted tensor keeps
        # the NHWC layout of the stacked arrays: channels_last, which convolutions run fastest on.
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        scale = 1.0 / (255.0 * std)
        shift = torch.tensor(self.mean).view(1, 3, 1, 1) / std
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().mul_(scale).sub_(shift)


class TextBackbone(Backbone[OptionsT]):
    """A text backbone: product text fields -> token tensors -> features.

    ``preprocess`` receives one mapping per product with the fields ``title``, ``description``,
    ``brand`` (missing fields absent or ``None``) and returns a dict of tensors.
    """

    modality: ClassVar[Modality] = "text"

    def probe_inputs(self) -> list[Any]:
        return [{"title": "red cotton shirt"}, {"title": "blue dress", "brand": "acme"}]


__all__ = [
    "Backbone",
    "Channels",
    "ImageBackbone",
    "ImageBackboneOptions",
    "ImagePreprocessing",
    "Lambda",
    "Modality",
    "TextBackbone",
]
