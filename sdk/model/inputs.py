"""The input layer: products, image loading, the preparation thread pool, batches, input names.

Everything a model reads before its first tensor operation lives here, apart from the network
(:mod:`fashion.model.network`): :class:`Product` (one listing), :func:`prepare_batch` (decode images,
cut views, preprocess pixels and text on the CPU, in a small thread pool), :class:`Batch` (the
prepared inputs) and :class:`InputName` (the name of one fusion input: a backbone and, for an
image backbone, the view it reads).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fashion.data.images import augment_seed, load_image
from fashion.data.manifest import IMAGE_SEPARATOR, TEXT_FIELDS, ManifestRow
from fashion.errors import ConfigError, DataError
from fashion.model.spec import InputName, ModelSpec

if TYPE_CHECKING:
    from fashion.contract.components import Backbone, Cropper




@dataclass
class Product:
    """One product listing. Images are paths, bytes or PIL images; any field may be missing."""

    id: str | None = None
    images: list[Any] = field(default_factory=list)
    title: str | None = None
    description: str | None = None
    brand: str | None = None

    @classmethod
    def coerce(cls, value: Product | Mapping[str, Any]) -> Product:
        if isinstance(value, Product):
            return value
        if not isinstance(value, Mapping):
            raise DataError(
                f"a product must be a fashion.Product or a mapping, got {type(value).__name__}"
            )
        unknown = set(value) - {"id", "images", "image", "title", "description", "brand"}
        if unknown:
            raise DataError(
                f"product {value.get('id')!r} has unknown fields {sorted(unknown)}; "
                "use id, images, title, description, brand."
            )
        images = value.get("images", value.get("image")) or []
        if isinstance(images, (str, Path, bytes)) or hasattr(images, "convert"):
            images = [images]
        return cls(
            id=None if value.get("id") is None else str(value["id"]),
            images=list(images),
            title=value.get("title"),
            description=value.get("description"),
            brand=value.get("brand"),
        )

    def text_fields(self) -> dict[str, str]:
        return {
            name: getattr(self, name)
            for name in TEXT_FIELDS
            if isinstance(getattr(self, name), str) and getattr(self, name).strip()
        }


_POOL: tuple[int, Any] | None = None  # (pid, ThreadPoolExecutor): a forked child makes its own


def crop_pool() -> Any:
    """The thread pool :meth:`FashionModel.prepare` cuts images in; ``None`` for no threads.

    ``FASHION_PREPARE_THREADS`` sets its size (default: up to 4, one per available core; ``1``
    turns it off). Inside DataLoader workers the images are cut in the worker itself: the
    workers already run in parallel.
    """
    global _POOL
    import os

    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        return None
    setting = os.environ.get("FASHION_PREPARE_THREADS", "").strip()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        threads = int(setting) if setting else min(4, cores)
    except ValueError:
        raise ConfigError(
            f"FASHION_PREPARE_THREADS={setting!r} is not a whole number; set it to e.g. 1 or 4."
        ) from None
    if threads <= 1:
        return None
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers != threads:
        from concurrent.futures import ThreadPoolExecutor

        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[1].shutdown(wait=False)
        _POOL = (os.getpid(), ThreadPoolExecutor(threads, thread_name_prefix="fashion-prepare"))
    return _POOL[1]


class ProductError(DataError):
    """A product in a batch could not be prepared; ``row`` is its index in the batch."""

    def __init__(self, message: str, row: int, product_id: str | None) -> None:
        super().__init__(message)
        self.row = row
        self.product_id = product_id


@dataclass
class Batch:
    """Preprocessed inputs. ``inputs[name] = (payload, owner)``: owner maps payload rows to products."""

    size: int
    inputs: dict[str, tuple[Any, Tensor]]
    notes: list[list[str]]
    ids: list[str | None]

    def to(self, device: torch.device | str) -> Batch:
        def move(x: Any) -> Any:
            if isinstance(x, Tensor):
                return x.to(device, non_blocking=True)
            if isinstance(x, Mapping):
                return {k: move(v) for k, v in x.items()}
            return x

        return Batch(
            self.size,
            {k: (move(p), o.to(device)) for k, (p, o) in self.inputs.items()},
            self.notes,
            self.ids,
        )


def prepare_batch(
    products: Sequence[Product | Mapping[str, Any]],
    *,
    croppers: Mapping[str, Cropper],
    backbones: Mapping[str, Backbone],
    spec: ModelSpec,
) -> Batch:
    """Decode, crop and preprocess a list of products (CPU; raises ProductError per row)."""
    items = [Product.coerce(p) for p in products]
    notes: list[list[str]] = [[] for _ in items]
    views: dict[str, list[Any]] = {view: [] for view in croppers}
    owners: dict[str, list[int]] = {view: [] for view in croppers}
    jobs = [(row, k, source) for row, product in enumerate(items) for k, source in enumerate(product.images)]

    # Augmenting croppers draw from one generator per image, seeded here in the batch's order:
    # the threads below then cut the same augmentations as one thread would (a seed reproduces).
    augmenting = any(c.training and getattr(c, "augmentations", list)() for c in croppers.values())
    seeds = [random.getrandbits(64) for _ in jobs] if augmenting else [None] * len(jobs)

    def cut(job: tuple[int, int, Any, int | None]) -> tuple[int, list[tuple[str, Any]]]:
        row, k, source, seed = job
        product = items[row]
        try:
            image = load_image(source, where=f"product {product.id or row} image {k}")
        except DataError as exc:
            raise ProductError(str(exc), row, product.id) from None
        with augment_seed(seed):
            return row, [(view, c) for view, cropper in croppers.items() for c in cropper.crop(image)]

    # Decoding and resizing release the GIL: a batch's images are cut in a few threads.
    # Results come back in order, so the first bad image raises, as in a plain loop.
    pool = crop_pool() if len(jobs) > 1 else None
    seeded = [(*job, seed) for job, seed in zip(jobs, seeds, strict=True)]
    for row, cuts in (pool.map(cut, seeded) if pool is not None else map(cut, seeded)):
        for view, c in cuts:
            views[view].append(c.image)
            owners[view].append(row)
            if c.note:
                notes[row].append(f"{view}: {c.note}")
    inputs: dict[str, tuple[Any, Tensor]] = {}
    for key, backbone in backbones.items():
        backbone_spec = spec.backbones[key]
        if backbone.modality == "image":
            for view in backbone_spec.views:
                pixels = backbone.preprocess(views[view])
                inputs[str(InputName(key, view))] = (pixels, torch.tensor(owners[view], dtype=torch.long))
        else:
            rows = [r for r, p in enumerate(items) if p.text_fields()]
            texts = [items[r].text_fields() for r in rows]
            payload = backbone.preprocess(texts) if texts else None
            inputs[str(InputName(key))] = (payload, torch.tensor(rows, dtype=torch.long))
    return Batch(len(items), inputs, notes, [p.id for p in items])


def text_value(value: Any, where: str, name: str) -> str | None:
    """A text field's value, or ``None`` when it is missing or blank; anything but a string is
    refused. The one rule for ``title``/``description``/``brand``, from a manifest or Python."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from Parquet/pandas
        return None
    if not isinstance(value, str):
        raise DataError(
            f"{where}: field '{name}' must be text, got {type(value).__name__} {str(value)[:40]!r}; "
            "convert it to a string or leave it empty."
        )
    return value if value.strip() else None


def image_paths(values: Mapping[str, Any], manifest_path: str | Path, row: int) -> list[Path | str]:
    """The row's image paths, resolved relative to the manifest's folder (a URL is kept as
    written, so the image loader can say that URLs are not fetched)."""
    manifest_path = Path(manifest_path)
    raw = values.get("images", values.get("image"))
    if raw is None or raw == "" or (isinstance(raw, float) and raw != raw):
        return []
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("[") and text.endswith("]"):  # a JSON list in a CSV cell
            try:
                raw = json.loads(text)
            except json.JSONDecodeError:
                raise DataError(
                    f"{manifest_path}:{row}: field 'images' starts with '[' but is not a JSON "
                    "list of paths; use a JSON list or separate paths with '|'."
                ) from None
    if isinstance(raw, str):
        parts = [p.strip() for p in raw.split(IMAGE_SEPARATOR)]
    elif isinstance(raw, (list, tuple)):
        bad = [p for p in raw if not isinstance(p, str)]
        if bad:
            raise DataError(
                f"{manifest_path}:{row}: field 'images' holds {type(bad[0]).__name__} "
                f"{str(bad[0])[:40]!r}; every image must be a path (a string)."
            )
        parts = [p.strip() for p in raw]
    else:
        raise DataError(
            f"{manifest_path}:{row}: field 'images' must be a '|'-separated string or a list, "
            f"got {type(raw).__name__}."
        )
    base = manifest_path.parent
    return [p if _is_url(p) else (base / p) if not Path(p).is_absolute() else Path(p)
            for p in parts if p]


def _is_url(text: str) -> bool:
    return "://" in text[:16]


def row_to_product(row: ManifestRow, manifest_path: str | Path) -> Product:
    """Turn a manifest row into a :class:`Product` (images are resolved, not opened).

    Raises :class:`DataError` (naming ``file:row``) for a record that could not be read or a
    field of the wrong type.
    """
    if row.error is not None:
        raise DataError(row.error)
    path = Path(manifest_path)
    values = row.values
    where = f"{path}:{row.line or row.row}"
    fields = {name: text_value(values.get(name), where, name) for name in TEXT_FIELDS}
    raw_id = values.get("id")
    images = image_paths(values, path, row.row)
    return Product(
        id=None if raw_id in (None, "") else str(raw_id),
        images=[str(p) for p in images],
        **fields,
    )


def check_has_input(product: Product, where: str) -> Product:
    """The rule of every command that reads products: one with no image and no text (title,
    description, brand) has nothing to predict from, a :class:`DataError` naming ``where``."""
    if not product.images and not product.text_fields():
        raise DataError(f"{where}: the row has no image and no text (title, description, brand); "
                        "nothing to predict from")
    return product


__all__ = ["Batch", "Product", "ProductError", "check_has_input", "crop_pool", "image_paths",
           "prepare_batch", "row_to_product", "text_value"]
