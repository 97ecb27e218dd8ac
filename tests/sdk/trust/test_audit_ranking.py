"""The audit's rule and ranking on hand-made out-of-sample probabilities."""

from __future__ import annotations

import torch

from fashion.trust.audit import cross_fitted_probabilities, find_suspects


def test_suspects_are_rows_the_model_predicts_otherwise_ranked_by_self_confidence():
    # thresholds (mean probability of a class over the rows given it): class 0 0.517,
    # class 1 0.417, class 2 1.0 (no row is given it)
    p = torch.tensor([
        [0.90, 0.05, 0.05],  # given 0, agrees: not suspect
        [0.30, 0.60, 0.10],  # given 0, says 1 with 0.60 >= 0.417: suspect, confident
        [0.35, 0.40, 0.25],  # given 0, says 1 with 0.40 < 0.417: suspect, not confident
        [0.05, 0.90, 0.05],  # given 1, agrees
        [0.20, 0.20, 0.60],  # given 1, says 2 (threshold 1.0): suspect, not confident
        [0.05, 0.15, 0.80],  # given 1, says 2: the least probability for its given label
    ])
    given = torch.tensor([0, 0, 0, 1, 1, 1])
    suspect, suggested, score, confident = find_suspects(p, given)
    assert suspect.tolist() == [False, True, True, False, True, True]
    assert suggested[suspect].tolist() == [1, 1, 2, 2]
    assert torch.allclose(score, 1 - p[torch.arange(6), given])
    # most suspect first = lowest probability of the given label
    ranked = sorted(suspect.nonzero().flatten().tolist(), key=lambda i: -float(score[i]))
    assert ranked == [5, 4, 1, 2]
    assert confident.tolist() == [False, True, False, False, False, False]


def test_cross_fitted_probabilities_find_flipped_labels_on_separable_features():
    torch.manual_seed(0)
    y = torch.arange(300) % 3
    x = torch.nn.functional.one_hot(y, 3).float() * 4 + torch.randn(300, 3)
    noisy = y.clone()
    flipped = torch.arange(0, 300, 10)  # 10% flipped to the next class
    noisy[flipped] = (noisy[flipped] + 1) % 3
    p = cross_fitted_probabilities(x, noisy, 3, folds=5)
    suspect, _, score, _ = find_suspects(p, noisy)
    top = sorted(suspect.nonzero().flatten().tolist(), key=lambda i: -float(score[i]))[: round(1.5 * len(flipped))]
    found = len(set(top) & set(flipped.tolist()))
    assert found >= 0.9 * len(flipped)
