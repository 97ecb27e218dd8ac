"""Suspect labels in training data, by confident learning (Northcutt et al., 2021).

For each audited attribute, out-of-sample probabilities come from K-fold cross-fitting: a
fresh linear classifier on the model's frozen backbone features is trained on K-1 folds of the
labeled rows and predicts the held-out fold, so no row is scored by a classifier that saw its
label. A row is suspect when that out-of-sample classifier predicts another label than the
given one; suspects are ranked by self-confidence (the out-of-sample probability of the given
label, lowest first), so the rows the model contradicts most come first. This is confident
learning's ``predicted_neq_given`` filter with ``self_confidence`` ranking; the stricter
confident-joint rule (the suggested class reaches its own threshold, the mean probability of
that class over the rows labeled with it) is reported per row as ``confident`` so a reviewer
can start with those (docs/trust.md compares the two on the synthetic catalog). The audit
reports; it never edits or deletes data.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fashion.errors import ConfigError

from .features import encode_products

if TYPE_CHECKING:
    from fashion.model import FashionModel
    from fashion.training.data import LabeledDataset


@dataclass
class Suspect:
    """One row whose given label the out-of-sample model contradicts."""

    file: str
    line: int
    id: str
    attribute: str
    given: str
    suggested: str
    given_probability: float
    suggested_probability: float
    score: float  # 1 - given probability (self-confidence ranking): higher = more surely wrong
    confident: bool = False  # the suggested class also reaches its confident-joint threshold


def cross_fitted_probabilities(
    x: Tensor, y: Tensor, classes: int, *, folds: int = 5, seed: int = 0, steps: int = 200,
    weight_decay: float = 1e-3,
) -> Tensor:
    """Out-of-sample class probabilities ``(N, classes)`` of a linear classifier on ``x``."""
    n = x.shape[0]
    folds = max(2, min(folds, n))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    fold_of = torch.empty(n, dtype=torch.long)
    fold_of[order] = torch.arange(n) % folds
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    out = torch.zeros(n, classes)
    for k in range(folds):
        train, held = fold_of != k, fold_of == k
        torch.manual_seed(seed + k)
        linear = torch.nn.Linear(z.shape[1], classes)
        optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps,
                                      line_search_fn="strong_wolfe")
        zt, yt = z[train], y[train]

        def closure(linear: torch.nn.Linear = linear, zt: Tensor = zt, yt: Tensor = yt,
                    optimizer: torch.optim.Optimizer = optimizer) -> Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(linear(zt), yt)
            loss = loss + weight_decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            out[held] = linear(z[held]).softmax(-1)
    return out


def find_suspects(probabilities: Tensor, given: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(suspect mask, suggested class, score, confident mask)`` per row: suspect when the
    arg-max is not the given label; score ``1 - p(given)``; confident when the suggested class
    also reaches its threshold (the mean probability of that class over the rows given it)."""
    classes = probabilities.shape[1]
    thresholds = torch.ones(classes)
    for c in range(classes):
        rows = given == c
        if bool(rows.any()):
            thresholds[c] = probabilities[rows, c].mean()
    rows = torch.arange(len(given))
    others = probabilities.clone()
    others[rows, given] = -1.0
    best_p, best = others.max(dim=1)
    p_given = probabilities[rows, given]
    suspect = best_p > p_given
    confident = suspect & (best_p >= thresholds[best])
    return suspect, best, 1.0 - p_given, confident


def audit_datasets(
    model: FashionModel,
    datasets: Sequence[LabeledDataset],
    *,
    attributes: Sequence[str] | None = None,
    folds: int = 5,
    batch_size: int = 64,
    seed: int = 0,
) -> list[Suspect]:
    """Suspect rows of every audited (single-label) attribute, most suspect first."""
    suspects: list[Suspect] = []
    for dataset in datasets:
        chosen = [a for a in dataset.attributes if attributes is None or a in attributes]
        chosen = [a for a in chosen if not model.task(a).multilabel]
        if not chosen or not dataset.products:
            continue
        encoded = encode_products(model, dataset.products, batch_size=batch_size)
        x = torch.cat([f * m.unsqueeze(1) for f, m in zip(encoded.features.values(), encoded.masks.values(), strict=True)], dim=1)
        for attribute in chosen:
            head = model.task(attribute)
            rows = [i for i, v in enumerate(dataset.labels[attribute]) if v is not None]
            if len(rows) < 2 * folds:
                continue
            y = torch.tensor([head.index[dataset.labels[attribute][i]] for i in rows])
            p = cross_fitted_probabilities(x[rows], y, len(head.labels), folds=folds, seed=seed)
            flagged, best, score, confident = find_suspects(p, y)
            for j in flagged.nonzero().flatten().tolist():
                i = rows[j]
                suspects.append(Suspect(
                    str(dataset.path), dataset.rows[i], str(dataset.products[i].id), attribute,
                    head.labels[int(y[j])], head.labels[int(best[j])], float(p[j, y[j]]),
                    float(p[j, best[j]]), float(score[j]), bool(confident[j]),
                ))
    suspects.sort(key=lambda s: -s.score)
    return suspects


def write_suspects(suspects: Sequence[Suspect], path: str | Path) -> Path:
    """The audit report as CSV (one row per suspect label, most suspect first)."""
    from fashion._files import atomic_write_text

    fields = list(Suspect.__dataclass_fields__)
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for s in suspects:
        writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(s).items()})
    return atomic_write_text(Path(path), buffer.getvalue())


def check_folds(folds: int) -> int:
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 (cross-fitting needs held-out folds), got {folds}")
    return folds


__all__ = ["Suspect", "audit_datasets", "check_folds", "cross_fitted_probabilities", "find_suspects",
           "write_suspects"]
