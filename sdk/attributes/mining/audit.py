"""The audit of mined labels: ``cleanlab.filter.find_label_issues`` on out-of-fold probabilities.

The mined labels come from the text, so the evidence that checks them comes from the photos:
the base model's image features (every image input of its fusion), a linear classifier
cross-fitted on them (:func:`fashion.trust.audit.cross_fitted_probabilities`, 5 folds) and
confident learning over its out-of-fold probabilities. A mined label the photos disagree with is
listed as a suspect (with the label the photos suggest); the run keeps it (the head trains on
what the text said) and reports the list, so a team can review it with ``fashion review``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_PER_LABEL = 2
"""Each mined label needs this many products for the audit to fit its classifier."""


@dataclass
class MinedSuspect:
    id: str | None
    where: str
    mined: str
    suggested: str
    quality: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "where": self.where, "mined": self.mined,
                "suggested": self.suggested, "quality": round(self.quality, 4)}


def audit_mined(model: Any, products: Sequence[Any], mined: Sequence[str], labels: Sequence[str],
                ids: Sequence[str | None], wheres: Sequence[str], *, folds: int = 5,
                seed: int = 0) -> tuple[list[MinedSuspect], str | None]:
    """Suspect mined labels, most surely wrong first, and a note when the audit could not run
    (no image input, too few products per label, cleanlab not installed)."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        return [], "cleanlab is not installed (pip install 'fashion-sdk[labels]'): mined labels not audited"
    import torch

    from fashion.model.spec import InputName
    from fashion.trust.audit import cross_fitted_probabilities
    from fashion.trust.features import encode_products

    present = sorted({m for m in mined})
    counts = {label: sum(1 for m in mined if m == label) for label in present}
    if len(present) < 2 or min(counts.values()) < MIN_PER_LABEL:
        return [], f"too few mined products per label to audit ({counts})"
    encoded = encode_products(model, products)
    images = [k for k in encoded.features if InputName.parse(k).is_image]
    if not images:
        return [], "the base model has no image input: mined labels not audited"
    x = torch.cat([encoded.features[k] * encoded.masks[k].unsqueeze(1) for k in images], dim=1)
    index = {label: k for k, label in enumerate(present)}
    y = torch.tensor([index[m] for m in mined])
    probabilities = cross_fitted_probabilities(x, y, len(present), folds=folds, seed=seed)
    probs = probabilities.double().numpy()
    probs = probs / probs.sum(1, keepdims=True)
    with warnings.catch_warnings():  # "too few examples in class c": a small class is audited anyway
        warnings.simplefilter("ignore")
        issues = find_label_issues(y.numpy(), probs, filter_by="prune_by_noise_rate", n_jobs=1)
        quality = get_label_quality_scores(y.numpy(), probs)
    out = [
        MinedSuspect(ids[i], wheres[i], mined[i], present[int(probs[i].argmax())], float(quality[i]))
        for i in range(len(mined)) if issues[i]
    ]
    return sorted(out, key=lambda s: s.quality), None


__all__ = ["MIN_PER_LABEL", "MinedSuspect", "audit_mined"]
