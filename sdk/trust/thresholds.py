"""Abstention at a target precision: the precision/coverage curve and its threshold.

Sort validation rows by calibrated top-1 score, highest first. Publishing every row whose score
is at least ``t`` gives a precision (share of published labels that are right) and a coverage
(share of rows published). :func:`choose_threshold` picks the lowest ``t`` (largest coverage)
whose precision reaches ``min_precision``. The precision compared is a lower confidence bound
(Wilson score, ``z`` standard deviations) rather than the raw share, so a threshold chosen on
few validation rows is not over-trusted on test data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fashion.model.taxonomy import Abstention


@dataclass
class CurvePoint:
    threshold: float
    precision: float
    coverage: float


def _wilson_lower(correct: Tensor, n: Tensor, z: float) -> Tensor:
    n = n.double()
    p = correct.double() / n
    centre = p + z * z / (2 * n)
    margin = z * torch.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / (1 + z * z / n)


def _cumulative(scores: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    order = scores.float().argsort(descending=True)
    s = scores.float()[order]
    hits = correct.double()[order].cumsum(0)
    n = torch.arange(1, len(s) + 1, dtype=torch.float64)
    return s, hits, n


def precision_coverage_curve(scores: Tensor, correct: Tensor, points: int = 50) -> list[CurvePoint]:
    """About ``points`` (threshold, precision, coverage) points, from strictest to loosest."""
    if scores.numel() == 0:
        return []
    s, hits, n = _cumulative(scores, correct)
    total = len(s)
    picks = sorted({min(total - 1, max(0, round(i * (total - 1) / max(points - 1, 1))))
                    for i in range(points)})
    return [CurvePoint(float(s[i]), float(hits[i] / n[i]), float(n[i] / total)) for i in picks]


def choose_threshold(
    scores: Tensor, correct: Tensor, min_precision: float, *, z: float = 1.0
) -> Abstention:
    """The loosest score threshold whose published labels reach ``min_precision``.

    ``reached`` is False when no threshold does (the threshold is then above every score: the
    attribute abstains on everything rather than publish at a lower precision).
    """
    if not 0.0 < min_precision <= 1.0:
        from fashion.errors import ConfigError

        raise ConfigError(f"min_precision must be in (0, 1], got {min_precision}")
    total = scores.numel()
    if total == 0:
        return Abstention(min_precision=min_precision, threshold=1.0, precision=None, coverage=0.0,
                          reached=False)
    s, hits, n = _cumulative(scores, correct)
    bound = _wilson_lower(hits, n, z)
    # only cut between distinct scores: rows sharing a score are published together
    last_of_score = torch.ones(total, dtype=torch.bool)
    last_of_score[:-1] = s[:-1] != s[1:]
    ok = (bound >= min_precision) & last_of_score
    valid = ok.nonzero().flatten()
    if valid.numel() == 0:
        return Abstention(min_precision=min_precision, threshold=1.0, precision=None, coverage=0.0,
                          reached=False)
    chosen = int(valid[-1])
    threshold = float(s[chosen])
    return Abstention(
        min_precision=min_precision, threshold=min(1.0, threshold),
        precision=float(hits[chosen] / n[chosen]), coverage=float(n[chosen] / total), reached=True,
    )


__all__ = ["CurvePoint", "choose_threshold", "precision_coverage_curve"]
