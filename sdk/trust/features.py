"""Per-product backbone features and per-view logits, shared by the audit and the review queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fashion.errors import DataError
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


def encode_products(model: FashionModel, products: Sequence[Product], *, batch_size: int = 64,
                    on_bad: Callable[[int, DataError], None] | None = None) -> Encoded:
    """Run the backbones once over ``products`` (eval mode, no gradients), on the CPU afterwards.

    A product that cannot be prepared (a missing or undecodable photo) raises its
    :class:`~fashion.model.inputs.ProductError`; with ``on_bad`` it is left out instead and
    ``on_bad(index, error)`` is told, and the result covers the other products, in order.
    """
    from fashion.model.inputs import ProductError

    was_training = model.training
    model.eval()
    features: dict[str, list[Tensor]] = {}
    masks: dict[str, list[Tensor]] = {}
    try:
        with torch.inference_mode():
            for start in range(0, len(products), batch_size):
                indexes = list(range(start, min(start + batch_size, len(products))))
                while indexes:
                    try:
                        batch = model.prepare([products[i] for i in indexes])
                        break
                    except ProductError as exc:
                        if on_bad is None:
                            raise
                        on_bad(indexes.pop(exc.row), exc)
                if not indexes:
                    continue
                f, m = model.encode(batch)
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
