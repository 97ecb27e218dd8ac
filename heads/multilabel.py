"""The ``multilabel`` head: any number of labels per product (sigmoid, BCE-with-logits).

Targets per row are a list of labels, an ``"a|b"`` string, or ``None`` (unlabeled). Each label
has its own decision threshold (``thresholds``, else ``default_threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from fashion import AttributePrediction, ConfigError, Head, hookimpl
from fashion.contract.hookspecs import Register
from fashion.heads.mlp import MLPOptions, build_mlp


class MultilabelOptions(MLPOptions):
    hidden: list[PositiveInt] = Field(default_factory=list)  # [] = one Linear layer
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    thresholds: dict[str, float] = Field(default_factory=dict)
    default_threshold: float = Field(0.5, ge=0.0, le=1.0)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):  # pandas' missing cell
        return True
    return isinstance(value, str) and not value.strip()


class MultilabelHead(Head[MultilabelOptions]):
    """Multi-label classification: an MLP (``hidden``, default none) and one logit per label.

    - ``encode``: rows of label lists / ``"a|b"`` strings / ``None`` -> multi-hot float targets
      ``(B, L)`` and a row mask. ``None``, ``""``, NaN and an empty list mean *unlabeled* (a
      partially labeled dataset leaves such cells empty), never "no label applies".
    - ``loss``: BCE-with-logits averaged over labeled rows and labels; ``class_weights`` (L,)
      weights each label's term. Exactly zero, with zero gradients, when no row is labeled.
    - ``decode``: the labels whose probability reaches ``max(label threshold, threshold)``,
      most probable first; ``threshold`` is the attribute's abstain threshold from the spec.
      ``abstained`` (and ``label == []``) when no label passes; ``score`` is the highest
      probability among the chosen labels, else the highest overall.
    """

    name = "multilabel"
    multilabel = True

    def __init__(
        self,
        options: MultilabelOptions | Mapping[str, Any] | None = None,
        *,
        input_dim: int,
        labels: Sequence[str],
    ) -> None:
        super().__init__(options, input_dim=input_dim, labels=labels)
        opts = self.options
        if not self.labels:
            raise ConfigError(
                "head 'multilabel' needs at least one label; list the attribute's labels in "
                "its spec."
            )
        unknown = sorted(set(opts.thresholds) - set(self.labels))
        bad = {k: v for k, v in opts.thresholds.items() if not 0.0 <= v <= 1.0}
        if unknown or bad:
            raise ConfigError(
                f"head 'multilabel' option `thresholds` has unknown labels {unknown} or values "
                f"outside [0, 1] {bad}; use labels from {self.labels} and probabilities."
            )
        self.net = build_mlp(self.input_dim, len(self.labels), opts)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def label_thresholds(self) -> Tensor:
        """Per-label decision thresholds ``(L,)`` in label order."""
        opts = self.options
        return torch.tensor([opts.thresholds.get(lb, opts.default_threshold) for lb in self.labels])

    def encode(self, values: Sequence[Any]) -> tuple[Tensor, Tensor]:
        targets = torch.zeros(len(values), len(self.labels))
        mask = torch.zeros(len(values), dtype=torch.bool)
        for row, value in enumerate(values):
            if _is_missing(value):
                continue
            items = value.split("|") if isinstance(value, str) else list(value)
            names = [str(item).strip() for item in items if not _is_missing(item)]
            if not names:
                continue
            for name in names:
                if name not in self.index:
                    raise ConfigError(
                        f"label {name!r} is not one of {self.labels}; normalize labels with the "
                        "attribute's taxonomy before encoding."
                    )
                targets[row, self.index[name]] = 1.0
            mask[row] = True
        return targets, mask

    def loss(
        self,
        logits: Tensor,
        targets: Tensor,
        mask: Tensor,
        class_weights: Tensor | None = None,
    ) -> Tensor:
        if not bool(mask.any()):
            return logits.sum() * 0.0
        chosen = logits[mask]
        weight = None if class_weights is None else class_weights.to(chosen)
        return F.binary_cross_entropy_with_logits(
            chosen, targets[mask].to(chosen), weight=weight, reduction="mean"
        )

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.float().sigmoid()

    def decode(
        self, logits: Tensor, *, threshold: float = 0.0, top_k: int = 3
    ) -> list[AttributePrediction]:
        probs = self.probabilities(logits.detach()).cpu()
        cut = self.label_thresholds().clamp(min=threshold).tolist()
        k = min(top_k, len(self.labels))
        orders = probs.argsort(dim=-1, descending=True, stable=True).tolist()
        out = []
        for p, order in zip(probs.tolist(), orders, strict=True):  # plain floats: no per-element tensor reads
            chosen = [self.labels[i] for i in order if p[i] >= cut[i]]
            ranked = [(self.labels[i], p[i]) for i in order[:k]]
            score = p[self.index[chosen[0]]] if chosen else p[order[0]]
            out.append(AttributePrediction(chosen, score, ranked, abstained=not chosen))
        return out


@hookimpl
def register_heads(register: Register) -> None:
    register(MultilabelHead)
