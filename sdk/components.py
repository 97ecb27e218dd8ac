"""The four component interfaces that plugins implement: backbone, cropper, fusion, head.

Every component is a ``torch.nn.Module`` (croppers included, so a trainable detector keeps its
weights in the bundle like everything else) with a pydantic options model. A component is
rebuilt from its registered name and options alone; its tensors come from its safetensors file
and any other files it needs (a tokenizer, a config) from :meth:`Component.save_assets`.

The contract is enforced, not only described: the methods a kind requires are
``abc.abstractmethod``s (a plugin missing one is refused when it registers), ``output_dim`` is
checked against a real forward pass when a component is built (:mod:`fashion.manager`), and
options are typed per component: ``class MyHead(Head[MyOptions])`` sets ``Options`` and types
``self.options``.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, ValidationError
from torch import Tensor, nn

from ._config import StrictModel, explain_validation_error
from .errors import ConfigError

Modality = Literal["image", "text"]


class ComponentOptions(StrictModel):
    """Base class of every component's options: unknown keys are an error."""


OptionsT = TypeVar("OptionsT", bound=ComponentOptions)


def validate_options(
    model: type[OptionsT], options: BaseModel | Mapping[str, Any] | None, where: str
) -> OptionsT:
    """Validate ``options`` against ``model``; errors name ``where`` and every bad field."""
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        fields = ", ".join(model.model_fields) or "none"
        raise ConfigError(
            f"invalid options for {where}: {explain_validation_error(exc, '(options)')}. "
            f"Accepted options: {fields}."
        ) from None


def _options_argument(cls: type) -> type[ComponentOptions] | None:
    """The options class ``X`` of a ``Component[X]`` base of ``cls``, if one is concrete."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Component):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, ComponentOptions):
                    return arg
    return None


class Component(nn.Module, Generic[OptionsT], metaclass=abc.ABCMeta):
    """Base class of all components. Subclasses set ``name``; ``Component[MyOptions]`` (or an
    ``Options`` class attribute) sets the options model."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    options: OptionsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = _options_argument(cls)
        if found is not None and "Options" not in cls.__dict__:
            cls.Options = found

    def __init__(self, options: OptionsT | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        where = f"{self.kind} '{self.name}'"
        self.options = validate_options(self.Options, options, where)  # type: ignore[assignment]
        # The name it was built under (set by fashion.manager.build_component).
        self.component_name: str = self.name

    def save_assets(self, directory: Path) -> None:  # noqa: B027 - optional, empty by default
        """Write the non-tensor files this component needs to be rebuilt (tokenizer, config).

        Files go in ``directory``; the component receives the same folder as ``assets=`` when it
        is rebuilt from a bundle. Default: nothing to write.
        """

    def options_dict(self) -> dict[str, Any]:
        return self.options.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A content hash of name, options and tensors: equal fingerprints compute equal outputs."""
        return module_fingerprint(self, self.component_name, self.options_dict())


def module_fingerprint(module: nn.Module, name: str, options: Mapping[str, Any]) -> str:
    """A content hash of a module's registered name, options and every tensor of its state."""
    digest = hashlib.sha256()
    digest.update(name.encode())
    digest.update(json.dumps(dict(options), sort_keys=True).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        if tensor.numel():
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------- backbones


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

    @abc.abstractmethod
    def preprocess(self, inputs: Sequence[Any]) -> Any:
        """CPU work: raw inputs of one batch -> the tensors ``forward`` reads."""

    @abc.abstractmethod
    def forward(self, inputs: Any) -> Tensor:
        """Preprocessed inputs -> features ``(N, output_dim)``."""

    def probe_inputs(self) -> list[Any]:
        """Two raw inputs the build-time ``output_dim`` check runs through preprocess + forward."""
        raise NotImplementedError


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


# ---------------------------------------------------------------------------------- croppers


@dataclass
class View:
    """One view cut from a product image."""

    image: Any  # PIL.Image.Image
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in the source
    note: str | None = None  # diagnostics, e.g. "no garment found; used the full image"


class Cropper(Component[OptionsT]):
    """Cuts one or more views out of a product image. Views of one cropper share a size.

    Required: :meth:`crop`. The resize (``size``, filter) is part of the cropper's options.
    """

    kind: ClassVar[str] = "cropper"

    def __init__(
        self,
        options: OptionsT | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
    ) -> None:
        super().__init__(options)

    @abc.abstractmethod
    def crop(self, image: Any) -> list[View]:
        """A PIL image -> its views (at least one; all of one size)."""

    def forward(self, image: Any) -> list[View]:
        return self.crop(image)


# ----------------------------------------------------------------------------------- fusions


class Fusion(Component[OptionsT]):
    """Combines named feature vectors (with presence masks) into the vector the heads read.

    ``input_dims`` maps each input name (``"image:full"``, ``"text"``…) to its dimension.
    ``masks[name]`` is a bool tensor ``(B,)``: False where the product lacks that input, whose
    feature row is then zeros and must not influence the result.

    A *late* fusion (``late = True``) instead gives every attribute one head per input and
    combines their logits: the model calls :meth:`make_combiner` once per attribute and keeps
    the combiner inside that attribute's head module, so each attribute stays one file.

    Required: :meth:`forward` and, set in ``__init__``, ``output_dim`` (checked when built).
    """

    kind: ClassVar[str] = "fusion"
    late: ClassVar[bool] = False
    output_dim: int

    def __init__(
        self,
        options: OptionsT | Mapping[str, Any] | None = None,
        *,
        input_dims: Mapping[str, int],
    ) -> None:
        super().__init__(options)
        if not input_dims:
            raise ConfigError("a fusion needs at least one input; add a backbone to the model spec.")
        self.input_dims = dict(input_dims)

    @abc.abstractmethod
    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        """Features ``{name: (B, D_name)}`` and masks ``{name: (B,)}`` -> ``(B, output_dim)``."""

    def make_combiner(self, input_names: Sequence[str], num_outputs: int) -> nn.Module:
        """Late fusions only: a module ``(logits: dict[str, Tensor], masks) -> Tensor``."""
        raise NotImplementedError(f"fusion '{self.component_name}' is not a late fusion")


# ------------------------------------------------------------------------------------- heads


@dataclass
class AttributePrediction:
    """A decoded prediction for one attribute of one product."""

    label: str | list[str] | None
    score: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    abstained: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": round(self.score, 6),
            "top_k": [[label, round(p, 6)] for label, p in self.top_k],
            "abstained": self.abstained,
        }


class Head(Component[OptionsT]):
    """One attribute: feature vector -> logits, masked loss, and decoding to string labels.

    The base class implements single-label classification (softmax, cross-entropy); subclasses
    build the network in ``__init__`` and define ``forward``. Multi-label heads set
    ``multilabel = True`` and override ``encode``, ``loss`` and ``decode``. Required:
    :meth:`forward`, returning ``(B, len(labels))`` logits (checked when built).
    """

    kind: ClassVar[str] = "head"
    multilabel: ClassVar[bool] = False

    def __init__(
        self,
        options: OptionsT | Mapping[str, Any] | None = None,
        *,
        input_dim: int,
        labels: Sequence[str],
    ) -> None:
        super().__init__(options)
        if len(labels) < 2 and not self.multilabel:
            raise ConfigError(
                f"head '{self.name}' needs at least two labels, got {list(labels)}; "
                "list every label of the attribute in its spec."
            )
        if len(set(labels)) != len(labels):
            raise ConfigError(f"head '{self.name}' got duplicate labels: {list(labels)}")
        self.input_dim = int(input_dim)
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @abc.abstractmethod
    def forward(self, features: Tensor) -> Tensor:
        """Features ``(B, input_dim)`` -> logits ``(B, len(labels))``."""

    def encode(self, values: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """Canonical labels (``None`` = missing) -> ``(targets, mask)``; mask False = no label."""
        targets = torch.zeros(len(values), dtype=torch.long)
        mask = torch.zeros(len(values), dtype=torch.bool)
        for row, value in enumerate(values):
            if value is None or value == "":
                continue
            if value not in self.index:
                raise ConfigError(
                    f"label {value!r} is not one of {self.labels}; normalize labels with the "
                    "attribute's taxonomy before encoding."
                )
            targets[row] = self.index[value]
            mask[row] = True
        return targets, mask

    def loss(
        self,
        logits: Tensor,
        targets: Tensor,
        mask: Tensor,
        class_weights: Tensor | None = None,
    ) -> Tensor:
        """The (class-weighted) mean cross-entropy over labeled rows, without a host sync.

        One fused ``cross_entropy`` over the whole batch (unlabeled rows ignored): exactly
        zero, still connected to the graph, when no row is labeled (a shard of a distributed
        step may hold none). Training, ``FashionModel.losses`` and add-attribute all use it.
        """
        total = F.cross_entropy(
            logits.float(), targets.masked_fill(~mask, -100), weight=class_weights,
            ignore_index=-100, reduction="sum",
        )
        if class_weights is None:
            denominator = mask.sum()
        else:
            denominator = (class_weights.index_select(0, targets.masked_fill(~mask, 0)) * mask).sum()
        return total / denominator.clamp(min=1e-12)

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.float().softmax(dim=-1)

    def decode(
        self, logits: Tensor, *, threshold: float = 0.0, top_k: int = 3
    ) -> list[AttributePrediction]:
        probs = self.probabilities(logits.detach()).cpu()
        k = min(top_k, len(self.labels))
        values, indices = probs.topk(k, dim=-1)
        out = []
        # one tolist() per batch: reading tensors element by element costs more than the heads
        for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
            ranked = [
                (self.labels[i], float(v)) for v, i in zip(row_values, row_indices, strict=True)
            ]
            label, score = ranked[0]
            abstained = score < threshold
            out.append(AttributePrediction(None if abstained else label, score, ranked, abstained))
        return out


__all__ = [
    "AttributePrediction",
    "Backbone",
    "Component",
    "ComponentOptions",
    "Cropper",
    "Fusion",
    "Head",
    "ImageBackbone",
    "ImageBackboneOptions",
    "ImagePreprocessing",
    "Modality",
    "TextBackbone",
    "View",
    "validate_options",
]
