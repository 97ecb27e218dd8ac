"""Fitting and measuring trust on labeled data: calibration, abstention thresholds, applicability.

:func:`collect_outputs` runs a model over loaded datasets and keeps, per attribute, the logits
and encoded targets of the labeled rows. :func:`fit_trust` fits each attribute's temperature
and (single-label attributes) its abstention threshold into the model's spec;
:func:`assess_trust` measures the same numbers on other data (test) without fitting.
:class:`~fashion.trust.report.TrustReport` saves ``trust.json`` with reliability diagrams and precision/coverage
curves as PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fashion.model.decode import NOT_APPLICABLE, gate_label
from fashion.model.taxonomy import Abstention, Calibration
from fashion.trust.calibration import (
    confidences,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from fashion.trust.report import AttributeTrust, TrustReport
from fashion.trust.thresholds import choose_threshold, precision_coverage_curve

if TYPE_CHECKING:
    from fashion.model.network import FashionModel
    from fashion.trust.labeled import LabeledData

MIN_ROWS = 20
"""Fewer labeled validation rows than this: the attribute keeps raw scores and no threshold."""


@dataclass
class Outputs:
    """One attribute's logits ``(N, L)`` and targets over the labeled rows of some data."""

    logits: Tensor
    targets: Tensor
    multilabel: bool

    @property
    def rows(self) -> int:
        return int(self.logits.shape[0])


def collect_outputs(
    model: FashionModel,
    datasets: Sequence[LabeledData],
    *,
    batch_size: int = 64,
    features: Sequence[Any | None] | None = None,
) -> dict[str, Outputs]:
    """Run ``model`` (eval mode, no gradients) over the datasets; raw logits of labeled rows.

    ``features``: the training feature cache's features per dataset (heads run on them)."""
    was_training = model.training
    model.eval()
    found: dict[str, list[tuple[Tensor, Tensor]]] = {}
    try:
        with torch.inference_mode():
            for d, dataset in enumerate(datasets):
                if not dataset.targets:
                    dataset.encode(model)
                cached = features[d] if features is not None else None
                for start in range(0, len(dataset), batch_size):
                    index = torch.arange(start, min(start + batch_size, len(dataset)))
                    if cached is not None:
                        feats, masks = cached.gather(index.to(model.device)).resolve(model)
                        logits = model.head_logits(feats, masks, dataset.attributes)
                    else:
                        batch = model.prepare(dataset.products[start:start + len(index)])
                        logits = model(batch, dataset.attributes)
                    for a in dataset.attributes:
                        t, m = dataset.targets[a]
                        m = m.index_select(0, index)
                        if bool(m.any()):
                            found.setdefault(a, []).append(
                                (logits[a].float().cpu()[m], t.index_select(0, index)[m])
                            )
    finally:
        model.train(was_training)
    return {
        a: Outputs(torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]),
                   bool(model.task(a).multilabel))
        for a, parts in found.items()
    }


def _bins(conf: Tensor, correct: Tensor) -> list[dict[str, float]]:
    return [asdict(b) for b in reliability_bins(conf, correct)]


def _measure(out: Outputs, temperature: float, abstention: Abstention | None) -> AttributeTrust:
    conf0, ok0 = confidences(out.logits, out.targets, multilabel=out.multilabel)
    conf1, ok1 = confidences(out.logits, out.targets, multilabel=out.multilabel, temperature=temperature)
    trust = AttributeTrust(
        rows=out.rows, temperature=temperature,
        ece_before=expected_calibration_error(conf0, ok0),
        ece_after=expected_calibration_error(conf1, ok1),
        accuracy=float(ok1.float().mean()) if ok1.numel() else 0.0,
        bins_before=_bins(conf0, ok0), bins_after=_bins(conf1, ok1),
    )
    if not out.multilabel:
        trust.curve = [asdict(p) for p in precision_coverage_curve(conf1, ok1)]
        if abstention is not None:
            kept = conf1 >= abstention.threshold
            n = int(kept.sum())
            trust.abstention = {
                "min_precision": abstention.min_precision, "threshold": abstention.threshold,
                "precision": float(ok1[kept].float().mean()) if n else None,
                "coverage": n / max(out.rows, 1),
            }
    return trust


def fit_trust(
    model: FashionModel,
    outputs: Mapping[str, Outputs],
    *,
    min_precision: float | None = 0.95,
    split: str = "validation",
) -> TrustReport:
    """Fit each attribute's temperature and abstention threshold into ``model.spec``.

    Attributes with fewer than :data:`MIN_ROWS` labeled rows are left as they are. The
    threshold (single-label attributes, when ``min_precision`` is given) is chosen on the
    calibrated scores, so it is a probability a team can read.
    """
    report: dict[str, AttributeTrust] = {}
    for attribute, out in outputs.items():
        if out.rows < MIN_ROWS:
            continue
        spec = model.spec.attributes[attribute]
        temperature = fit_temperature(out.logits, out.targets, multilabel=out.multilabel)
        abstention = None
        if min_precision is not None and not out.multilabel:
            conf, ok = confidences(out.logits, out.targets, temperature=temperature)
            abstention = choose_threshold(conf, ok, min_precision)
        trust = _measure(out, temperature, abstention)
        spec.calibration = Calibration(temperature=temperature, ece_before=trust.ece_before,
                                       ece_after=trust.ece_after, rows=out.rows)
        spec.abstention = abstention if abstention is not None else spec.abstention
        if abstention is not None:
            trust.abstention = abstention.model_dump()
        report[attribute] = trust
    return TrustReport(split, report)


def fit_and_report(
    model: FashionModel,
    datasets: Sequence[LabeledData],
    evaluation: Any,
    directory: Path | None,
    *,
    min_precision: float | None = 0.95,
    features: Sequence[Any | None] | None = None,
    batch_size: int = 64,
) -> TrustReport:
    """The end of training / add-attribute: fit on validation, save the plots under ``directory``,
    and add the numbers to ``evaluation.trust`` when an evaluation report is given."""
    outputs = collect_outputs(model, datasets, batch_size=batch_size, features=features)
    report = fit_trust(model, outputs, min_precision=min_precision)
    if directory is not None:
        report.save(directory)
    if evaluation is not None:
        evaluation.trust = report
    return report


def assess_trust(model: FashionModel, outputs: Mapping[str, Outputs], *, split: str = "test") -> TrustReport:
    """Measure ECE before/after the model's fitted calibration and its abstention on ``outputs``."""
    report = {}
    for attribute, out in outputs.items():
        spec = model.spec.attributes[attribute]
        temperature = spec.calibration.temperature if spec.calibration is not None else 1.0
        report[attribute] = _measure(out, temperature, spec.abstention)
    return TrustReport(split, report)


def predict_products(
    model: FashionModel, products: Sequence[Any], *, batch_size: int = 64, abstain: bool = True
) -> list[dict[str, Any]]:
    """Decoded predictions of every attribute, one dict per product (calibrated, gated)."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(products), batch_size):
        rows += model.predict(list(products[start:start + batch_size]), abstain=abstain)
    return rows


def assess_applicability(
    model: FashionModel, datasets: Sequence[LabeledData], *, batch_size: int = 64
) -> dict[str, dict[str, Any]]:
    """:func:`score_applicability` on labeled data: the rows that label an attribute another
    one depends on (``category`` for ``sleeve_length``) say whether that one applies."""
    gates = {g for spec in model.spec.attributes.values() for g in spec.applies_to}
    predictions: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for dataset in datasets:
        labeled = [a for a in dataset.attributes if a in gates]
        rows = [i for i in range(len(dataset)) if any(dataset.labels[a][i] is not None for a in labeled)]
        if not rows:
            continue
        predictions += predict_products(model, [dataset.products[i] for i in rows], batch_size=batch_size)
        truth += [{a: dataset.labels[a][i] for a in labeled} for i in rows]
    if not truth:
        return {}
    return {a: v for a, v in score_applicability(model, predictions, truth).items()
            if v["out_of_scope"] or v["in_scope"]}


def score_applicability(
    model: FashionModel,
    predictions: Sequence[Mapping[str, Any]],
    truth: Sequence[Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """How well ``not_applicable`` is answered, per attribute with ``applies_to``.

    ``predictions``: one dict of :class:`~fashion.AttributePrediction` per product; ``truth``:
    the true labels of the attributes each one depends on (``{"category": "pants"}``). Returns
    ``out_of_scope`` / ``in_scope`` counts, ``not_applicable_recall`` (share of out-of-scope
    products answered ``not_applicable``) and ``in_scope_kept`` (share of in-scope ones that
    were not).
    """
    out: dict[str, dict[str, Any]] = {}
    for attribute, spec in model.spec.attributes.items():
        if not spec.applies_to:
            continue
        counts = {"out_of_scope": 0, "answered_na": 0, "in_scope": 0, "kept": 0}
        for predicted, known in zip(predictions, truth, strict=True):
            if attribute not in predicted:
                continue
            applies = spec.applies(known)
            if applies is None:
                continue
            said_na = getattr(predicted[attribute], "reason", None) == NOT_APPLICABLE
            if applies:
                counts["in_scope"] += 1
                counts["kept"] += int(not said_na)
            else:
                counts["out_of_scope"] += 1
                counts["answered_na"] += int(said_na)
        out[attribute] = {
            "out_of_scope": counts["out_of_scope"], "in_scope": counts["in_scope"],
            "not_applicable_recall": counts["answered_na"] / counts["out_of_scope"] if counts["out_of_scope"] else None,
            "in_scope_kept": counts["kept"] / counts["in_scope"] if counts["in_scope"] else None,
        }
    return out


__all__ = [
    "MIN_ROWS",
    "AttributeTrust",
    "Outputs",
    "TrustReport",
    "assess_applicability",
    "assess_trust",
    "collect_outputs",
    "fit_and_report",
    "fit_trust",
    "gate_label",
    "predict_products",
    "score_applicability",
]
