"""What trust reads of labeled data, as a protocol: ``fashion.training.data.LabeledDataset``
fits it, and so does any object with these fields (trust never imports training)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from fashion.model.inputs import Product
    from fashion.model.network import FashionModel


class LabeledData(Protocol):
    """Products of one dataset and their canonical labels for the attributes it labels."""

    path: Path
    attributes: list[str]
    products: list[Product]
    labels: dict[str, list[str | None]]
    rows: list[int]
    """The manifest row of each product (for messages and the audit's CSV)."""
    targets: dict[str, tuple[Tensor, Tensor]]
    """``attribute -> (encoded targets, labeled mask)``, filled by :meth:`encode`."""

    def __len__(self) -> int: ...

    def encode(self, model: FashionModel) -> LabeledData: ...


__all__ = ["LabeledData"]
