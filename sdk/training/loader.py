"""The step data loader: a schedule's steps as device-ready ``(inputs, targets)`` parts.

Training and evaluation read data the same way. A *step* is a tuple of parts ``(dataset index,
rows)`` (see :mod:`fashion.training.samplers`); :class:`BatchCollator` turns a part into a
prepared :class:`~fashion.Batch` plus the dataset's targets, :func:`iterate_steps` collates steps
in order (in DataLoader workers when ``num_workers > 0``), and :class:`StepLoader` hands the
trainer each step's parts on the device, from the products or from cached features.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from fashion.errors import DataError
from fashion.model.inputs import ProductError
from fashion.model.network import FashionModel
from fashion.training.cache import CachedFeatures, FeatureCache
from fashion.training.data import LabeledDataset
from fashion.training.samplers import Step, shard_step

log = logging.getLogger("fashion.training")

Targets = dict[str, tuple[Tensor, Tensor]]
LoadedPart = tuple[Any, Targets]
"""``(inputs, targets)``: a Batch (or cached ``(features, masks)``) and the labeled attributes."""


class BatchCollator:
    """Turns a step part ``(dataset index, rows)`` into ``(Batch, targets)`` (picklable).

    Runs ``model.prepare`` on the products and indexes the dataset's pre-encoded targets, for
    the attributes that dataset labels only: heads of other attributes get no target and so no
    loss.
    """

    def __init__(self, model: FashionModel, datasets: Sequence[LabeledDataset]) -> None:
        self.prepare = model.prepare
        self.datasets = list(datasets)

    def __call__(self, part: tuple[int, Sequence[int]]) -> tuple[Any, dict[str, tuple[Tensor, Tensor]]]:
        d, rows = part
        dataset = self.datasets[d]
        products = [dataset.products[i] for i in rows]
        try:
            batch = self.prepare(products)
        except ProductError as exc:
            row = dataset.rows[rows[exc.row]]
            raise DataError(f"{dataset.path}:{row}: {exc}") from None
        index = torch.as_tensor(rows, dtype=torch.long)
        targets = {a: (t.index_select(0, index), m.index_select(0, index)) for a, (t, m) in dataset.targets.items()}
        return batch, targets


class StepDataset(torch.utils.data.Dataset):
    """A DataLoader-friendly view of a schedule: item ``i`` is step ``i``, collated."""

    def __init__(self, steps: Sequence[Any], collate: BatchCollator) -> None:
        self.steps = list(steps)
        self.collate = collate

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> list[tuple[int, Any, dict[str, tuple[Tensor, Tensor]]]]:
        return [(d, *self.collate((d, rows))) for d, rows in self.steps[i]]


def _identity(x: Any) -> Any:
    return x


def iterate_steps(
    steps: Sequence[Any], collate: BatchCollator, num_workers: int = 0
) -> Iterator[list[tuple[int, Any, dict[str, tuple[Tensor, Tensor]]]]]:
    """Collated steps in order, prepared in ``num_workers`` DataLoader workers when > 0."""
    dataset = StepDataset(steps, collate)
    if num_workers <= 0:
        for i in range(len(dataset)):
            yield dataset[i]
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_identity,
        prefetch_factor=2, persistent_workers=False,
    )
    yield from loader


class StepLoader:
    """Device-ready parts of each step of a training schedule, for this process's shard.

    Only the attributes labeled in at least one row of the whole (unsharded) step get targets,
    so every process of a distributed run runs the same heads. With ``features`` (the feature
    cache of frozen backbones) the inputs are cached ``(features, masks)`` instead of batches.
    """

    def __init__(
        self,
        model: FashionModel,
        datasets: Sequence[LabeledDataset],
        device: torch.device,
        *,
        features: Sequence[CachedFeatures] | None = None,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.model = model
        self.datasets = list(datasets)
        self.device = device
        self.features = features
        self.num_workers = num_workers
        self.rank, self.world_size = rank, world_size

    def present(self, step: Step) -> list[list[str]]:
        """Per part, the attributes labeled in at least one of the step's rows."""
        present = []
        for d, rows in step:
            index = torch.as_tensor(rows, dtype=torch.long)
            targets = self.datasets[d].targets
            present.append([a for a, (_, m) in targets.items() if bool(m.index_select(0, index).any())])
        return present

    def __call__(self, steps: Sequence[Step]) -> Iterator[list[LoadedPart]]:
        """The parts of each step, in order."""
        items = [(shard_step(step, self.rank, self.world_size), self.present(step)) for step in steps]
        device = self.device
        if self.features is not None:
            for step, present in items:
                parts: list[LoadedPart] = []
                for (d, rows), attributes in zip(step, present, strict=True):
                    index = torch.as_tensor(rows, dtype=torch.long)
                    targets = self.datasets[d].targets
                    kept = {
                        a: (targets[a][0].index_select(0, index).to(device, non_blocking=True),
                            targets[a][1].index_select(0, index).to(device, non_blocking=True))
                        for a in attributes
                    }
                    parts.append((self.features[d].gather(index.to(device)), kept))
                yield parts
            return
        collate = BatchCollator(self.model, self.datasets)
        collated_steps = iterate_steps([step for step, _ in items], collate, self.num_workers)
        for collated, (_, present) in zip(collated_steps, items, strict=True):
            parts = []
            for (_, batch, targets), attributes in zip(collated, present, strict=True):
                kept = {
                    a: (targets[a][0].to(device, non_blocking=True), targets[a][1].to(device, non_blocking=True))
                    for a in attributes
                }
                parts.append((batch.to(device), kept))
            yield parts


def fill_and_load_cache(run: Any, model: FashionModel) -> tuple[FeatureCache, list[list[CachedFeatures]], list[CachedFeatures]]:
    """The run's feature cache filled and loaded: the training rows once, or, where a view
    augments, ``cache_variants`` augmented variants of them (its size on disk logged first);
    the validation rows with plain views. Returns the plain cache, the training features of each
    variant and the validation features."""
    config = run.config
    directory = config.cache_dir or (config.output_dir / "feature-cache")
    augmenting = [v for v, c in model.croppers.items() if getattr(c, "augmentations", list)()]
    plain = FeatureCache(directory, model, precision=run.precision)
    variants = [FeatureCache(directory, model, precision=run.precision, variant=k)
                for k in range(config.cache_variants)] if augmenting else [plain]
    batch_size = config.eval_batch_size or max(config.batch_size, 64)
    if run.is_main:
        size = sum(plain.entry_bytes(d) for d in run.train_sets) * len(variants)
        size += sum(plain.entry_bytes(d) for d in run.val_sets)
        log.info("feature cache %s: %s of the training rows%s and the validation rows, about %.1f MB on disk",
                 directory, f"{len(variants)} augmented variants" if augmenting else "the plain views",
                 f" (views {', '.join(augmenting)} augment)" if augmenting else "", size / 1e6)
        for cache in variants:
            for dataset in run.train_sets:
                cache.fill(dataset, batch_size=batch_size, autocast=run._autocast, progress=config.progress)
        for dataset in run.val_sets:
            plain.fill(dataset, batch_size=batch_size, autocast=run._autocast, progress=config.progress)
    run.barrier()
    train = [[cache.load(d).to(run.device) for d in run.train_sets] for cache in variants]
    validation = [plain.load(d).to(run.device) for d in run.val_sets]
    hits = sum(c.hits for c in {id(c): c for c in [plain, *variants]}.values())
    misses = sum(c.misses for c in {id(c): c for c in [plain, *variants]}.values())
    log.info("feature cache %s: %d hits, %d computed", directory, hits, misses)
    return plain, train, validation


__all__ = ["BatchCollator", "LoadedPart", "StepDataset", "StepLoader", "Targets", "fill_and_load_cache", "iterate_steps"]
