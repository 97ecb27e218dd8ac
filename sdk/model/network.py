"""Model assembly: views -> backbones -> fusion -> one head per attribute, as one nn.Module.

The work is split so each part can run where it belongs:

- :meth:`FashionModel.prepare` (CPU, picklable, safe in DataLoader workers): decode images,
  cut views, preprocess pixels, clean and tokenize text. The input layer (products, image
  loading, the thread pool, batches, input names) is :mod:`fashion.model.inputs`.
- :meth:`FashionModel.encode`: backbones -> per-input features ``(B, D)`` and presence masks.
  This is what the feature cache stores when backbones are frozen.
- :meth:`FashionModel.head_logits`: fusion + heads, from features.

A product may lack a modality (no images, no text): its features for that input are zeros with a
False mask, and fusions ignore them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fashion.contract.components import AttributePrediction, Backbone, Fusion, Head
from fashion.contract.manager import build_component
from fashion.errors import ConfigError
from fashion.model.decode import decode_attributes
from fashion.model.inputs import Batch, Product, prepare_batch
from fashion.model.spec import AttributeSpec, InputName, ModelSpec


class LateAttribute(nn.Module):
    """An attribute under a late fusion: one head per fusion input and a learned combiner."""

    def __init__(self, heads: Mapping[str, Head], combiner: nn.Module) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(dict(heads))
        self.combiner = combiner

    @property
    def task(self) -> Head:
        return next(iter(self.heads.values()))  # type: ignore[return-value]

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        logits = {name: head(features[name]) for name, head in self.heads.items()}
        return self.combiner(logits, masks)


def _masked_mean(values: Tensor, owner: Tensor, size: int) -> tuple[Tensor, Tensor]:
    out = values.new_zeros(size, values.shape[1])
    counts = values.new_zeros(size)
    out.index_add_(0, owner, values)
    counts.index_add_(0, owner, torch.ones_like(owner, dtype=values.dtype))
    mask = counts > 0
    out = out / counts.clamp(min=1).unsqueeze(1)
    return out, mask


class FashionModel(nn.Module):
    """The assembled multi-task model. Build it from a :class:`ModelSpec`."""

    def __init__(
        self,
        spec: ModelSpec | Mapping[str, Any],
        *,
        assets: Mapping[str, Path] | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
        assets = dict(assets or {})
        self.croppers = nn.ModuleDict(
            {
                view: build_component("cropper", s.name, s.options, assets=assets.get(f"croppers/{view}"))
                for view, s in self.spec.views.items()
            }
        )
        self.backbones = nn.ModuleDict()
        for key, s in self.spec.backbones.items():
            backbone: Backbone = build_component(
                "backbone", s.name, s.options, assets=assets.get(f"backbones/{key}"),
                pretrained=pretrained,
            )
            if backbone.modality == "image" and not s.views:
                raise ConfigError(
                    f"image backbone {key!r} ({s.name}) reads no views; set `views`, e.g. ['full']."
                )
            if backbone.modality == "text" and s.views:
                raise ConfigError(f"text backbone {key!r} ({s.name}) cannot read image views.")
            self.backbones[key] = backbone
        self.input_dims = {
            name: self.backbones[InputName.parse(name).backbone].output_dim for name in self.spec.input_names()
        }
        self.fusion: Fusion = build_component(
            "fusion", self.spec.fusion.name, self.spec.fusion.options, input_dims=self.input_dims
        )
        self.heads = nn.ModuleDict()
        for attribute, attribute_spec in self.spec.attributes.items():
            self.heads[attribute] = self._build_attribute(attribute_spec)

    # ------------------------------------------------------------------ structure

    def _build_attribute(self, spec: AttributeSpec) -> nn.Module:
        if self.fusion.late:
            heads = {
                name: build_component(
                    "head", spec.head.name, spec.head.options, input_dim=dim, labels=spec.labels
                )
                for name, dim in self.input_dims.items()
            }
            combiner = self.fusion.make_combiner(list(self.input_dims), len(spec.labels))
            return LateAttribute(heads, combiner)
        return build_component(
            "head", spec.head.name, spec.head.options,
            input_dim=self.fusion.output_dim, labels=spec.labels,
        )

    def add_head(self, name: str, spec: AttributeSpec) -> nn.Module:
        """Add the head of a new attribute ``name`` (the rest of the model is untouched); the
        whole add-attribute workflow is :func:`fashion.add_attribute`."""
        if name in self.heads:
            raise ConfigError(f"the model already has an attribute named {name!r}")
        new_spec = self.spec.model_copy(deep=True)
        new_spec.attributes[name] = spec
        self.spec = ModelSpec.parse(new_spec.model_dump())
        device = next(self.parameters(), torch.zeros(0)).device
        self.heads[name] = self._build_attribute(spec).to(device)
        return self.heads[name]

    @property
    def attributes(self) -> list[str]:
        return list(self.spec.attributes)

    def task(self, attribute: str) -> Head:
        """The head that encodes targets, computes the loss and decodes for ``attribute``."""
        module = self.heads[attribute]
        return module.task if isinstance(module, LateAttribute) else module  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ data path

    def prepare(self, products: Sequence[Product | Mapping[str, Any]]) -> Batch:
        """Decode, crop and preprocess a list of products (CPU; raises ProductError per row)."""
        return prepare_batch(products, croppers=self.croppers, backbones=self.backbones, spec=self.spec)  # type: ignore[arg-type]

    def encode(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Backbone features per fusion input, averaged over a product's images, and masks."""
        batch = batch.to(self.device)
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name in self.input_dims:
            payload, owner = batch.inputs[name]
            backbone = self.backbones[InputName.parse(name).backbone]
            if owner.numel() == 0 or payload is None:
                features[name] = torch.zeros(batch.size, backbone.output_dim, device=self.device)
                masks[name] = torch.zeros(batch.size, dtype=torch.bool, device=self.device)
                continue
            values = backbone(payload).float()
            features[name], masks[name] = _masked_mean(values, owner, batch.size)
        return features, masks

    def head_logits(
        self,
        features: Mapping[str, Tensor],
        masks: Mapping[str, Tensor],
        attributes: Iterable[str] | None = None,
    ) -> dict[str, Tensor]:
        names = list(attributes) if attributes is not None else list(self.heads)
        if self.fusion.late:
            return {a: self.heads[a](features, masks) for a in names}
        fused = self.fusion(features, masks)
        return {a: self.heads[a](fused) for a in names}

    def forward(self, batch: Batch, attributes: Iterable[str] | None = None) -> dict[str, Tensor]:
        features, masks = self.encode(batch)
        return self.head_logits(features, masks, attributes)

    def decode(
        self, logits: Mapping[str, Tensor], top_k: int = 3, *, abstain: bool = False
    ) -> list[dict[str, AttributePrediction]]:
        """Logits per attribute -> one dict of predictions per product.

        Scores are calibrated when the attribute has a fitted ``calibration``; with ``abstain``
        an attribute's fitted ``abstention`` threshold applies too (label ``None``, reason
        ``below_threshold``, top-k kept). An attribute whose ``applies_to`` excludes the
        product's predicted label of the attribute it depends on answers ``not_applicable``.
        """
        heads = {attribute: self.task(attribute) for attribute in logits}
        return decode_attributes(self.spec.attributes, heads, logits, top_k=top_k, abstain=abstain)

    @torch.inference_mode()
    def predict(
        self, products: Sequence[Product | Mapping[str, Any]], top_k: int = 3, *, abstain: bool = False
    ) -> list[dict[str, AttributePrediction]]:
        """Prepare, run and decode a list of products (eval mode, no gradients)."""
        was_training = self.training
        self.eval()
        try:
            return self.decode(self(self.prepare(products)), top_k=top_k, abstain=abstain)
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ training helpers

    def losses(
        self,
        logits: Mapping[str, Tensor],
        targets: Mapping[str, tuple[Tensor, Tensor]],
    ) -> dict[str, Tensor]:
        """Per-attribute masked losses for the attributes present in ``targets``."""
        out = {}
        for attribute, (target, mask) in targets.items():
            x = logits[attribute]
            out[attribute] = self.task(attribute).loss(x, target.to(x.device), mask.to(x.device))
        return out

    def component_modules(self) -> dict[str, nn.Module]:
        """Every component by its bundle path: croppers/V, backbones/K, fusion, heads/A."""
        out: dict[str, nn.Module] = {}
        out.update({f"croppers/{k}": m for k, m in self.croppers.items()})
        out.update({f"backbones/{k}": m for k, m in self.backbones.items()})
        out["fusion"] = self.fusion
        out.update({f"heads/{k}": m for k, m in self.heads.items()})
        return out

    def component_fingerprints(self) -> dict[str, str]:
        """A content hash of every component (name, options, tensors) by its bundle path.

        Equal fingerprints compute equal outputs: comparing them before and after training shows
        which components training changed, without running the model.
        """
        return self.component_fingerprints_of(self.component_modules())

    def component_fingerprints_of(self, paths: Iterable[str]) -> dict[str, str]:
        """:meth:`component_fingerprints` of some components only (bundle paths)."""
        from fashion.contract.components import Component, module_fingerprint

        modules = self.component_modules()
        return {
            path: modules[path].fingerprint() if isinstance(modules[path], Component)
            else module_fingerprint(modules[path], path, {})
            for path in paths
        }

    def freeze(self, groups: Iterable[str]) -> None:
        """Freeze parameter groups: ``image-backbone``, ``text-backbone``, ``backbones``,
        ``fusion``, ``heads``, ``croppers``, or a component path such as ``heads/color``."""
        modules = self.component_modules()
        for group in groups:
            if group in modules:
                selected = [modules[group]]
            elif group in ("image-backbone", "text-backbone"):
                modality = group.split("-")[0]
                selected = [b for b in self.backbones.values() if b.modality == modality]
            elif group in ("backbones", "heads", "croppers"):
                selected = [m for k, m in modules.items() if k.startswith(group + "/")]
            elif group == "fusion":
                selected = [self.fusion]
            else:
                raise ConfigError(
                    f"unknown freeze group {group!r}; use image-backbone, text-backbone, "
                    f"backbones, fusion, heads, croppers or one of {sorted(modules)}"
                )
            for module in selected:
                module.requires_grad_(False)




# The input layer lives in fashion.model.inputs; its names stay importable from here.
__all__ = ["FashionModel", "LateAttribute"]
