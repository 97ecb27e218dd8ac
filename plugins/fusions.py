"""Built-in fusions: ``concat``, ``mean``, ``gated`` (early) and ``late`` (per-input heads).

An early fusion turns the named feature vectors of a product (``"image:full"``, ``"text"``…)
and their presence masks into the one vector every attribute head reads. A False mask means
the product lacks that input: its row is zeros and must not change the result, so every fusion
here multiplies by the mask *after* its own per-input layers (a LayerNorm or Linear bias would
otherwise turn a zero row into a non-zero one).

Inputs are always visited in a fixed order (sorted names unless ``order`` is given), so a
model's weights do not depend on the order of the backbones in its spec. Per-input layers live
in ``nn.ModuleList``s indexed by that order, because input names may contain characters that
``nn.ModuleDict`` keys cannot ('.').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fashion import ComponentOptions, ConfigError, Fusion, hookimpl
from fashion.contract.hookspecs import Register


def _input_order(
    input_dims: Mapping[str, int], order: Sequence[str] | None, where: str
) -> list[str]:
    """``order`` if given (it must name every input once), else the sorted input names."""
    if order is None:
        return sorted(input_dims)
    if sorted(order) != sorted(input_dims):
        raise ConfigError(
            f"fusion '{where}' option `order` {list(order)} must list each input exactly once; "
            f"the inputs are {sorted(input_dims)}. Fix `order` or leave it out (sorted order)."
        )
    return list(order)


def _mask_matrix(masks: Mapping[str, Tensor], names: Sequence[str], like: Tensor) -> Tensor:
    """Stack per-input masks into a bool ``(B, N)`` matrix on ``like``'s device."""
    return torch.stack([masks[name].to(like.device, torch.bool) for name in names], dim=1)


def _project(dim: int, out: int, norm: str) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(dim, out)]
    if norm == "layer":
        layers.append(nn.LayerNorm(out))
    return nn.Sequential(*layers)


# -------------------------------------------------------------------------------- concat


class ConcatOptions(ComponentOptions):
    normalize: Literal["layernorm", "none"] = "layernorm"
    missing_indicator: bool = True
    order: list[str] | None = None


class ConcatFusion(Fusion[ConcatOptions]):
    """Concatenate the inputs in a fixed order, each optionally LayerNorm-ed first.

    ``normalize="layernorm"`` (default) puts every input on the same scale before the heads
    see it. Backbone features differ in scale and shape (mean-pooled BERT features are signed
    and roughly centered; pooled CNN features are non-negative post-activation averages over
    1280-2048 dimensions), and without it the larger-scale input dominates both the head's
    pre-activations and its gradients, so the head learns the other modality slowly.

    Measured on a synthetic 4-class task (512 train rows, a linear head, 200 Adam steps at
    lr 1e-3, mean of 3 seeds) whose label lives in a 32-d input next to a 64-d non-negative
    distractor: held-out accuracy 0.59 with LayerNorm vs 0.27 raw when the inputs are scaled
    0.01 vs 100, and 0.60 vs 0.34 at 0.1 vs 1 (BERT-like vs CNN-like); with equal scales raw
    concat was better (0.67 vs 0.60). Mixed modalities are the common case, hence the default;
    ``"none"`` keeps the raw features (for inputs that are already on one scale).

    ``missing_indicator=True`` appends one 0/1 column per input (1 = present), so a head can
    tell "this product has no text" from "the text features happen to be zero".
    output_dim = sum of input dims (+ one per input with the indicator).
    """

    name = "concat"

    def __init__(
        self,
        options: ConcatOptions | Mapping[str, Any] | None = None,
        *,
        input_dims: Mapping[str, int],
    ) -> None:
        super().__init__(options, input_dims=input_dims)
        opts = self.options
        self.names = _input_order(self.input_dims, opts.order, self.name)
        self.norms = nn.ModuleList(
            nn.LayerNorm(self.input_dims[n]) if opts.normalize == "layernorm" else nn.Identity()
            for n in self.names
        )
        self.output_dim = sum(self.input_dims.values()) + (
            len(self.names) if opts.missing_indicator else 0
        )

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        first = features[self.names[0]]
        present = _mask_matrix(masks, self.names, first)
        parts = [
            norm(features[n]) * present[:, i : i + 1].to(features[n].dtype)
            for i, (n, norm) in enumerate(zip(self.names, self.norms, strict=True))
        ]
        if self.options.missing_indicator:
            parts.append(present.to(parts[0].dtype))
        return torch.cat(parts, dim=1)


# ---------------------------------------------------------------------------------- mean


class ProjectedOptions(ComponentOptions):
    """Options of the fusions that project every input to ``dim`` first (mean, gated)."""

    dim: int = Field(256, gt=0)
    norm: Literal["layer", "none"] = "layer"
    order: list[str] | None = None


class MeanOptions(ProjectedOptions):
    pass


class MeanFusion(Fusion[MeanOptions]):
    """Project every input to ``dim`` (Linear, then LayerNorm unless ``norm="none"``) and
    average over the inputs a product has. A product with no inputs gets zeros."""

    name = "mean"

    def __init__(
        self,
        options: MeanOptions | Mapping[str, Any] | None = None,
        *,
        input_dims: Mapping[str, int],
    ) -> None:
        super().__init__(options, input_dims=input_dims)
        opts = self.options
        self.names = _input_order(self.input_dims, opts.order, self.name)
        self.projections = nn.ModuleList(
            _project(self.input_dims[n], opts.dim, opts.norm) for n in self.names
        )
        self.output_dim = opts.dim

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        projected = torch.stack(
            [proj(features[n]) for n, proj in zip(self.names, self.projections, strict=True)], dim=1
        )  # (B, N, dim)
        present = _mask_matrix(masks, self.names, projected).to(projected.dtype)  # (B, N)
        total = (projected * present.unsqueeze(2)).sum(dim=1)
        return total / present.sum(dim=1, keepdim=True).clamp(min=1.0)


# --------------------------------------------------------------------------------- gated


class GatedOptions(ProjectedOptions):
    score_hidden: int = Field(64, ge=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class GatedFusion(Fusion[GatedOptions]):
    """Attention over inputs: project each to ``dim``, score it, softmax over present inputs.

    score_i = MLP(proj_i) + bias_i (a Linear when ``score_hidden=0``; ``bias_i`` is a learned
    prior per input). Missing inputs get weight 0; a product with no inputs gets zeros (no NaN).
    After each forward, ``last_weights`` holds the detached ``(B, N)`` weights in ``names`` order.
    """

    name = "gated"

    def __init__(
        self,
        options: GatedOptions | Mapping[str, Any] | None = None,
        *,
        input_dims: Mapping[str, int],
    ) -> None:
        super().__init__(options, input_dims=input_dims)
        opts = self.options
        self.names = _input_order(self.input_dims, opts.order, self.name)
        self.projections = nn.ModuleList(
            _project(self.input_dims[n], opts.dim, opts.norm) for n in self.names
        )
        if opts.score_hidden:
            self.scorer: nn.Module = nn.Sequential(
                nn.Linear(opts.dim, opts.score_hidden), nn.Tanh(), nn.Linear(opts.score_hidden, 1)
            )
        else:
            self.scorer = nn.Linear(opts.dim, 1)
        self.prior = nn.Parameter(torch.zeros(len(self.names)))
        self.dropout = nn.Dropout(opts.dropout)
        self.output_dim = opts.dim
        self.last_weights: Tensor | None = None  # a plain attribute: not in the state dict

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        projected = torch.stack(
            [proj(features[n]) for n, proj in zip(self.names, self.projections, strict=True)], dim=1
        )  # (B, N, dim)
        projected = self.dropout(projected)
        present = _mask_matrix(masks, self.names, projected)  # (B, N) bool
        scores = self.scorer(projected).squeeze(2) + self.prior  # (B, N)
        scores = scores.masked_fill(~present, float("-inf"))
        # All-missing rows would softmax to NaN: give them finite scores, then zero weights.
        scores = torch.where(present.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))
        weights = scores.softmax(dim=1) * present.to(scores.dtype)
        self.last_weights = weights.detach()
        return (weights.unsqueeze(2) * projected).sum(dim=1)


# ---------------------------------------------------------------------------------- late


class LateCombiner(nn.Module):
    """Weighted sum of per-input logits; one learned weight per input, softmax-normalized over
    the inputs each product has (equal at initialization). No inputs -> zero logits."""

    def __init__(self, input_names: Sequence[str], num_outputs: int) -> None:
        super().__init__()
        self.input_names = list(input_names)
        self.num_outputs = int(num_outputs)
        self.weights = nn.Parameter(torch.zeros(len(self.input_names)))

    def forward(self, logits: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        stacked = torch.stack([logits[n] for n in self.input_names], dim=1)  # (B, N, C)
        present = _mask_matrix(masks, self.input_names, stacked)
        scores = self.weights.to(stacked.dtype).expand(stacked.shape[0], -1)
        scores = scores.masked_fill(~present, float("-inf"))
        scores = torch.where(present.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))
        weights = scores.softmax(dim=1) * present.to(stacked.dtype)
        return (weights.unsqueeze(2) * stacked).sum(dim=1)


class LateOptions(ComponentOptions):
    pass


class LateFusion(Fusion[LateOptions]):
    """Late fusion ("aggregate model"): every attribute gets one head per input and a
    :class:`LateCombiner` over their logits, kept together in the model's ``LateAttribute``.

    There is no fused feature vector, so ``output_dim`` is 0 and :meth:`forward` raises.
    """

    name = "late"
    late = True

    def __init__(
        self,
        options: LateOptions | Mapping[str, Any] | None = None,
        *,
        input_dims: Mapping[str, int],
    ) -> None:
        super().__init__(options, input_dims=input_dims)
        self.output_dim = 0

    def make_combiner(self, input_names: Sequence[str], num_outputs: int) -> nn.Module:
        unknown = sorted(set(input_names) - set(self.input_dims))
        if unknown or not input_names:
            raise ConfigError(
                f"late fusion combiner got inputs {list(input_names)}, but the fusion's inputs "
                f"are {sorted(self.input_dims)}; pass a non-empty subset of them."
            )
        return LateCombiner(input_names, num_outputs)

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        raise ConfigError(
            "the 'late' fusion has no fused feature vector: it combines per-input head logits. "
            "Use it through fashion.FashionModel (which calls make_combiner() per attribute), "
            "or choose an early fusion (concat, mean, gated)."
        )


@hookimpl
def register_fusions(register: Register) -> None:
    register(ConcatFusion)
    register(MeanFusion)
    register(GatedFusion)
    register(LateFusion)
