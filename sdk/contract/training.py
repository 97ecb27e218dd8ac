"""The two training component kinds: a ``Sampler`` (which dataset each step reads, and what an
epoch is) and a ``LossCombiner`` (how the per-attribute losses of a step become one loss).

Their built-ins live in ``fashion.training.samplers`` and ``fashion.training.losses`` and register
through the ``register_samplers`` / ``register_losses`` hooks like a plugin's.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fashion.contract.base import ComponentOptions, validate_options
from fashion.errors import ConfigError

Part = tuple[int, list[int]]
"""``(dataset_index, row_indices)``: one dataset's rows in a step."""
Step = tuple[Part, ...]


class Sampler(abc.ABC):
    """Base class: subclasses set ``name`` and implement :meth:`schedule`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    all_tasks_per_step: ClassVar[bool] = False
    """True when each step holds a batch of every dataset (needed by ``pcgrad``)."""

    def __init__(self, options: ComponentOptions | dict[str, Any] | None = None) -> None:
        self.options = validate_options(self.Options, options, f"sampler '{self.name}'")

    @abc.abstractmethod
    def schedule(
        self, sizes: Sequence[int], batch_size: int, *, epoch: int, seed: int
    ) -> list[Step]:
        """An epoch's steps; a pure function of the arguments (resume rebuilds it)."""

    def _check(self, sizes: Sequence[int], batch_size: int) -> None:
        if not sizes or any(n <= 0 for n in sizes):
            raise ConfigError(
                f"sampler '{self.name}' got dataset sizes {list(sizes)}; every dataset needs at "
                "least one usable row (see the data report for skipped rows)."
            )
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")


class LossCombiner(nn.Module, abc.ABC):
    """Base class. ``tasks`` are the model's attribute names."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    requires_all_tasks: ClassVar[bool] = False
    gradient_surgery: ClassVar[bool] = False

    def __init__(self, tasks: Sequence[str], options: ComponentOptions | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.options = validate_options(self.Options, options, f"loss '{self.name}'")
        self.tasks = list(tasks)
        self.index = {task: i for i, task in enumerate(self.tasks)}
        self._positions: dict[tuple[str, ...], Tensor] = {}

    def positions(self, names: Sequence[str], device: torch.device) -> Tensor:
        """Positions of ``names`` in ``tasks`` as a tensor on ``device`` (cached)."""
        key = tuple(names)
        found = self._positions.get(key)
        if found is None or found.device != device:
            found = torch.tensor([self.index[t] for t in key], device=device)
            self._positions[key] = found
        return found

    @abc.abstractmethod
    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The step's per-attribute losses (only those labeled in it) -> one loss."""

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        """Called once per epoch with each attribute's mean training loss (NaN when unseen)."""

    def weights(self) -> dict[str, float]:
        """The current weight of each attribute (for the history)."""
        return dict.fromkeys(self.tasks, 1.0)


__all__ = ["LossCombiner", "Part", "Sampler", "Step"]
