"""Feature cache: backbone outputs computed once, stored on disk, reused while they cannot change.

When every backbone is frozen, ``model.encode(batch)`` gives the same features for a product
every epoch, so the trainer computes them once and trains only fusion + heads on the cached
tensors (seconds instead of minutes). A backbone frozen *below a cut point* (partial
fine-tuning, ``freeze = ["image-backbone@1"]``) caches its activations at the cut instead,
one entry per image, and each epoch runs only the stages above the cut.

Entries are keyed per fusion input (``image:full``, ``text``…) by

- the backbone's :meth:`~fashion.Component.fingerprint` (name, options and weights) — or, cut,
  :meth:`~fashion.Backbone.below_fingerprint` (the frozen part only, and the cut's name) —
  and, for image inputs, the view's cropper fingerprint and view name (the augmentation-free
  view ``model.prepare`` cuts), and
- the product's input content: sha256 of each image's bytes, or the product's text fields.

Any change of weights, options, cropper, images or text gives a new key, so a stale entry is
never read. Files live under ``<cache_dir>/<input>-<fingerprint>/chunk-*.safetensors``; each
chunk holds ``features`` ``(n, D)`` and ``masks`` ``(n,)`` (or, at a cut, ``activations``
``(images, …)`` and ``counts`` ``(n,)``) and its keys in the safetensors metadata.

A fill writes a chunk every ``chunk_rows`` products, atomically (temporary file + rename), so a
killed fill keeps what it wrote and the next one computes only the rest. Two runs filling one
folder at once take turns through a lock file (the second then finds the first's entries), and
progress (rows/s, ETA) is shown on a terminal and logged as plain lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fashion._util.files import atomic_writer
from fashion._util.progress import progress
from fashion.model.inputs import Product
from fashion.model.network import FashionModel, _masked_mean
from fashion.model.spec import InputName
from fashion.training.data import LabeledDataset

log = logging.getLogger("fashion.training")

CHUNK_ROWS = 256
"""Products per chunk file: what a killed fill can lose at most."""


def _image_digest(source: Any) -> str:
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest()
    if hasattr(source, "tobytes"):  # a PIL image
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return hashlib.sha256(buffer.getvalue()).hexdigest()
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


@dataclass
class CachedInputs:
    """A batch from the cache: features (and masks) of fully frozen inputs, and per-image
    activations at the cut (with their owner rows) of inputs cut for partial fine-tuning."""

    size: int
    features: dict[str, Tensor]
    masks: dict[str, Tensor]
    activations: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        """``features, masks = inputs`` for caches without cut inputs (else call :meth:`resolve`)."""
        if self.activations:
            raise TypeError("cached activations at a cut need the model: call .resolve(model)")
        return iter((self.features, self.masks))

    def resolve(self, model: FashionModel) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Every input's features: activations run through the stages above their cut."""
        if not self.activations:
            return self.features, self.masks
        features, masks = dict(self.features), dict(self.masks)
        for name, (values, owner) in self.activations.items():
            backbone = model.backbones[InputName.parse(name).backbone]
            if owner.numel() == 0:
                features[name] = torch.zeros(self.size, backbone.output_dim, device=values.device)
                masks[name] = torch.zeros(self.size, dtype=torch.bool, device=values.device)
                continue
            out = backbone.forward_above(values, backbone.train_from).float()  # type: ignore[arg-type]
            features[name], masks[name] = _masked_mean(out, owner, self.size)
        return features, masks


class CachedFeatures:
    """Cached entries of every row of one dataset, per fusion input: features and presence masks,
    or (cut inputs) activations of every image with each row's first image and image count."""

    def __init__(
        self,
        features: dict[str, Tensor],
        masks: dict[str, Tensor],
        activations: dict[str, tuple[Tensor, Tensor, Tensor]] | None = None,
    ) -> None:
        self.features = features
        self.masks = masks
        self.activations = activations or {}

    def to(self, device: torch.device | str) -> CachedFeatures:
        return CachedFeatures(
            {k: v.to(device) for k, v in self.features.items()},
            {k: v.to(device) for k, v in self.masks.items()},
            {k: tuple(t.to(device) for t in v) for k, v in self.activations.items()},  # type: ignore[misc]
        )

    def gather(self, rows: Tensor) -> CachedInputs:
        """The entries of ``rows`` (call :meth:`CachedInputs.resolve` for the features)."""
        activations: dict[str, tuple[Tensor, Tensor]] = {}
        for name, (values, starts, counts) in self.activations.items():
            first, count = starts.index_select(0, rows), counts.index_select(0, rows)
            owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), count)
            offsets = torch.cumsum(count, 0) - count
            within = torch.arange(int(count.sum()), device=rows.device) - offsets.repeat_interleave(count)
            activations[name] = (values.index_select(0, first.repeat_interleave(count) + within), owner)
        return CachedInputs(
            len(rows),
            {k: v.index_select(0, rows) for k, v in self.features.items()},
            {k: v.index_select(0, rows) for k, v in self.masks.items()},
            activations,
        )


class _LogLines(io.StringIO):
    """A text stream whose lines become INFO records of the ``fashion.training`` log."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info("%s", line)
        return len(text)


@contextlib.contextmanager
def _fill_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (``fcntl.flock``; a no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("feature cache %s is being filled by another run; waiting for it", path.parent)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class FeatureCache:
    """The on-disk cache for one model's frozen backbones (or frozen parts below a cut)."""

    def __init__(
        self, directory: str | Path, model: FashionModel, *, chunk_rows: int = CHUNK_ROWS, precision: str = "fp32",
        variant: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.variant = variant
        """Which augmented variant the augmenting views' entries are (``None``: the plain views)."""
        self.precision = precision  # the fill's autocast: bf16 entries never mix with fp32 ones
        self.model = model
        self.chunk_rows = chunk_rows
        self._prefixes: dict[str, str] = {}
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ keys

    def cut_of(self, name: str) -> str | None:
        """The cut point of a fusion input's backbone (``None``: whole backbone frozen)."""
        return getattr(self.model.backbones[InputName.parse(name).backbone], "train_from", None)

    def input_prefix(self, name: str) -> str:
        """``<input>-<fingerprint>``: the folder of one fusion input's entries."""
        if name not in self._prefixes:
            parsed = InputName.parse(name)
            backbone = self.model.backbones[parsed.backbone]
            cut = self.cut_of(name)
            frozen = backbone.below_fingerprint(cut) if cut is not None else backbone.fingerprint()
            digest = hashlib.sha256(frozen.encode())
            if self.precision != "fp32":
                digest.update(f"|{self.precision}|".encode())
            if parsed.view is not None:
                cropper = self.model.croppers[parsed.view]
                digest.update(f"|{parsed.view}|".encode())
                digest.update(cropper.fingerprint().encode())
                if self.variant is not None and getattr(cropper, "augmentations", list)():
                    augment = json.dumps(cropper.options_dict().get("augment"), sort_keys=True)
                    digest.update(f"|augment {augment}|variant {self.variant}|".encode())
            safe = name.replace(":", "_").replace("/", "_")
            if cut is not None:
                safe += f"@{cut}"
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

    def _write(self, name: str, keys: list[str], tensors: dict[str, Tensor]) -> None:
        from safetensors.torch import save_file

        folder = self.directory / self.input_prefix(name)
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        with atomic_writer(folder / f"chunk-{digest}.safetensors") as tmp:
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                metadata={"keys": json.dumps(keys), "input": name},
            )

    def _read(self, name: str, keys: list[str], index: dict[str, tuple[Path, int]]) -> tuple[Tensor, ...]:
        from safetensors import safe_open

        by_file: dict[Path, list[tuple[int, int]]] = {}
        for i, key in enumerate(keys):
            chunk, row = index[key]
            by_file.setdefault(chunk, []).append((i, row))
        if self.cut_of(name) is None:
            features = torch.zeros(len(keys), self.model.input_dims[name])
            masks = torch.zeros(len(keys), dtype=torch.bool)
            for chunk, pairs in by_file.items():
                with safe_open(str(chunk), framework="pt") as f:
                    stored_features, stored_masks = f.get_tensor("features"), f.get_tensor("masks")
                targets = torch.tensor([i for i, _ in pairs])
                sources = torch.tensor([r for _, r in pairs])
                features[targets] = stored_features[sources].float()
                masks[targets] = stored_masks[sources].bool()
            return features, masks
        # activations at a cut: every row's images, in row order
        pieces: list[Tensor | None] = [None] * len(keys)
        for chunk, pairs in by_file.items():
            with safe_open(str(chunk), framework="pt") as f:
                values, counts = f.get_tensor("activations"), f.get_tensor("counts")
            starts = torch.cumsum(counts, 0) - counts
            for i, row in pairs:
                pieces[i] = values[int(starts[row]) : int(starts[row] + counts[row])]
        counts = torch.tensor([p.shape[0] for p in pieces], dtype=torch.long)  # type: ignore[union-attr]
        present = [p for p in pieces if p is not None and p.shape[0]]
        values = torch.cat(present) if present else torch.zeros(0)
        return values, torch.cumsum(counts, 0) - counts, counts

    # ------------------------------------------------------------------ fill + load

    def _encode(self, products: list[Product], names: list[str], autocast: Any) -> dict[str, dict[str, Tensor]]:
        """One chunk's entries per input: features + masks, or activations + counts at a cut."""
        model = self.model
        batch = model.prepare(products).to(model.device)
        out: dict[str, dict[str, Tensor]] = {}
        with autocast() if autocast is not None else contextlib.nullcontext():
            for name in names:  # fully frozen inputs (not model.encode: a cut input runs below only)
                if self.cut_of(name) is not None:
                    continue
                payload, owner = batch.inputs[name]
                backbone = model.backbones[InputName.parse(name).backbone]
                if owner.numel() == 0 or payload is None:
                    features = torch.zeros(len(products), backbone.output_dim)
                    masks = torch.zeros(len(products), dtype=torch.bool)
                else:
                    features, masks = _masked_mean(backbone(payload).float(), owner, len(products))
                out[name] = {"features": features.float().cpu(), "masks": masks.cpu()}
            for name in names:
                cut = self.cut_of(name)
                if cut is None:
                    continue
                payload, owner = batch.inputs[name]
                backbone = model.backbones[InputName.parse(name).backbone]
                counts = torch.bincount(owner.cpu(), minlength=len(products))
                if owner.numel() == 0 or payload is None:
                    values = torch.zeros(0)
                else:
                    values = backbone.forward_below(payload, cut).float().cpu()
                    values = values[torch.argsort(owner.cpu(), stable=True)]
                out[name] = {"activations": values, "counts": counts}
        return out

    def fill(
        self,
        dataset: LabeledDataset,
        *,
        batch_size: int = 64,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        progress: bool | None = None,
    ) -> int:
        """Compute and store the entries this dataset lacks, a chunk at a time; returns how many
        products ran. Resumes a killed fill; waits for another run filling the same inputs."""
        keys = self.product_keys(dataset.products, dataset.image_digests)
        lock = self.directory / f".fill-{hashlib.sha256('|'.join(sorted(self.input_prefix(n) for n in keys)).encode()).hexdigest()[:16]}.lock"
        with _fill_lock(lock):
            return self._fill(dataset, keys, batch_size, autocast, progress)

    def _fill(
        self, dataset: LabeledDataset, keys: dict[str, list[str]], batch_size: int, autocast: Any, progress_on: bool | None
    ) -> int:
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
        label = f"feature cache {dataset.name}" + (f" (variant {self.variant})" if self.variant is not None else "")
        chunk = max(self.chunk_rows, batch_size)
        augmenting = {v: c.training for v, c in model.croppers.items()}
        random_state = random.getstate()
        if self.variant is not None:  # the augmenting views cut this variant's random views
            for cropper in model.croppers.values():
                cropper.train(bool(getattr(cropper, "augmentations", list)()))
        try:
            live = sys.stderr.isatty() if progress_on is None else progress_on
            stream = sys.stderr if live else _LogLines()  # plain lines go to the run's log
            with torch.inference_mode(), progress(label, len(missing), enabled=True, stream=stream) as meter:
                for start in range(0, len(missing), chunk):
                    rows = missing[start : start + chunk]
                    parts: dict[str, dict[str, list[Tensor]]] = {n: {} for n in keys}
                    for b in range(0, len(rows), batch_size):
                        sub = rows[b : b + batch_size]
                        random.seed(f"{self.variant}|{next(iter(keys.values()))[sub[0]]}")
                        for name, tensors in self._encode([dataset.products[i] for i in sub], list(keys), autocast).items():
                            for k, v in tensors.items():
                                parts[name].setdefault(k, []).append(v)
                        meter.update(len(sub))
                    for name in keys:
                        self._store(name, [keys[name][i] for i in rows], parts[name], indexes[name])
        finally:
            for key, mode in modes.items():
                model.backbones[key].train(mode)
            for view, mode in augmenting.items():
                model.croppers[view].train(mode)
            random.setstate(random_state)  # the run's own random draws are as without the fill
        return len(missing)

    def _store(self, name: str, row_keys: list[str], parts: dict[str, list[Tensor]], index: dict[str, Any]) -> None:
        """Write one chunk of an input: the rows whose keys are new (each key once)."""
        keep = [p for p, key in enumerate(row_keys) if key not in index and row_keys.index(key) == p]
        if not keep:
            return
        take = torch.tensor(keep)
        if "features" in parts:
            tensors = {"features": torch.cat(parts["features"])[take], "masks": torch.cat(parts["masks"])[take]}
        else:
            counts = torch.cat(parts["counts"])
            values = torch.cat(parts["activations"]) if counts.sum() else torch.zeros(0)
            starts = torch.cumsum(counts, 0) - counts
            pieces = [values[int(starts[p]) : int(starts[p] + counts[p])] for p in keep]
            tensors = {"activations": torch.cat(pieces) if counts[take].sum() else torch.zeros(0), "counts": counts[take]}
        self._write(name, [row_keys[p] for p in keep], tensors)
        for p in keep:
            index[row_keys[p]] = True

    def entry_bytes(self, dataset: LabeledDataset) -> int:
        """About how many bytes this dataset's entries take on disk: the rows times a stored
        entry's size (or, in an empty cache, the first product's, computed)."""
        from safetensors import safe_open

        if not len(dataset):
            return 0
        per_row = 0
        for name in self.model.input_dims:
            chunk = next((self.directory / self.input_prefix(name)).glob("chunk-*.safetensors"), None)
            if chunk is None:  # frozen backbones in eval mode, as in fill: no BatchNorm update
                modes = {k: b.training for k, b in self.model.backbones.items()}
                self.model.backbones.eval()
                try:
                    with torch.inference_mode():
                        entries = self._encode([dataset.products[0]], list(self.model.input_dims), None)
                finally:
                    for key, mode in modes.items():
                        self.model.backbones[key].train(mode)
                return len(dataset) * sum(t.numel() * t.element_size() for e in entries.values() for t in e.values())
            with safe_open(str(chunk), framework="pt") as f:
                rows = len(json.loads((f.metadata() or {}).get("keys", "[]"))) or 1
                per_row += sum(f.get_tensor(k).nbytes for k in f.keys()) // rows
        return len(dataset) * per_row

    def load(self, dataset: LabeledDataset) -> CachedFeatures:
        """Every row's entries from disk (call :meth:`fill` first)."""
        keys = self.product_keys(dataset.products, dataset.image_digests)
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        activations: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        for name, names_keys in keys.items():
            read = self._read(name, names_keys, self._index(name))
            if self.cut_of(name) is None:
                features[name], masks[name] = read
            else:
                activations[name] = read  # type: ignore[assignment]
        return CachedFeatures(features, masks, activations)


__all__ = ["CHUNK_ROWS", "CachedFeatures", "CachedInputs", "FeatureCache"]
