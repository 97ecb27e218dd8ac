"""Temperature scaling and calibration error.

A head's scores are ``softmax(logits)`` (``sigmoid`` for multilabel heads); temperature scaling
divides the logits by one positive number ``T`` per attribute, fitted on validation data by
minimizing the negative log-likelihood (Guo et al., 2017). It never changes the arg-max label,
only how sure the score says the model is. ECE is the bin-weighted mean gap between confidence
and accuracy over equal-width confidence bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_BINS = 15


def _nll(logits: Tensor, targets: Tensor, multilabel: bool) -> Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets)


def fit_temperature(logits: Tensor, targets: Tensor, *, multilabel: bool = False) -> float:
    """The temperature ``T`` minimizing the NLL of ``logits / T`` on labeled rows.

    ``logits`` ``(N, L)``; ``targets`` class indices ``(N,)`` (multi-hot ``(N, L)`` when
    ``multilabel``). Searched as ``log T`` with L-BFGS, clamped to [0.05, 20].
    """
    if logits.shape[0] == 0:
        return 1.0
    x = logits.detach().double()
    y = targets.detach()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = _nll(x / log_t.exp(), y, multilabel)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = float(log_t.detach().exp())
    if not torch.isfinite(torch.tensor(t)):
        return 1.0
    return min(max(t, 0.05), 20.0)


def confidences(logits: Tensor, targets: Tensor, *, multilabel: bool = False,
                temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """``(confidence, correct)`` pairs: top-1 probability and whether it is right; for a
    multilabel attribute one pair per (row, label): ``p`` of the predicted side and whether the
    decision at 0.5 is right."""
    x = logits.detach().float() / temperature
    if multilabel:
        p = x.sigmoid().reshape(-1)
        y = targets.reshape(-1).float()
        decided = p >= 0.5
        return torch.where(decided, p, 1 - p), decided == (y > 0.5)
    p = x.softmax(dim=-1)
    conf, pred = p.max(dim=-1)
    return conf, pred == targets


@dataclass
class ReliabilityBin:
    """One confidence bin of a reliability diagram."""

    low: float
    high: float
    count: int
    confidence: float  # mean confidence in the bin (0 when empty)
    accuracy: float  # share correct in the bin (0 when empty)


def reliability_bins(conf: Tensor, correct: Tensor, bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """Equal-width confidence bins over [0, 1] with their mean confidence and accuracy."""
    edges = torch.linspace(0.0, 1.0, bins + 1)
    index = torch.bucketize(conf.float().clamp(0, 1), edges[1:-1], right=True)
    out = []
    for b in range(bins):
        chosen = index == b
        n = int(chosen.sum())
        out.append(ReliabilityBin(
            float(edges[b]), float(edges[b + 1]), n,
            float(conf[chosen].float().mean()) if n else 0.0,
            float(correct[chosen].float().mean()) if n else 0.0,
        ))
    return out


def expected_calibration_error(conf: Tensor, correct: Tensor, bins: int = DEFAULT_BINS) -> float:
    """ECE: sum over bins of (share of rows) x |accuracy - confidence|."""
    total = conf.numel()
    if total == 0:
        return 0.0
    return sum(b.count / total * abs(b.accuracy - b.confidence) for b in reliability_bins(conf, correct, bins))


__all__ = [
    "DEFAULT_BINS",
    "ReliabilityBin",
    "confidences",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
]
