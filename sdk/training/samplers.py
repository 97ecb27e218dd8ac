"""Batch samplers for multi-data training: which dataset each step reads, and what an epoch is.

A sampler turns dataset sizes into an epoch's *schedule*: a list of steps, each a tuple of
parts ``(dataset_index, row_indices)``. Every sampler except ``all_tasks`` gives a step one part
(one dataset per batch); ``all_tasks`` gives a step one part per dataset. Schedules depend only
on ``(sizes, batch_size, epoch, seed)``, so a resumed run rebuilds the same schedule and skips
the steps it already did, and every process of a distributed run agrees on it.

Built-in samplers (``docs/training.md`` has the details):

- ``proportional``: every dataset is cut into shuffled batches once; the batches of all datasets
  are shuffled together. An epoch = each dataset seen exactly once; datasets appear in
  proportion to their size.
- ``round_robin``: datasets take turns, one batch each. An epoch ends when the largest dataset
  is exhausted; smaller ones restart (reshuffled) as often as needed.
- ``temperature``: each step draws a dataset with probability ∝ n^(1/T) (``temperature`` T,
  default 2). An epoch = as many steps as ``proportional`` has.
- ``all_tasks``: each step takes one batch from every dataset (losses are combined). An epoch
  ends when the largest dataset is exhausted; smaller ones restart.

Samplers register through the ``register_samplers`` plugin hook (the built-in ones in
this module's ``register_samplers``); ``docs/plugins.md`` shows a plugin that adds one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from pydantic import Field

from fashion.contract.components import ComponentOptions
from fashion.contract.hookspecs import Register, hookimpl
from fashion.contract.training import Part, Sampler, Step


def derive_seed(seed: int, *tags: object) -> int:
    """A stable 63-bit seed from ``seed`` and tags (same on every machine and process)."""
    text = ":".join(str(t) for t in (seed, *tags))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def make_generator(seed: int, *tags: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *tags))


def shuffled_batches(size: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One pass over ``range(size)`` in random order, cut into batches (the last may be short)."""
    order = torch.randperm(size, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, size, batch_size)]


def endless_batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Passes over a dataset one after another, reshuffled at each restart."""
    while True:
        yield from shuffled_batches(size, batch_size, generator)


def num_batches(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


class ProportionalSampler(Sampler):
    """One dataset per batch; all batches shuffled together; each dataset used once."""

    name = "proportional"

    def schedule(self, sizes: Sequence[int], batch_size: int, *, epoch: int, seed: int) -> list[Step]:
        self._check(sizes, batch_size)
        generator = make_generator(seed, "proportional", epoch)
        steps: list[Step] = []
        for d, size in enumerate(sizes):
            steps.extend(((d, batch),) for batch in shuffled_batches(size, batch_size, generator))
        order = torch.randperm(len(steps), generator=generator).tolist()
        return [steps[i] for i in order]


class RoundRobinSampler(Sampler):
    """Datasets in turn; the epoch ends when the largest is exhausted; smaller ones restart."""

    name = "round_robin"

    def schedule(self, sizes: Sequence[int], batch_size: int, *, epoch: int, seed: int) -> list[Step]:
        self._check(sizes, batch_size)
        generator = make_generator(seed, "round_robin", epoch)
        streams = [endless_batches(n, batch_size, generator) for n in sizes]
        rounds = max(num_batches(n, batch_size) for n in sizes)
        return [((d, next(streams[d])),) for _ in range(rounds) for d in range(len(sizes))]


class TemperatureOptions(ComponentOptions):
    temperature: float = Field(2.0, gt=0.0)


class TemperatureSampler(Sampler):
    """Dataset drawn with p ∝ n^(1/T); epoch = the total number of batches of all datasets."""

    name = "temperature"
    Options = TemperatureOptions

    def probabilities(self, sizes: Sequence[int]) -> torch.Tensor:
        t = float(self.options.temperature)  # type: ignore[attr-defined]
        weights = torch.tensor([float(n) for n in sizes], dtype=torch.float64) ** (1.0 / t)
        return weights / weights.sum()

    def schedule(self, sizes: Sequence[int], batch_size: int, *, epoch: int, seed: int) -> list[Step]:
        self._check(sizes, batch_size)
        generator = make_generator(seed, "temperature", epoch)
        total = sum(num_batches(n, batch_size) for n in sizes)
        draws = torch.multinomial(
            self.probabilities(sizes), total, replacement=True, generator=generator
        ).tolist()
        streams = [endless_batches(n, batch_size, generator) for n in sizes]
        return [((d, next(streams[d])),) for d in draws]


class AllTasksSampler(Sampler):
    """Every step: one batch of every dataset. Epoch = the largest dataset once."""

    name = "all_tasks"
    all_tasks_per_step = True

    def schedule(self, sizes: Sequence[int], batch_size: int, *, epoch: int, seed: int) -> list[Step]:
        self._check(sizes, batch_size)
        generator = make_generator(seed, "all_tasks", epoch)
        streams = [endless_batches(n, batch_size, generator) for n in sizes]
        rounds = max(num_batches(n, batch_size) for n in sizes)
        return [tuple((d, next(streams[d])) for d in range(len(sizes))) for _ in range(rounds)]


def shard_step(step: Step, rank: int, world_size: int) -> Step:
    """This process's share of a step: rows ``rank::world_size`` of every part.

    All processes work on the same datasets at the same step, so a run on W processes follows
    the schedule of a single-process run with the same ``batch_size``. A part with fewer rows
    than processes gives the extra processes one repeated row.
    """
    if world_size <= 1:
        return step
    out = []
    for dataset, rows in step:
        mine = rows[rank::world_size] or [rows[rank % len(rows)]]
        out.append((dataset, mine))
    return tuple(out)


@hookimpl
def register_samplers(register: Register) -> None:
    """The built-in samplers, registered like any plugin's."""
    for sampler in (ProportionalSampler, RoundRobinSampler, TemperatureSampler, AllTasksSampler):
        register(sampler)


def get_sampler_class(name: str) -> type[Sampler]:
    """The sampler class registered as ``name`` (through the ``register_samplers`` hook)."""
    from fashion.contract.manager import get_component_info

    return get_component_info("sampler", name).cls  # type: ignore[return-value]


def get_sampler(name: str, options: dict[str, Any] | None = None) -> Sampler:
    """Build the sampler registered as ``name`` with its options (validated)."""
    return get_sampler_class(name)(options)


def list_samplers() -> list[str]:
    """The names of the registered samplers, sorted."""
    from fashion.contract.manager import component_table

    return sorted(component_table("sampler")["sampler"])


__all__ = [
    "AllTasksSampler",
    "Part",
    "ProportionalSampler",
    "RoundRobinSampler",
    "Sampler",
    "Step",
    "TemperatureSampler",
    "derive_seed",
    "get_sampler",
    "get_sampler_class",
    "list_samplers",
    "make_generator",
    "shard_step",
]
