"""One training step's forward (per-attribute losses and their combination) and PCGrad's backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..model import FashionModel
from .loader import Part
from .losses import LossCombiner, PCGradLoss


class StepModule(nn.Module):
    """Forward of one training step: per-attribute losses and their combination.

    Only the heads of attributes present in a part's targets run, so a batch from a dataset that
    does not label an attribute gives that head no loss and no gradient. Every loss is the head's
    own ``Head.loss`` (the masked cross-entropy of ``fashion.Head``, or a plugin head's).
    """

    def __init__(
        self, model: FashionModel, combiner: LossCombiner, class_weights: dict[str, Tensor],
        cached: bool, frozen_backbones: bool,
    ) -> None:
        super().__init__()
        self.model = model
        self.combiner = combiner
        self.class_weights = class_weights
        self.cached = cached
        self.frozen_backbones = frozen_backbones
        self.heads = {a: model.task(a) for a in model.attributes}

    def forward(self, parts: Sequence[Part]) -> tuple[Tensor, dict[str, Tensor]]:
        per_task: dict[str, list[Tensor]] = {}
        for inputs, targets in parts:
            if self.cached:
                features, masks = inputs
            elif self.frozen_backbones:
                with torch.no_grad():
                    features, masks = self.model.encode(inputs)
            else:
                features, masks = self.model.encode(inputs)
            logits = self.model.head_logits(features, masks, list(targets))
            for attribute, (target, mask) in targets.items():
                loss = self.heads[attribute].loss(logits[attribute], target, mask, self.class_weights.get(attribute))
                per_task.setdefault(attribute, []).append(loss)
        losses = {a: v[0] if len(v) == 1 else torch.stack(v).mean() for a, v in per_task.items()}
        return self.combiner(losses), losses


def pcgrad_backward(
    losses: dict[str, Tensor], params: Sequence[nn.Parameter], task_index: dict[str, int],
    generator: torch.Generator, world_size: int = 1,
) -> None:
    """Set ``p.grad`` to the PCGrad combination of the per-attribute gradients of ``losses``."""
    sizes = [p.numel() for p in params]
    grads = torch.zeros(len(task_index), sum(sizes), device=params[0].device)
    names = list(losses)
    for i, name in enumerate(names):
        pieces = torch.autograd.grad(losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True)
        grads[task_index[name]] = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(pieces, params, strict=True)]
        )
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(grads)
        grads /= world_size
    flat = PCGradLoss.project(grads, generator)
    for p, g in zip(params, flat.split(sizes), strict=True):
        p.grad = g.view_as(p).to(p.dtype)


__all__ = ["StepModule", "pcgrad_backward"]
