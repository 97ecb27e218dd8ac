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


def _flip_every_tenth(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    noisy = y.clone()
    flipped = torch.arange(0, len(y), 10)
    noisy[flipped] = (noisy[flipped] + 1) % 3
    return noisy, flipped


def _found_in_top_k(p: torch.Tensor, noisy: torch.Tensor, flipped: torch.Tensor) -> int:
    suspect, _, score, _ = find_suspects(p, noisy)
    top = sorted(suspect.nonzero().flatten().tolist(), key=lambda i: -float(score[i]))[: round(1.5 * len(flipped))]
    return len(set(top) & set(flipped.tolist()))


def test_stacking_weighs_streams_and_ignores_one_that_carries_no_signal():
    from fashion.trust.audit import Stream, stacked_probabilities

    torch.manual_seed(0)
    y = torch.arange(300) % 3
    noisy, flipped = _flip_every_tenth(y)
    signal = torch.nn.functional.one_hot(y, 3).float() * 4 + torch.randn(300, 3)
    noise = torch.randn(300, 400) * 3  # wide and useless: one classifier over both overfits it
    everyone = torch.ones(300, dtype=torch.bool)
    streams = {"signal": Stream(signal, everyone), "noise": Stream(noise, everyone)}
    p, each = stacked_probabilities(streams, noisy, 3, folds=5)
    assert set(each) == {"signal", "noise"}
    assert torch.allclose(p.sum(1), torch.ones(300), atol=1e-5)
    assert _found_in_top_k(p, noisy, flipped) >= 0.9 * len(flipped)
    assert _found_in_top_k(each["noise"], noisy, flipped) < 0.5 * len(flipped)  # the noise alone finds little


def test_rows_without_a_stream_get_the_class_prior_from_it():
    from fashion.trust.audit import cross_fitted_probabilities, fold_assignment

    torch.manual_seed(0)
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    x = torch.nn.functional.one_hot(y, 3).float() * 4 + torch.randn(100, 3)
    mask = torch.arange(100) % 4 != 0  # every fourth row has no such input (say, no text)
    fold_of = fold_assignment(100, 5, seed=0)
    p = cross_fitted_probabilities(x, y, 3, mask=mask, fold_of=fold_of)
    for row in (~mask).nonzero().flatten().tolist():
        train = fold_of != fold_of[row]
        prior = (torch.bincount(y[train], minlength=3).float() + 1) / (int(train.sum()) + 3)
        assert torch.allclose(p[row], prior)
    assert bool((p[mask].argmax(1) == y[mask]).float().mean() > 0.95)  # the rows with it are scored


def test_word_features_read_the_cleaned_listing_words_case_blind():
    from fashion.model.inputs import Product
    from fashion.trust.audit import listing_text, word_features

    text = listing_text(Product(title="FORMAL&nbsp;Blazer", description="CrÃ¨me, <b>tailored</b>."))
    assert "Crème" in text and "&nbsp;" not in text
    a, b, c = word_features([text, "formal blazer crème tailored", "sporty hoodie"], buckets=512)
    assert torch.equal(a, b)  # same words whatever the case, the markup or the mojibake
    assert set(a.unique().tolist()) <= {0.0, 1.0} and int(a.sum()) == 4
    assert not torch.equal(a, c)


def test_audit_streams_are_the_model_inputs_and_the_words(tiny: object) -> None:
    from PIL import Image

    from fashion import FashionModel
    from fashion.model.inputs import Product
    from fashion.trust.audit import WORDS, audit_streams
    from tests.tiny_plugin import TINY_SPEC

    model = FashionModel(TINY_SPEC)
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    products = [Product(id="a", images=[image], title="Red Tee", description="Soft cotton."),
                Product(id="b", images=[image]),  # no text at all
                Product(id="c", title="Blue Shirt")]  # no image
    streams = audit_streams(model, products)
    assert set(streams) == set(model.input_dims) | {WORDS}
    assert streams[WORDS].mask.tolist() == [True, False, True]
    for name, stream in streams.items():
        if name == WORDS:
            continue
        present = stream.mask
        norms = stream.features[present].norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, 10.0), atol=1e-4)  # L2-normalized, scaled
    assert WORDS not in audit_streams(model, products, words=False)
