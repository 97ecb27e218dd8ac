"""The review queue: which unlabeled products people should label next (active learning).

Each product gets an informativeness score per attribute from the calibrated probabilities:

- ``margin``: 1 - (top-1 - top-2 probability): the model hesitates between two labels;
- ``entropy``: the normalized entropy of the label distribution;
- ``disagreement``: the Jensen-Shannon divergence between the image-only and the text-only
  views of the same product (the fusion run with the other modality masked), plus a small
  margin term to order ties.

Products an attribute does not apply to (``applies_to``) are never queued for it. The queue is
chosen greedily with diversity (maximal marginal relevance): each pick maximizes
``score - diversity * (highest cosine similarity to a product already queued)`` on the
products' backbone features, so the queue is not N copies of one product. The queue is a
manifest (the input's columns, one empty column per queued attribute to fill in) that
``fashion train`` / ``fashion add-attribute`` read as it is.

The input follows the row contract of ``fashion predict`` (:func:`read_products`): rows in =
ranked + rejected, each rejected row named by ``file:line`` and reason; a row with no image and
no text is rejected (the model would only repeat its priors), never queued.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from fashion.errors import ConfigError, DataError
from fashion.trust.features import Encoded, encode_products, has_views, view_probabilities

if TYPE_CHECKING:
    from fashion.model.inputs import Product
    from fashion.model.network import FashionModel

ReviewStrategy = Literal["margin", "entropy", "disagreement"]
STRATEGIES: tuple[str, ...] = ("margin", "entropy", "disagreement")


@dataclass
class ReviewInput:
    """The products of a review input: rows in = ``len(products)`` ranked + ``len(rejected)``."""

    products: list[Product]
    where: list[str]  # "file:line" of each product
    rejected: list[str]  # "file:line: reason", one per rejected row

    @property
    def rows_in(self) -> int:
        return len(self.products) + len(self.rejected)

    def encode(self, model: FashionModel, *, batch_size: int = 64) -> Encoded:
        """The products' features; one whose photo cannot be read becomes a rejected row."""
        bad: list[tuple[int, str]] = []
        encoded = encode_products(model, self.products, batch_size=batch_size,
                                  on_bad=lambda i, exc: bad.append((i, str(exc))))
        for i, message in reversed(bad):
            self.rejected.append(f"{self.where[i]}: {message}")
            del self.products[i], self.where[i]
        return encoded


def read_products(path: str | Path) -> ReviewInput:
    """Every row of the manifest at ``path``: a product to rank, or a rejected row with its
    ``file:line`` and reason (unreadable, a bad field, no image and no text; a photo that
    cannot be read is found by :meth:`ReviewInput.encode`)."""
    from fashion.data.manifest import iter_manifest
    from fashion.model.inputs import check_has_input, row_to_product

    path = Path(path)
    read = ReviewInput([], [], [])
    for row in iter_manifest(path):
        where = f"{path}:{row.line or row.row}"
        try:
            read.products.append(check_has_input(row_to_product(row, path), where))
            read.where.append(where)
        except DataError as exc:
            read.rejected.append(str(exc))
    return read


@dataclass
class QueueItem:
    index: int  # position in the input
    attribute: str
    score: float
    suggested: str
    probability: float


def _margin(p: Tensor) -> Tensor:
    top = p.topk(min(2, p.shape[1]), dim=1).values
    second = top[:, 1] if top.shape[1] > 1 else torch.zeros(len(p))
    return 1.0 - (top[:, 0] - second)


def _entropy(p: Tensor) -> Tensor:
    q = p.clamp(min=1e-12)
    return -(q * q.log()).sum(1) / math.log(max(p.shape[1], 2))


def _js(a: Tensor, b: Tensor) -> Tensor:
    a, b = a.clamp(min=1e-12), b.clamp(min=1e-12)
    m = (a + b) / 2
    return 0.5 * ((a * (a / m).log()).sum(1) + (b * (b / m).log()).sum(1)) / math.log(2)


def informativeness(model: FashionModel, encoded: Encoded, attribute: str, strategy: str) -> tuple[Tensor, Tensor]:
    """``(score, probabilities)`` per product for one attribute."""
    p = view_probabilities(model, encoded, attribute, "all")
    if strategy == "margin":
        return _margin(p), p
    if strategy == "entropy":
        return _entropy(p), p
    image, text = has_views(encoded)
    if not (image and text):
        raise ConfigError(
            "--strategy disagreement compares the image-only and text-only views, but this model "
            "reads only one modality; use --strategy margin or entropy"
        )
    disagreement = _js(view_probabilities(model, encoded, attribute, "image"),
                       view_probabilities(model, encoded, attribute, "text"))
    return disagreement + 0.1 * _margin(p), p


def _out_of_scope(model: FashionModel, encoded: Encoded, attribute: str) -> Tensor:
    spec = model.spec.attributes[attribute]
    out = torch.zeros(encoded.vectors().shape[0], dtype=torch.bool)
    for other, allowed in spec.applies_to.items():
        head = model.task(other)
        top = view_probabilities(model, encoded, other, "all").argmax(1)
        inside = torch.tensor([head.labels[int(i)] in allowed for i in top], dtype=torch.bool)
        out |= ~inside
    return out


def review_attributes(model: FashionModel, attribute: str | None = None, *, strategy: str = "margin",
                      budget: int = 1) -> list[str]:
    """The attributes a queue ranks; a :class:`ConfigError` for a bad option (checked before
    any product is read)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    attributes = [attribute] if attribute else [a for a in model.attributes if not model.task(a).multilabel]
    unknown = [a for a in attributes if a not in model.attributes]
    if unknown:
        raise ConfigError(f"the model has no attribute {unknown[0]!r}; it predicts {', '.join(model.attributes)}")
    if attribute and model.task(attribute).multilabel:
        raise ConfigError(f"{attribute!r} is multilabel; the review queue ranks single-label attributes")
    return attributes


def build_queue(
    model: FashionModel,
    products: Sequence[Product],
    budget: int,
    *,
    attribute: str | None = None,
    strategy: str = "margin",
    diversity: float = 0.5,
    batch_size: int = 64,
    encoded: Encoded | None = None,
) -> list[QueueItem]:
    """Up to ``budget`` products to label, most useful first (see the module docstring)."""
    attributes = review_attributes(model, attribute, strategy=strategy, budget=budget)
    if not products:
        return []
    encoded = encoded or encode_products(model, products, batch_size=batch_size)
    n = len(products)
    best = torch.full((n,), -math.inf)
    which = torch.zeros(n, dtype=torch.long)
    probs: list[Tensor] = []
    for k, a in enumerate(attributes):
        score, p = informativeness(model, encoded, a, strategy)
        score = score.masked_fill(_out_of_scope(model, encoded, a), -math.inf)
        better = score > best
        best = torch.where(better, score, best)
        which = torch.where(better, torch.full_like(which, k), which)
        probs.append(p)
    vectors = encoded.vectors()
    candidates = best.isfinite()
    chosen: list[int] = []
    nearest = torch.full((n,), -1.0)  # highest similarity to the queue so far
    for _ in range(min(budget, int(candidates.sum()))):
        value = torch.where(candidates, best - diversity * nearest.clamp(min=0), torch.full_like(best, -math.inf))
        i = int(value.argmax())
        chosen.append(i)
        candidates[i] = False
        nearest = torch.maximum(nearest, vectors @ vectors[i])
    out = []
    for i in chosen:
        k = int(which[i])
        p = probs[k][i]
        head = model.task(attributes[k])
        out.append(QueueItem(i, attributes[k], float(best[i]), head.labels[int(p.argmax())], float(p.max())))
    return out


def queue_csv(model: FashionModel, products: Sequence[Product], queue: Sequence[QueueItem]) -> str:
    """The queue as a manifest: id, images, title, description, brand, one empty column per
    queued attribute, then ``review_attribute``, ``suggested``, ``suggested_probability``,
    ``review_score`` (extra columns a training run ignores)."""
    attributes = list(dict.fromkeys(item.attribute for item in queue))
    header = ["id", "images", "title", "description", "brand", *attributes,
              "review_attribute", "suggested", "suggested_probability", "review_score"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for item in queue:
        product = products[item.index]
        images = "|".join(str(image) for image in product.images if isinstance(image, (str, Path)))
        writer.writerow([product.id or "", images, product.title or "", product.description or "",
                         product.brand or "", *([""] * len(attributes)), item.attribute,
                         item.suggested, round(item.probability, 6), round(item.score, 6)])
    return buffer.getvalue()


__all__ = ["STRATEGIES", "QueueItem", "ReviewInput", "ReviewStrategy", "build_queue", "informativeness",
           "queue_csv", "read_products", "review_attributes"]
