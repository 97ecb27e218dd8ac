"""Feature cache: backbone outputs computed once, stored on disk, reused while backbones are frozen.

When every backbone is frozen, ``model.encode(batch)`` gives the same features for a product
every epoch, so the trainer computes them once and trains only fusion + heads on the cached
tensors (seconds instead of minutes).

Entries are keyed per fusion input (``image:full``, ``text``…) by

- the backbone's :meth:`~fashion.Component.fingerprint` (name, options and weights) and, for
  image inputs, the view's cropper fingerprint and view name, and
- the product's input content: sha256 of each image's bytes, or the product's text fields.

Any change of weights, options, cropper, images or text gives a new key, so a stale entry is
never read. Files live under ``<cache_dir>/<input>-<fingerprint>/chunk-*.safetensors``; each
chunk holds ``features`` ``(n, D)``, ``masks`` ``(n,)`` and its keys in the safetensors metadata.
Chunks are written to a temporary file and renamed, so a killed run leaves no broken chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..inputs import InputName, Product
from ..model import FashionModel
from .data import LabeledDataset


def _image_digest(source: Any) -> str:
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest()
    if hasattr(source, "tobytes"):  # a PIL image
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return hashlib.sha256(buffer.getvalue()).hexdigest()
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


class CachedFeatures:
    """Features and presence masks of every row of one dataset, per fusion input."""

    def __init__(self, features: dict[str, Tensor], masks: dict[str, Tensor]) -> None:
        self.features = features
        self.masks = masks

    def to(self, device: torch.device | str) -> CachedFeatures:
        return CachedFeatures(
            {k: v.to(device) for k, v in self.features.items()},
            {k: v.to(device) for k, v in self.masks.items()},
        )

    def gather(self, rows: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return (
            {k: v.index_select(0, rows) for k, v in self.features.items()},
            {k: v.index_select(0, rows) for k, v in self.masks.items()},
        )


class FeatureCache:
    """The on-disk cache for one model's (frozen) backbones."""

    def __init__(self, directory: str | Path, model: FashionModel) -> None:
        self.directory = Path(directory)
        self.model = model
        self._prefixes: dict[str, str] = {}
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ keys

    def input_prefix(self, name: str) -> str:
        """``<input>-<fingerprint>``: the folder of one fusion input's entries."""
        if name not in self._prefixes:
            parsed = InputName.parse(name)
            digest = hashlib.sha256(self.model.backbones[parsed.backbone].fingerprint().encode())
            if parsed.view is not None:
                digest.update(f"|{parsed.view}|".encode())
                digest.update(self.model.croppers[parsed.view].fingerprint().encode())
            safe = name.replace(":", "_").replace("/", "_")
            self._prefixes[name] = f"{safe}-{digest.hexdigest()[:20]}"
        return self._prefixes[name]

    def product_keys(
        self, products: Sequence[Product], digests: Sequence[Sequence[str]] | None = None
    ) -> dict[str, list[str]]:
        """The cache key of every product for every fusion input."""
        image_content: list[str] = []
        text_content: list[str] = []
        for i, product in enumerate(products):
            images = list(digests[i]) if digests is not None else [_image_digest(s) for s in product.images]
            image_content.append(",".join(images))
            text_content.append(json.dumps(product.text_fields(), sort_keys=True, ensure_ascii=False))
        keys: dict[str, list[str]] = {}
        for name in self.model.input_dims:
            content = image_content if InputName.parse(name).is_image else text_content
            keys[name] = [hashlib.sha256(c.encode()).hexdigest()[:32] for c in content]
        return keys

    # ------------------------------------------------------------------ storage

    def _index(self, name: str) -> dict[str, tuple[Path, int]]:
        from safetensors import safe_open

        folder = self.directory / self.input_prefix(name)
        index: dict[str, tuple[Path, int]] = {}
        if not folder.is_dir():
            return index
        for chunk in sorted(folder.glob("chunk-*.safetensors")):
            try:
                with safe_open(str(chunk), framework="pt") as f:
                    keys = json.loads((f.metadata() or {}).get("keys", "[]"))
            except Exception:  # an unreadable chunk is ignored: its entries are recomputed
                continue
            for row, key in enumerate(keys):
                index[key] = (chunk, row)
        return index

    def _write(self, name: str, keys: list[str], features: Tensor, masks: Tensor) -> None:
        from safetensors.torch import save_file

        folder = self.directory / self.input_prefix(name)
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        target = folder / f"chunk-{digest}.safetensors"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".chunk-", suffix=".tmp")
        os.close(fd)
        try:
            save_file(
                {"features": features.contiguous(), "masks": masks.contiguous()},
                tmp,
                metadata={"keys": json.dumps(keys), "input": name},
            )
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, name: str, keys: list[str], index: dict[str, tuple[Path, int]]) -> tuple[Tensor, Tensor]:
        from safetensors import safe_open

        dim = self.model.input_dims[name]
        features = torch.zeros(len(keys), dim)
        masks = torch.zeros(len(keys), dtype=torch.bool)
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for i, key in enumerate(keys):
            chunk, row = index[key]
            by_file.setdefault(chunk, []).append((i, row))
        for chunk, pairs in by_file.items():
            with safe_open(str(chunk), framework="pt") as f:
                stored_features = f.get_tensor("features")
                stored_masks = f.get_tensor("masks")
            targets = torch.tensor([i for i, _ in pairs])
            sources = torch.tensor([r for _, r in pairs])
            features[targets] = stored_features[sources].float()
            masks[targets] = stored_masks[sources].bool()
        return features, masks

    # ------------------------------------------------------------------ fill + load

    def fill(
        self,
        dataset: LabeledDataset,
        *,
        batch_size: int = 64,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> int:
        """Compute and store the entries this dataset lacks; returns how many products ran."""
        keys = self.product_keys(dataset.products, dataset.image_digests)
        indexes = {name: self._index(name) for name in keys}
        missing = [
            i for i in range(len(dataset))
            if any(keys[name][i] not in indexes[name] for name in keys)
        ]
        self.hits += len(dataset) - len(missing)
        self.misses += len(missing)
        if not missing:
            return 0
        model = self.model
        modes = {k: b.training for k, b in model.backbones.items()}
        model.backbones.eval()
        new_features: dict[str, list[Tensor]] = {name: [] for name in keys}
        new_masks: dict[str, list[Tensor]] = {name: [] for name in keys}
        try:
            with torch.inference_mode():
                for start in range(0, len(missing), batch_size):
                    rows = missing[start : start + batch_size]
                    batch = model.prepare([dataset.products[i] for i in rows])
                    with autocast() if autocast is not None else contextlib.nullcontext():
                        features, masks = model.encode(batch)
                    for name in keys:
                        new_features[name].append(features[name].float().cpu())
                        new_masks[name].append(masks[name].cpu())
        finally:
            for key, mode in modes.items():
                model.backbones[key].train(mode)
        for name in keys:
            seen: dict[str, int] = {}
            order = []
            for position, i in enumerate(missing):
                key = keys[name][i]
                if key not in indexes[name] and key not in seen:
                    seen[key] = position
                    order.append(position)
            if not order:
                continue
            take = torch.tensor(order)
            self._write(
                name,
                [keys[name][missing[p]] for p in order],
                torch.cat(new_features[name])[take],
                torch.cat(new_masks[name])[take],
            )
        return len(missing)

    def load(self, dataset: LabeledDataset) -> CachedFeatures:
        """Every row's features from disk (call :meth:`fill` first)."""
        keys = self.product_keys(dataset.products, dataset.image_digests)
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name, names_keys in keys.items():
            features[name], masks[name] = self._read(name, names_keys, self._index(name))
        return CachedFeatures(features, masks)


__all__ = ["CachedFeatures", "FeatureCache"]
