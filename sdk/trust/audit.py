"""Suspect labels in training data, by confident learning (Northcutt et al., 2021).

Out-of-sample probabilities come from K-fold cross-fitting, so no row is scored by a
classifier that saw its label. One linear classifier is cross-fitted per *evidence stream*:
each of the model's inputs (``image:full``, ``text``, …: its frozen backbone features,
L2-normalized) and, when the products have text, the listing's words (a hashed bag of the
cleaned title and description's words: a frozen sentence embedding blurs the one word that
says "formal"). A second-level classifier, cross-fitted on the same folds, weighs the streams'
out-of-fold log-probabilities into one distribution (stacking). Separate small classifiers
generalize from a few hundred labeled rows where one classifier over every feature side by
side overfits (docs/trust.md measures both), and the stacker learns how far to trust each
stream per attribute.

A row is suspect when the stacked out-of-sample prediction is another label than the given
one; suspects are ranked by self-confidence (the out-of-sample probability of the given label,
lowest first), so the rows the model contradicts most come first. This is confident
learning's ``predicted_neq_given`` filter with ``self_confidence`` ranking; the stricter
confident-joint rule (the suggested class reaches its own threshold, the mean probability of
that class over the rows labeled with it) is reported per row as ``confident`` so a reviewer
can start with those. The audit reports; it never edits or deletes data.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fashion.errors import ConfigError
from fashion.trust.features import encode_products

if TYPE_CHECKING:
    from fashion.model.inputs import Product
    from fashion.model.network import FashionModel
    from fashion.trust.labeled import LabeledData

log = logging.getLogger("fashion.trust")

WORDS = "words"
"""The name of the listing-words stream in :func:`audit_streams`."""
WORD_BUCKETS = 4096
FEATURE_SCALE = 10.0  # L2-normalized backbone features are scaled to this norm for the probes
PROBE_WEIGHT_DECAY = 1e-2  # per-stream probes (on the scaled features / binary word indicators)
STACK_WEIGHT_DECAY = 1e-3  # the second level, on the streams' log-probabilities
CLEANLAB_FILTER = "prune_by_noise_rate"  # cleanlab.filter.find_label_issues(filter_by=...)
CLEANLAB_SCORE = "self_confidence"  # cleanlab.rank.get_label_quality_scores(method=...)
DEFAULT_RANKING = "self-confidence"


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
    contradicted_by: str = ""  # the streams whose own out-of-sample prediction is not the given label, "|"-joined


@dataclass
class Stream:
    """One source of evidence for the audit: features ``(N, D)`` and which rows have them."""

    features: Tensor
    mask: Tensor  # (N,) bool: rows without this input (no text, no image) get the class prior


def fold_assignment(n: int, folds: int, seed: int = 0) -> Tensor:
    """Each row's fold ``(N,)`` in ``0..folds-1``: a seeded shuffle dealt round-robin."""
    folds = max(2, min(folds, n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fold_of = torch.empty(n, dtype=torch.long)
    fold_of[order] = torch.arange(n) % folds
    return fold_of


def _fit_linear(z: Tensor, y: Tensor, classes: int, *, weight_decay: float, steps: int,
                seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    linear = torch.nn.Linear(z.shape[1], classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(z), y)
        loss = loss + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def cross_fitted_probabilities(
    x: Tensor, y: Tensor, classes: int, *, folds: int = 5, seed: int = 0, steps: int = 200,
    weight_decay: float = 1e-3, standardize: bool = True, mask: Tensor | None = None,
    fold_of: Tensor | None = None,
) -> Tensor:
    """Out-of-sample class probabilities ``(N, classes)`` of a linear classifier on ``x``.

    ``standardize``: z-score each feature on the training folds (otherwise ``x`` is used as
    given). ``mask``: rows without this evidence are neither trained on nor predicted; they
    get the class frequencies of the training folds. ``fold_of``: a fold per row (from
    :func:`fold_assignment`; drawn from ``seed`` when omitted).
    """
    n = x.shape[0]
    fold_of = fold_assignment(n, folds, seed) if fold_of is None else fold_of
    mask = torch.ones(n, dtype=torch.bool) if mask is None else mask.bool()
    out = torch.zeros(n, classes)
    for k in range(int(fold_of.max()) + 1):
        train, held = (fold_of != k) & mask, fold_of == k
        counts = torch.bincount(y[fold_of != k], minlength=classes).float() + 1.0
        out[held] = counts / counts.sum()  # the prior, for held-out rows without this evidence
        scored = held & mask
        if not bool(train.any()) or not bool(scored.any()):
            continue
        xt = x[train]
        mean, std = (xt.mean(0), xt.std(0).clamp(min=1e-6)) if standardize and xt.shape[0] > 1 else (0.0, 1.0)
        linear = _fit_linear((xt - mean) / std, y[train], classes, weight_decay=weight_decay, steps=steps,
                             seed=seed + k)
        with torch.no_grad():
            out[scored] = linear((x[scored] - mean) / std).softmax(-1)
    return out


def stacked_probabilities(
    streams: Mapping[str, Stream], y: Tensor, classes: int, *, folds: int = 5, seed: int = 0,
    steps: int = 200,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Out-of-sample probabilities ``(N, classes)`` from several evidence streams, and each
    stream's own: one cross-fitted linear classifier per stream, then a linear classifier over
    their out-of-fold log-probabilities, cross-fitted on the same folds."""
    if not streams:
        raise ValueError("stacked_probabilities needs at least one stream")
    fold_of = fold_assignment(len(y), folds, seed)
    each = {
        name: cross_fitted_probabilities(
            s.features, y, classes, steps=steps, weight_decay=PROBE_WEIGHT_DECAY, standardize=False,
            mask=s.mask, fold_of=fold_of, seed=seed,
        )
        for name, s in streams.items()
    }
    if len(each) == 1:
        return next(iter(each.values())), each
    logs = torch.cat([p.clamp(min=1e-6).log() for p in each.values()], dim=1)
    stacked = cross_fitted_probabilities(logs, y, classes, steps=steps, weight_decay=STACK_WEIGHT_DECAY,
                                         standardize=False, fold_of=fold_of, seed=seed + 1000)
    return stacked, each


_WORD = re.compile(r"\w+")


def listing_text(product: Product) -> str:
    """The words the audit reads of a product: its cleaned title and description."""
    from fashion.data.text import clean_text

    return " ".join(clean_text(t) for t in (product.title, product.description) if t)


def word_features(texts: Sequence[str], *, buckets: int = WORD_BUCKETS) -> Tensor:
    """Binary word indicators ``(N, buckets)``: each lower-cased word hashed (md5) to a bucket."""
    x = torch.zeros(len(texts), buckets)
    bucket: dict[str, int] = {}  # a catalog repeats its words: hash each one once
    for row, text in enumerate(texts):
        for word in set(_WORD.findall(text.lower())):
            if word not in bucket:
                bucket[word] = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little") % buckets
            x[row, bucket[word]] = 1.0
    return x


def audit_streams(model: FashionModel, products: Sequence[Product], *, words: bool = True,
                  batch_size: int = 64) -> dict[str, Stream]:
    """The audit's evidence per product: each model input's frozen features (L2-normalized,
    scaled) and, with ``words`` and any text, the listing's words."""
    encoded = encode_products(model, products, batch_size=batch_size)
    streams = {
        name: Stream(torch.nn.functional.normalize(f, dim=1) * FEATURE_SCALE, encoded.masks[name].bool())
        for name, f in encoded.features.items()
    }
    if words:
        x = word_features([listing_text(p) for p in products])
        mask = x.sum(1) > 0
        if bool(mask.any()):
            streams[WORDS] = Stream(x, mask)
    return streams


def _suggested(probabilities: Tensor, given: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(p(given), best other class, its probability, confident-joint threshold of each class)``."""
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
    return probabilities[rows, given], best, best_p, thresholds


def find_suspects(probabilities: Tensor, given: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(suspect mask, suggested class, score, confident mask)`` per row (``self-confidence``):
    suspect when the arg-max is not the given label; score ``1 - p(given)``; confident when the
    suggested class also reaches its threshold (the mean probability of that class over the
    rows given it)."""
    p_given, best, best_p, thresholds = _suggested(probabilities, given)
    suspect = best_p > p_given
    confident = suspect & (best_p >= thresholds[best])
    return suspect, best, 1.0 - p_given, confident


def cleanlab_suspects(probabilities: Tensor, given: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The same four tensors as :func:`find_suspects`, from ``cleanlab``: suspect when
    ``cleanlab.filter.find_label_issues`` (``filter_by=CLEANLAB_FILTER``) lists the row; score
    ``1 -`` cleanlab's label quality (``CLEANLAB_SCORE``), so higher is more surely wrong."""
    import warnings

    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    p_given, best, best_p, thresholds = _suggested(probabilities, given)
    labels, probs = given.numpy(), probabilities.double().numpy()
    probs = probs / probs.sum(1, keepdims=True)
    with warnings.catch_warnings():  # "too few examples in class c": a small class is audited anyway
        warnings.simplefilter("ignore")
        issues = find_label_issues(labels, probs, filter_by=CLEANLAB_FILTER, n_jobs=1)
        quality = get_label_quality_scores(labels, probs, method=CLEANLAB_SCORE)
    suspect = torch.from_numpy(issues).bool()
    confident = suspect & (best_p >= thresholds[best])
    return suspect, best, 1.0 - torch.from_numpy(quality).float(), confident


RANKERS = {"cleanlab": cleanlab_suspects, "self-confidence": find_suspects}
"""The audit's rules, by ``--ranking`` name (see docs/trust.md for their measured recall)."""


def check_ranking(ranking: str) -> str:
    if ranking not in RANKERS:
        raise ConfigError(f"unknown audit ranking {ranking!r}; choose one of {', '.join(RANKERS)}")
    return ranking


@dataclass
class AuditScores:
    """One audited attribute of one dataset: its labeled rows, their given classes and the
    stacked (and per-stream) out-of-sample probabilities."""

    dataset: LabeledData
    attribute: str
    rows: list[int]
    given: Tensor
    probabilities: Tensor
    each: dict[str, Tensor]
    masks: dict[str, Tensor]


def audit_scores(
    model: FashionModel, datasets: Sequence[LabeledData], *, attributes: Sequence[str] | None = None,
    folds: int = 5, batch_size: int = 64, seed: int = 0, words: bool = True,
) -> list[AuditScores]:
    """The cross-fitted probabilities of every audited (single-label) attribute of ``datasets``."""
    out: list[AuditScores] = []
    for dataset in datasets:
        chosen = [a for a in dataset.attributes if attributes is None or a in attributes]
        chosen = [a for a in chosen if not model.task(a).multilabel]
        if not chosen or not dataset.products:
            continue
        streams = audit_streams(model, dataset.products, words=words, batch_size=batch_size)
        for attribute in chosen:
            head = model.task(attribute)
            rows = [i for i, v in enumerate(dataset.labels[attribute]) if v is not None]
            if len(rows) < 2 * folds:
                log.warning("%s: %s not audited: %d labeled rows, cross-fitting with %d folds needs "
                            "%d at least (lower --folds or add rows)", dataset.path, attribute, len(rows),
                            folds, 2 * folds)
                continue
            y = torch.tensor([head.index[dataset.labels[attribute][i]] for i in rows])
            index = torch.tensor(rows)
            p, each = stacked_probabilities(
                {name: Stream(s.features[index], s.mask[index]) for name, s in streams.items()},
                y, len(head.labels), folds=folds, seed=seed,
            )
            out.append(AuditScores(dataset, attribute, rows, y, p, each,
                                   {name: s.mask[index] for name, s in streams.items()}))
    return out


def rank_suspects(model: FashionModel, scores: Sequence[AuditScores], ranking: str = DEFAULT_RANKING) -> list[Suspect]:
    """The suspect rows of ``scores`` by the rule ``ranking`` names, most suspect first."""
    rule = RANKERS[check_ranking(ranking)]
    suspects: list[Suspect] = []
    for s in scores:
        labels, y, p = model.task(s.attribute).labels, s.given, s.probabilities
        flagged, best, score, confident = rule(p, y)
        for j in flagged.nonzero().flatten().tolist():
            i = s.rows[j]
            suspects.append(Suspect(
                str(s.dataset.path), s.dataset.rows[i], str(s.dataset.products[i].id), s.attribute,
                labels[int(y[j])], labels[int(best[j])], float(p[j, y[j]]), float(p[j, best[j]]),
                float(score[j]), bool(confident[j]),
                "|".join(n for n, q in s.each.items() if s.masks[n][j] and int(q[j].argmax()) != int(y[j])),
            ))
    suspects.sort(key=lambda s: -s.score)
    return suspects


def audit_datasets(
    model: FashionModel,
    datasets: Sequence[LabeledData],
    *,
    attributes: Sequence[str] | None = None,
    folds: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    words: bool = True,
    ranking: str = DEFAULT_RANKING,
) -> list[Suspect]:
    """Suspect rows of every audited (single-label) attribute, most suspect first.

    ``words``: also read the listing's words (see :func:`audit_streams`). ``ranking``: which
    rule lists and orders the suspects (:data:`RANKERS`)."""
    check_ranking(ranking)
    scores = audit_scores(model, datasets, attributes=attributes, folds=folds, batch_size=batch_size,
                          seed=seed, words=words)
    return rank_suspects(model, scores, ranking)


def write_suspects(suspects: Sequence[Suspect], path: str | Path) -> Path:
    """The audit report as CSV (one row per suspect label, most suspect first)."""
    from fashion._util.files import atomic_write_text

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


__all__ = [
    "DEFAULT_RANKING",
    "RANKERS",
    "WORDS",
    "AuditScores",
    "Stream",
    "Suspect",
    "audit_datasets",
    "audit_scores",
    "audit_streams",
    "check_folds",
    "check_ranking",
    "cleanlab_suspects",
    "cross_fitted_probabilities",
    "find_suspects",
    "fold_assignment",
    "listing_text",
    "rank_suspects",
    "stacked_probabilities",
    "word_features",
    "write_suspects",
]
