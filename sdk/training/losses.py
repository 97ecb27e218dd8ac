"""How the per-attribute losses of a step become one loss (or one gradient).

- ``sum`` (default): the sum of the losses of the attributes labeled in the step.
- ``mean``: their mean.
- ``uncertainty``: Kendall, Gal & Cipolla (2018): each attribute ``t`` has a learned log-variance
  ``s_t``; the loss is ``Σ exp(-s_t) L_t + s_t / 2``.
- ``dwa``: dynamic weight averaging (Liu, Johns & Davison, 2019): ``w_t = K softmax(r_t / T)``
  with ``r_t`` the ratio of the attribute's last two epoch losses; weights are 1 for the first
  two epochs.
- ``pcgrad``: gradient surgery (Yu et al., 2020): each attribute's gradient is projected off
  the gradients it conflicts with, then they are summed. It needs several attributes in a step,
  so it requires the ``all_tasks`` sampler.

A combiner is an ``nn.Module``; its parameters (``uncertainty``) train with the heads' learning
rate and its state (``dwa``'s loss history) is saved in checkpoints. Combinations register
through the ``register_losses`` plugin hook (the built-in ones in
this module's ``register_losses``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from fashion.contract.components import ComponentOptions
from fashion.contract.hookspecs import Register, hookimpl
from fashion.contract.training import LossCombiner


class SumLoss(LossCombiner):
    name = "sum"

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return torch.stack(list(losses.values())).sum()


class MeanLoss(LossCombiner):
    name = "mean"

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return torch.stack(list(losses.values())).mean()

    def weights(self) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0 / max(1, len(self.tasks)))


class UncertaintyLoss(LossCombiner):
    name = "uncertainty"

    def __init__(self, tasks: Sequence[str], options: Any = None) -> None:
        super().__init__(tasks, options)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        s = self.log_vars.index_select(0, self.positions(list(losses), self.log_vars.device))
        values = torch.stack([loss.float() for loss in losses.values()])
        return (torch.exp(-s) * values + 0.5 * s).sum()

    def weights(self) -> dict[str, float]:
        return {t: float(math.exp(-v)) for t, v in zip(self.tasks, self.log_vars.tolist(), strict=True)}


class DWAOptions(ComponentOptions):
    temperature: float = Field(2.0, gt=0.0)


class DWALoss(LossCombiner):
    name = "dwa"
    Options = DWAOptions

    def __init__(self, tasks: Sequence[str], options: Any = None) -> None:
        super().__init__(tasks, options)
        k = len(self.tasks)
        self.register_buffer("history", torch.full((2, k), float("nan"), dtype=torch.float64))
        self.register_buffer("current", torch.ones(k))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        w = self.current.index_select(0, self.positions(list(losses), self.current.device))
        return (w * torch.stack([loss.float() for loss in losses.values()])).sum()

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        latest = torch.tensor(
            [float(mean_losses.get(t, float("nan"))) for t in self.tasks], dtype=torch.float64
        )
        self.history[0] = self.history[1].clone()
        self.history[1] = latest.to(self.history.device)
        ratio = self.history[1] / self.history[0]
        if not torch.isfinite(ratio).all():
            self.current.fill_(1.0)
            return
        t = float(self.options.temperature)  # type: ignore[attr-defined]
        w = len(self.tasks) * torch.softmax(ratio / t, dim=0)
        self.current.copy_(w.to(self.current.dtype))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.current.tolist(), strict=True))


class PCGradLoss(LossCombiner):
    """Sum for reporting; the trainer calls :meth:`project` on per-task gradients."""

    name = "pcgrad"
    requires_all_tasks = True
    gradient_surgery = True

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return torch.stack(list(losses.values())).sum()

    @staticmethod
    def project(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``grads`` ``(K, P)``: project each row off the rows it conflicts with; return the sum."""
        k = grads.shape[0]
        projected = grads.clone()
        norms = (grads * grads).sum(dim=1)
        for i in range(k):
            order = torch.randperm(k, generator=generator).tolist()
            for j in order:
                if j == i or norms[j] <= 0:
                    continue
                dot = torch.dot(projected[i], grads[j])
                if dot < 0:
                    projected[i] -= (dot / norms[j]) * grads[j]
        return projected.sum(dim=0)


@hookimpl
def register_losses(register: Register) -> None:
    """The built-in loss combinations, registered like any plugin's."""
    for loss in (SumLoss, MeanLoss, UncertaintyLoss, DWALoss, PCGradLoss):
        register(loss)


def get_loss_class(name: str) -> type[LossCombiner]:
    """The loss combination registered as ``name`` (through the ``register_losses`` hook)."""
    from fashion.contract.manager import get_component_info

    return get_component_info("loss", name).cls  # type: ignore[return-value]


def get_loss(name: str, tasks: Sequence[str], options: Mapping[str, Any] | None = None) -> LossCombiner:
    """Build the loss combination registered as ``name`` for ``tasks`` (options validated)."""
    return get_loss_class(name)(tasks, options)


def list_losses() -> list[str]:
    """The names of the registered loss combinations, sorted."""
    from fashion.contract.manager import component_table

    return sorted(component_table("loss")["loss"])


def balanced_class_weights(counts: Tensor) -> Tensor:
    """``n / (C · n_c)`` per class (sklearn's "balanced"); classes never seen get weight 1."""
    counts = counts.double()
    total = counts.sum()
    present = counts > 0
    n_classes = max(1, int(present.sum()))
    weights = torch.ones_like(counts)
    weights[present] = total / (n_classes * counts[present])
    return weights.float()


__all__ = [
    "DWALoss",
    "LossCombiner",
    "MeanLoss",
    "PCGradLoss",
    "SumLoss",
    "UncertaintyLoss",
    "balanced_class_weights",
    "get_loss",
    "get_loss_class",
    "list_losses",
]
