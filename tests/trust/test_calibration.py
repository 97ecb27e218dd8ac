"""Temperature scaling, ECE and thresholds at a target precision, on synthetic scores."""

from __future__ import annotations

import pytest
import torch

from fashion import ConfigError
from fashion.trust.calibration import confidences, expected_calibration_error, fit_temperature
from fashion.trust.thresholds import choose_threshold, precision_coverage_curve


def _overconfident(n: int = 4000, classes: int = 4, true_t: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z); the model reports z * true_t (overconfident)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, classes, generator=g) * 1.5
    y = torch.multinomial(z.softmax(-1), 1, generator=g).squeeze(1)
    return z * true_t, y


def test_temperature_recovers_the_overconfidence_and_lowers_ece() -> None:
    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    assert 2.5 < t < 3.5
    before = expected_calibration_error(*confidences(logits, y))
    after = expected_calibration_error(*confidences(logits, y, temperature=t))
    assert after < before / 2


def test_multilabel_temperature() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3000, 3, generator=g)
    y = (torch.rand(3000, 3, generator=g) < z.sigmoid()).float()
    t = fit_temperature(z * 4, y, multilabel=True)
    assert 3.2 < t < 4.8


def test_threshold_reaches_the_target_precision() -> None:
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(5000, generator=g)
    correct = torch.rand(5000, generator=g) < scores  # P(correct) = score: calibrated
    chosen = choose_threshold(scores, correct, 0.9)
    assert chosen.reached and chosen.precision is not None and chosen.precision >= 0.9
    assert 0.7 < chosen.threshold < 0.9  # precision above t is (1 + t) / 2
    assert chosen.coverage == pytest.approx(1 - chosen.threshold, abs=0.05)
    curve = precision_coverage_curve(scores, correct)
    assert curve[0].coverage < curve[-1].coverage and curve[-1].coverage == 1.0


def test_unreachable_precision_abstains_on_everything() -> None:
    scores = torch.linspace(0, 1, 200)
    chosen = choose_threshold(scores, torch.zeros(200, dtype=torch.bool), 0.95)
    assert not chosen.reached and chosen.threshold == 1.0 and chosen.coverage == 0.0
    with pytest.raises(ConfigError, match="min_precision"):
        choose_threshold(scores, scores > 0.5, 0.0)
