"""The space of the product vector: the fused vector alone, or with attributes emphasized.

The fused vector is what every head reads, so it carries all of them at once; its nearest
neighbours share the product's look (same-product retrieval) more than any one attribute. When
"similar" must mean "similar in category and pattern", the vector can **emphasize** those
attributes, the idea of attribute-specific embedding spaces for fashion similarity (ASEN, Ma et
al., AAAI 2020) built from the heads the model already has: each named head's logits, centred
per product (a single-label head's softmax ignores a shift; a multilabel head's logits become
``tanh(logit / 2)`` = ``2p - 1``), are L2-normalized and appended to the normalized fused
vector::

    vector = [sqrt(1 - emphasis) * fused / |fused|,  sqrt(emphasis / n) * head_1 / |head_1|, ...]

so each emphasized attribute weighs the same and the whole vector is unit length (a product
with no input keeps a zero fused block). ``emphasis`` is the share of the squared length given
to the attributes. The space is recorded in every vectors file and index (vectors of two spaces
are never compared) and is computed from the same forward as the attributes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from fashion._util.config import StrictModel
from fashion.errors import ConfigError


class EmbeddingSpace(StrictModel):
    """Which attributes the product vector emphasizes (none: the fused vector alone)."""

    emphasize: list[str] = Field(default_factory=list)
    emphasis: float = Field(default=0.5, gt=0.0, lt=1.0)

    def describe(self) -> str:
        if not self.emphasize:
            return "fused"
        return f"fused + {', '.join(self.emphasize)} (emphasis {self.emphasis:g})"


FUSED = EmbeddingSpace()


def check_space(attributes: Iterable[str], space: EmbeddingSpace | Mapping[str, Any] | None) -> EmbeddingSpace:
    """``space`` validated against a model's ``attributes`` (its heads): each emphasized one is
    among them, once."""
    if space is None:
        return FUSED
    if not isinstance(space, EmbeddingSpace):
        try:
            space = EmbeddingSpace.model_validate(dict(space))
        except ValueError as exc:
            raise ConfigError(f"embedding space: {str(exc).splitlines()[-1].strip()}") from None
    known = list(attributes)
    unknown = [a for a in space.emphasize if a not in known]
    if unknown or len(set(space.emphasize)) != len(space.emphasize):
        raise ConfigError(f"cannot emphasize {', '.join(unknown) or 'an attribute twice'}: the "
                          f"model's attributes are {', '.join(known) or 'none'}; name each once.")
    return space


def space_dimension(model: Any, fused_dim: int, space: EmbeddingSpace) -> int:
    """Length of the vector in ``space``: the fused vector and one block per emphasized head."""
    return fused_dim + sum(len(model.heads[a].labels) for a in space.emphasize)


def compose(model: Any, fused: Tensor, logits: Mapping[str, Tensor], space: EmbeddingSpace) -> Tensor:
    """The product vectors in ``space`` from the fused vectors and the heads' logits (float32)."""
    if not space.emphasize:
        return fused
    blocks = []
    for name in space.emphasize:
        x = logits[name].float().reshape(fused.shape[0], -1)
        x = torch.tanh(x / 2) if model.heads[name].multilabel else x - x.mean(dim=1, keepdim=True)
        blocks.append(torch.nn.functional.normalize(x, dim=1))
    shared = torch.nn.functional.normalize(fused.float(), dim=1) * math.sqrt(1.0 - space.emphasis)
    scale = math.sqrt(space.emphasis / len(blocks))
    return torch.cat([shared, *(b * scale for b in blocks)], dim=1)


__all__ = ["FUSED", "EmbeddingSpace", "check_space", "compose", "space_dimension"]
