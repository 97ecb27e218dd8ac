"""Per-product backbone features and per-view logits, shared by the audit and the review queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fashion.model.decode import calibrated
from fashion.model.spec import InputName

if TYPE_CHECKING:
    from fashion.model.inputs import Product
    from fashion.model.network import FashionModel


@dataclass
class Encoded:
    """Backbone features ``(N, D)`` per fusion input and presence masks ``(N,)``."""

    features: dict[str, Tensor]
    masks: dict[str, Tensor]

    def vectors(self) -> Tensor:
        """One L2-normalized vector per product: every input's features side by side."""
        parts = [f * m.unsqueeze(1) for f, m in zip(self.features.values(), self.masks.values(), strict=True)]
        return torch.nn.functional.normalize(torch.cat(parts, dim=1), dim=1)


def encode_products(model: FashionModel, products: Sequence[Product], *, batch_size: int = 64) -> Encoded:
    """Run the backbones once over ``products`` (eval mode, no gradients), on the CPU afterwards."""
    was_training = model.training
    model.eval()
    features: dict[str, list[Tensor]] = {}
    masks: dict[str, list[Tensor]] = {}
    try:
        with torch.inference_mode():
            for start in range(0, len(products), batch_size):
                f, m = model.encode(model.prepare(list(products[start:start + batch_size])))
                for name in f:
                    features.setdefault(name, []).append(f[name].float().cpu())
                    masks.setdefault(name, []).append(m[name].cpu())
    finally:
        model.train(was_training)
    return Encoded({k: torch.cat(v) for k, v in features.items()},
                   {k: torch.cat(v) for k, v in masks.items()})


def view_probabilities(model: FashionModel, encoded: Encoded, attribute: str, view: str) -> Tensor:
    """Calibrated probabilities ``(N, L)`` from ``view``: ``all`` inputs, ``image`` inputs only or
    ``text`` inputs only (the others masked as missing, as the fusion sees a product without them)."""
    masks = {}
    for name, mask in encoded.masks.items():
        is_text = InputName.parse(name).view is None
        keep = view == "all" or (view == "text") == is_text
        masks[name] = mask if keep else torch.zeros_like(mask)
    device = model.device
    with torch.inference_mode():
        logits = model.head_logits({k: v.to(device) for k, v in encoded.features.items()},
                                   {k: v.to(device) for k, v in masks.items()}, [attribute])[attribute]
    return model.task(attribute).probabilities(calibrated(model.spec.attributes[attribute], logits)).cpu()


def has_views(encoded: Encoded) -> tuple[bool, bool]:
    """Whether the model reads any image input and any text input."""
    kinds = [InputName.parse(name).view is None for name in encoded.masks]
    return (not all(kinds), any(kinds))


__all__ = ["Encoded", "encode_products", "has_views", "view_probabilities"]
