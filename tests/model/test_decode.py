"""Decoding with calibration, abstention (abstain=True) and applicability."""

from __future__ import annotations

import copy

import torch

from fashion import FashionModel
from fashion.model.taxonomy import Abstention, Calibration
from tests.tiny_plugin import TINY_SPEC


def _model() -> FashionModel:
    spec = copy.deepcopy(TINY_SPEC)
    spec["attributes"]["sleeve"] = {"labels": ["short", "long"], "head": {"name": "tiny_head"},
                                    "applies_to": {"category": ["dress", "shirt"]}}
    return FashionModel(spec)


def _logits() -> dict[str, torch.Tensor]:
    return {
        "color": torch.tensor([[4.0, 0.0], [0.2, 0.0]]),
        "category": torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]]),  # dress, pants
        "sleeve": torch.tensor([[0.0, 3.0], [3.0, 0.0]]),
    }


def test_out_of_scope_answers_not_applicable(tiny: object) -> None:
    first, second = _model().decode(_logits())
    assert first["sleeve"].label == "long" and first["sleeve"].reason is None
    assert second["sleeve"].label is None and second["sleeve"].not_applicable
    assert not second["sleeve"].abstained
    assert second["sleeve"].top_k[0][0] == "short"  # the guess stays visible
    assert second["sleeve"].to_dict()["reason"] == "not_applicable"


def test_calibration_changes_scores_not_labels(tiny: object) -> None:
    model = _model()
    raw = model.decode(_logits())
    model.spec.attributes["color"].calibration = Calibration(temperature=4.0)
    scaled = model.decode(_logits())
    assert [r["color"].label for r in raw] == [s["color"].label for s in scaled]
    assert scaled[0]["color"].score < raw[0]["color"].score
    assert abs(scaled[0]["color"].score - torch.tensor([1.0, 0.0]).softmax(0)[0].item()) < 1e-5


def test_abstention_only_when_asked(tiny: object) -> None:
    model = _model()
    model.spec.attributes["color"].abstention = Abstention(min_precision=0.95, threshold=0.9)
    plain = model.decode(_logits())
    assert plain[1]["color"].label == "red"  # no abstention unless abstain=True
    sure, unsure = model.decode(_logits(), abstain=True)
    assert sure["color"].label == "red" and sure["color"].reason is None
    assert unsure["color"].label is None and unsure["color"].abstained
    assert unsure["color"].reason == "below_threshold" and len(unsure["color"].top_k) == 2
    assert "reason" not in sure["color"].to_dict()
