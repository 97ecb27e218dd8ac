"""Decoding with calibration, abstention and applicability (used by ``FashionModel.decode``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from torch import Tensor

from fashion.contract.components import AttributePrediction

if TYPE_CHECKING:
    from fashion.contract.components import Head
    from fashion.model.taxonomy import AttributeSpec

BELOW_THRESHOLD = "below_threshold"
NOT_APPLICABLE = "not_applicable"


def calibrated(spec: AttributeSpec, logits: Tensor) -> Tensor:
    """``logits / T`` when the attribute has a fitted temperature, else the logits unchanged."""
    calibration = spec.calibration
    return logits if calibration is None else logits.float() / calibration.temperature


def decode_attributes(
    attributes: Mapping[str, AttributeSpec], heads: Mapping[str, Head], logits: Mapping[str, Tensor],
    *, top_k: int = 3, abstain: bool = False,
) -> list[dict[str, AttributePrediction]]:
    """One ``{attribute: prediction}`` per product: each head's decode of its calibrated logits,
    abstaining below the threshold, then ``not_applicable`` where ``applies_to`` rules it out."""
    per_attribute: dict[str, list[AttributePrediction]] = {}
    for attribute, x in logits.items():
        spec = attributes[attribute]
        threshold = spec.threshold
        if abstain and spec.abstention is not None:
            threshold = max(threshold, spec.abstention.threshold)
        predictions = heads[attribute].decode(
            calibrated(spec, x), threshold=threshold, top_k=top_k
        )
        for prediction in predictions:
            if prediction.abstained:
                prediction.reason = BELOW_THRESHOLD
        per_attribute[attribute] = predictions
    size = len(next(iter(per_attribute.values()))) if per_attribute else 0
    rows = [{a: preds[i] for a, preds in per_attribute.items()} for i in range(size)]
    scoped = [a for a in per_attribute if attributes[a].applies_to]
    for row in rows:
        for attribute in scoped:
            known = {g: gate_label(row[g]) for g in attributes[attribute].applies_to if g in row}
            if attributes[attribute].applies(known) is False:
                prediction = row[attribute]
                prediction.label, prediction.abstained, prediction.reason = None, False, NOT_APPLICABLE
    return rows


def gate_label(prediction: AttributePrediction) -> str | list[str] | None:
    """The label applicability is decided on: the published label, else the top-1 guess (an
    abstained category still tells sleeves from trousers better than no answer)."""
    if prediction.label:
        return prediction.label
    return prediction.top_k[0][0] if prediction.top_k else None


__all__ = ["BELOW_THRESHOLD", "NOT_APPLICABLE", "calibrated", "decode_attributes", "gate_label"]
