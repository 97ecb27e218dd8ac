"""Predictions a catalog team can trust: calibration, abstention, applicability, audit, review.

- :mod:`~fashion.trust.calibration`: per-attribute temperature scaling, expected calibration
  error (ECE), reliability bins.
- :mod:`~fashion.trust.thresholds`: the precision/coverage curve and the score threshold that
  reaches a target precision (``abstain=True`` predictions return no label under it).
- :mod:`~fashion.trust.fit`: run a model over labeled data and fit both (end of training,
  add-attribute, ``fashion calibrate``); applicability scoring. :mod:`~fashion.trust.report`:
  the numbers, ``trust_<split>.json`` and the plots.
- :mod:`~fashion.trust.audit`: suspect labels by confident learning (``fashion audit``).
- :mod:`~fashion.trust.review`: the review queue (``fashion review``).

Decoding with applicability and abstention is :mod:`fashion.model.decode`. May import:
``fashion.model`` and the layers below; labeled data is read through the
:class:`~fashion.trust.labeled.LabeledData` protocol, so trust never imports training.
Exports the names below. See docs/trust.md.
"""

from __future__ import annotations

from fashion.trust.calibration import expected_calibration_error, fit_temperature, reliability_bins
from fashion.trust.fit import collect_outputs, fit_trust, score_applicability
from fashion.trust.report import AttributeTrust, TrustReport
from fashion.trust.thresholds import choose_threshold, precision_coverage_curve

__all__ = [
    "AttributeTrust",
    "TrustReport",
    "choose_threshold",
    "collect_outputs",
    "expected_calibration_error",
    "fit_temperature",
    "fit_trust",
    "precision_coverage_curve",
    "reliability_bins",
    "score_applicability",
]
