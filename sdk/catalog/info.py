"""The catalog's layout constants and its public description (:class:`CatalogInfo`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from fashion._util.config import StrictModel
from fashion.errors import ConfigError

FORMAT_VERSION = 1

DATASETS: dict[str, tuple[str, ...]] = {
    "colors_patterns": ("color", "pattern"),
    "categories": ("category", "style"),
    "sleeves": ("sleeve_length",),
}
"""Dataset name -> the attributes it labels (each product is labeled in one dataset only)."""

DATASET_SHARES: dict[str, float] = {"colors_patterns": 0.40, "categories": 0.35, "sleeves": 0.25}
ATTRIBUTES: tuple[str, ...] = ("category", "color", "pattern", "style", "sleeve_length")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SHOT_TYPES: tuple[str, ...] = ("product", "fabric", "artistic", "model")
SLEEVED: frozenset[str] = frozenset({"t_shirt", "shirt", "dress", "jacket", "sweater"})
MANIFEST_COLUMNS: tuple[str, ...] = ("id", "images", "title", "description", "brand")
GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "id",
    "dataset",
    "split",
    "vendor",
    "brand",
    "title",
    "description",
    *ATTRIBUTES,
    "pattern_scale",
    "color_rgb",
    "images",
    "shots",
    "boxes",
    "text_mentions",
)

NOISE_FILE = "label_noise.csv"
"""With label noise: one row per flipped cell (see :data:`NOISE_COLUMNS`)."""
NOISE_COLUMNS: tuple[str, ...] = ("id", "dataset", "split", "manifest", "line", "attribute", "true", "given")
NOT_APPLICABLE_CELLS: tuple[str, ...] = ("n/a", "N/A", "-", "none", "not applicable", "NA")
"""Vendor spellings of "does not apply" written for out-of-scope products."""

ProgressCallback = Callable[[int, int], None]
Point = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# public result


class DatasetInfo(StrictModel):
    """One generated dataset: the attributes it labels and its split manifests."""

    name: str
    attributes: list[str]
    manifests: dict[str, str]  # split -> manifest path relative to the catalog folder
    rows: dict[str, int]  # split -> number of products

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class CatalogInfo(StrictModel):
    """What :func:`make_catalog` wrote; also saved (without ``out``) as ``out/catalog.json``."""

    out: Path = Field(exclude=True)
    format_version: int = FORMAT_VERSION
    seed: int
    products: int
    images: int
    image_size: int
    images_per_product: tuple[int, int]
    splits: dict[str, float]
    datasets: dict[str, DatasetInfo]
    ground_truth: str = "ground_truth.csv"
    shot_types: list[str] = list(SHOT_TYPES)
    vendors: list[str] = []
    label_noise: float = 0.0
    """Share of training label cells flipped per attribute (listed in :data:`NOISE_FILE`)."""
    not_applicable: float = 0.0
    """Share of out-of-scope products (pants, skirts) put in the sleeves dataset with an n/a cell."""

    _OPTIONS: ClassVar[tuple[str, ...]] = ("label_noise", "not_applicable")

    @property
    def dataset_names(self) -> list[str]:
        return list(self.datasets)

    @property
    def attributes(self) -> dict[str, list[str]]:
        """Dataset name -> the attributes its manifests label."""
        return {name: list(ds.attributes) for name, ds in self.datasets.items()}

    @property
    def ground_truth_path(self) -> Path:
        return self.out / self.ground_truth

    def manifest_path(self, dataset: str, split: str) -> Path:
        """Absolute path of one split manifest, e.g. ``manifest_path("sleeves", "train")``."""
        if dataset not in self.datasets:
            raise ConfigError(
                f"catalog {self.out} has no dataset {dataset!r}; choose one of {self.dataset_names}"
            )
        manifests = self.datasets[dataset].manifests
        if split not in manifests:
            raise ConfigError(f"dataset {dataset!r} has no split {split!r}; use {list(manifests)}")
        return self.out / manifests[split]

    @property
    def manifests(self) -> dict[str, dict[str, Path]]:
        """Dataset -> split -> absolute manifest path."""
        return {
            name: {split: self.out / rel for split, rel in ds.manifests.items()}
            for name, ds in self.datasets.items()
        }

    @property
    def noise_path(self) -> Path | None:
        """``label_noise.csv`` (the flipped label cells) when the catalog has label noise."""
        return self.out / NOISE_FILE if self.label_noise > 0 else None

    def save(self) -> Path:
        path = self.out / "catalog.json"
        # options left at their default are not written, so a default catalog reads as before
        unset = {name for name in self._OPTIONS if not getattr(self, name)}
        path.write_text(self.model_dump_json(indent=2, exclude=unset) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, out: str | Path) -> CatalogInfo:
        """Read ``out/catalog.json`` written by :func:`make_catalog`."""
        out = Path(out)
        path = out / "catalog.json"
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: {out} is not a generated catalog; create one with "
                f"`fashion make-catalog {out}`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.model_validate({**data, "out": out})
        except ValueError as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); generate the catalog again") from None


def load_catalog(out: str | Path) -> CatalogInfo:
    """Shortcut for :meth:`CatalogInfo.load`."""
    return CatalogInfo.load(out)
