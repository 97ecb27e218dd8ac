"""The four component interfaces that plugins implement: backbone, cropper, fusion, head.

Every component is a ``torch.nn.Module`` (croppers included, so a trainable detector keeps its
weights in the bundle like everything else) with a pydantic options model. A component is
rebuilt from its registered name and options alone; its tensors come from its safetensors file
and any other files it needs (a tokenizer, a config) from :meth:`Component.save_assets`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from .errors import ConfigError

Modality = Literal["image", "text"]


class ComponentOptions(BaseModel):
    """Base class of every component's options: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


def validate_options(
    model: type[BaseModel], options: BaseModel | Mapping[str, Any] | None, where: str
) -> BaseModel:
    """Validate ``options`` against ``model``; errors name ``where`` and every bad field."""
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']}"
            for err in exc.errors()
        )
        fields = ", ".join(model.model_fields) or "none"
        raise ConfigError(
            f"invalid options for {where}: {problems}. Accepted options: {fields}."
        ) from None


class Component(nn.Module):
    """Base class of all components. Subclasses set ``name`` and, when configurable, ``Options``."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions

    def __init__(self, options: ComponentOptions | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.options = validate_options(self.Options, options, f"{self.kind} '{self.name}'")
        # The name it was built under (set by fashion.manager.build_component).
        self.component_name: str = self.name

    def save_assets(self, directory: Path) -> None:
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


class Backbone(Component):
    """Turns preprocessed inputs of one modality into fixed-size feature vectors.

    ``preprocess`` runs on the CPU (in DataLoader workers when asked) and returns tensors;
    ``forward`` maps them to ``(N, output_dim)`` features.
    """

    kind: ClassVar[str] = "backbone"
    modality: ClassVar[Modality]
    output_dim: int

    def __init__(
        self,
        options: ComponentOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options)

    def preprocess(self, inputs: Sequence[Any]) -> Any:
        raise NotImplementedError


class ImageBackbone(Backbone):
    """An image backbone: a list of PIL images (the cropper's views) -> pixels -> features."""

    modality: ClassVar[Modality] = "image"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

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


class TextBackbone(Backbone):
    """A text backbone: product text fields -> token tensors -> features.

    ``preprocess`` receives one mapping per product with the fields ``title``, ``description``,
    ``brand`` (missing fields absent or ``None``) and returns a dict of tensors.
    """

    modality: ClassVar[Modality] = "text"


# ---------------------------------------------------------------------------------- croppers


@dataclass
class View:
    """One view cut from a product image."""

    image: Any  # PIL.Image.Image
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in the source
    note: str | None = None  # diagnostics, e.g. "no garment found; used the full image"


class Cropper(Component):
    """Cuts one or more views out of a product image. Views of one cropper share a size."""

    kind: ClassVar[str] = "cropper"

    def __init__(
        self,
        options: ComponentOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
    ) -> None:
        super().__init__(options)

    def crop(self, image: Any) -> list[View]:
        raise NotImplementedError

    def forward(self, image: Any) -> list[View]:
        return self.crop(image)


# ----------------------------------------------------------------------------------- fusions


class Fusion(Component):
    """Combines named feature vectors (with presence masks) into the vector the heads read.

    ``input_dims`` maps each input name (``"image:full"``, ``"text"``…) to its dimension.
    ``masks[name]`` is a bool tensor ``(B,)``: False where the product lacks that input, whose
    feature row is then zeros and must not influence the result.

    A *late* fusion (``late = True``) instead gives every attribute one head per input and
    combines their logits: the model calls :meth:`make_combiner` once per attribute and keeps
    the combiner inside that attribute's head module, so each attribute stays one file.
    """

    kind: ClassVar[str] = "fusion"
    late: ClassVar[bool] = False
    output_dim: int

    def __init__(
        self,
        options: ComponentOptions | Mapping[str, Any] | None = None,
        *,
        input_dims: Mapping[str, int],
    ) -> None:
        super().__init__(options)
        if not input_dims:
            raise ConfigError("a fusion needs at least one input; add a backbone to the model spec.")
        self.input_dims = dict(input_dims)

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

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


class Head(Component):
    """One attribute: feature vector -> logits, masked loss, and decoding to string labels.

    The base class implements single-label classification (softmax, cross-entropy); subclasses
    build the network in ``__init__`` and define ``forward``. Multi-label heads set
    ``multilabel = True`` and override ``encode``, ``loss`` and ``decode``.
    """

    kind: ClassVar[str] = "head"
    multilabel: ClassVar[bool] = False

    def __init__(
        self,
        options: ComponentOptions | Mapping[str, Any] | None = None,
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
        """Mean loss over labeled rows; exactly zero (and no gradient) when none is labeled."""
        if not bool(mask.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[mask], targets[mask], weight=class_weights)

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
    "Modality",
    "TextBackbone",
    "View",
    "validate_options",
]
