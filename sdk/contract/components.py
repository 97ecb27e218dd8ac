"""The four component interfaces that plugins implement: backbone, cropper, fusion, head.

Every component is a ``torch.nn.Module`` (croppers included, so a trainable detector keeps its
weights in the bundle like everything else) with a pydantic options model. A component is
rebuilt from its registered name and options alone; its tensors come from its safetensors file
and any other files it needs (a tokenizer, a config) from :meth:`Component.save_assets`.

The contract is enforced, not only described: the methods a kind requires are
``abc.abstractmethod``s (a plugin missing one is refused when it registers), ``output_dim`` is
checked against a real forward pass when a component is built (:mod:`fashion.contract.manager`), and
options are typed per component: ``class MyHead(Head[MyOptions])`` sets ``Options`` and types
``self.options``.

The kinds live in three modules, all re-exported here (import from ``fashion.contract.components``):
:mod:`fashion.contract.base` holds :class:`Component`, its options and fingerprints;
:mod:`fashion.contract.backbones` the backbones, their cut points for partial fine-tuning and image
preprocessing; this module the croppers, fusions and heads.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from fashion.contract.backbones import (
    Backbone,
    Channels,
    ImageBackbone,
    ImageBackboneOptions,
    ImagePreprocessing,
    Lambda,
    Modality,
    TextBackbone,
)
from fashion.contract.base import (
    Component,
    ComponentOptions,
    OptionsT,
    module_fingerprint,
    validate_options,
)
from fashion.data.images import Resample
from fashion.errors import ConfigError

# ---------------------------------------------------------------------------------- croppers


class CropperOptions(ComponentOptions):
    """What every cropper's options hold: the side of its square views and the resize filter
    (subclass it for a cropper's own options)."""

    size: int = Field(224, ge=1, le=4096, description="Side S of each S x S view.")
    resample: Resample = Field(
        "bicubic", description="Resize filter (bicubic, bilinear, lanczos, box, hamming, nearest)."
    )


@dataclass
class View:
    """One view cut from a product image."""

    image: Any  # PIL.Image.Image
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in the source
    note: str | None = None  # diagnostics, e.g. "no garment found; used the full image"


class Cropper(Component[OptionsT]):
    """Cuts one or more views out of a product image. Views of one cropper share a size.

    Required: :meth:`crop`. The resize (``size``, filter) is part of the cropper's options:
    subclass :class:`CropperOptions`.
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
    reason: str | None = None  # why there is no label: "below_threshold" or "not_applicable"

    @property
    def not_applicable(self) -> bool:
        """True when the attribute does not apply to the product (see ``applies_to``)."""
        return self.reason == "not_applicable"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "label": self.label,
            "score": round(self.score, 6),
            "top_k": [[label, round(p, 6)] for label, p in self.top_k],
            "abstained": self.abstained,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


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
    "Channels",
    "Component",
    "ComponentOptions",
    "Cropper",
    "CropperOptions",
    "Fusion",
    "Head",
    "ImageBackbone",
    "ImageBackboneOptions",
    "ImagePreprocessing",
    "Lambda",
    "Modality",
    "OptionsT",
    "TextBackbone",
    "View",
    "module_fingerprint",
    "validate_options",
]
