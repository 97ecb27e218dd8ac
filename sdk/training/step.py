"""One training step's forward (per-attribute losses and their combination) and PCGrad's backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fashion.contract.training import LossCombiner
from fashion.model.network import FashionModel
from fashion.model.spec import InputName
from fashion.training.loader import LoadedPart
from fashion.training.losses import PCGradLoss


class StepModule(nn.Module):
    """Forward of one training step: per-attribute losses and their combination.

    Only the heads of attributes present in a part's targets run, so a batch from a dataset that
    does not label an attribute gives that head no loss and no gradient. Every loss is the head's
    own ``Head.loss`` (the masked cross-entropy of ``fashion.Head``, or a plugin head's).

    ``modality_dropout`` (training only): the probability that a product with both images and
    text has one of them (each half the time) hidden for this step, as if the product lacked it,
    so the heads learn to answer from either modality alone.
    """

    def __init__(
        self, model: FashionModel, combiner: LossCombiner, class_weights: dict[str, Tensor],
        cached: bool, frozen_backbones: bool, modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.combiner = combiner
        self.class_weights = class_weights
        self.cached = cached
        self.frozen_backbones = frozen_backbones
        self.heads = {a: model.task(a) for a in model.attributes}
        self.modality_dropout = modality_dropout
        self.modalities = {
            name: model.backbones[InputName.parse(name).backbone].modality for name in model.input_dims
        }

    def forward(self, parts: Sequence[LoadedPart]) -> tuple[Tensor, dict[str, Tensor]]:
        per_task: dict[str, list[Tensor]] = {}
        for inputs, targets in parts:
            if self.cached:
                # cached features; activations at a cut run the stages above it
                features, masks = inputs.resolve(self.model) if hasattr(inputs, "resolve") else inputs
            elif self.frozen_backbones:
                with torch.no_grad():
                    features, masks = self.model.encode(inputs)
            else:
                features, masks = self.model.encode(inputs)
            if self.modality_dropout > 0 and self.model.training:
                features, masks = self.drop_modality(features, masks)
            logits = self.model.head_logits(features, masks, list(targets))
            for attribute, (target, mask) in targets.items():
                loss = self.heads[attribute].loss(logits[attribute], target, mask, self.class_weights.get(attribute))
                per_task.setdefault(attribute, []).append(loss)
        losses = {a: v[0] if len(v) == 1 else torch.stack(v).mean() for a, v in per_task.items()}
        return self.combiner(losses), losses

    def drop_modality(
        self, features: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Hide images or text of some products (new tensors; cached features stay intact)."""
        present = {
            kind: torch.stack([m for n, m in masks.items() if self.modalities[n] == kind]).any(0)
            for kind in ("image", "text") if kind in self.modalities.values()
        }
        if len(present) < 2:  # one modality only: nothing to hide
            return features, masks
        size = next(iter(masks.values())).shape[0]
        device = next(iter(masks.values())).device
        drop = (torch.rand(size, device=device) < self.modality_dropout) & present["image"] & present["text"]
        hide_image = drop & (torch.rand(size, device=device) < 0.5)
        hidden = {"image": hide_image, "text": drop & ~hide_image}
        out_features, out_masks = {}, {}
        for name, mask in masks.items():
            hide = hidden[self.modalities[name]]
            out_masks[name] = mask & ~hide
            out_features[name] = features[name] * (~hide).unsqueeze(1).to(features[name].dtype)
        return out_features, out_masks


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
