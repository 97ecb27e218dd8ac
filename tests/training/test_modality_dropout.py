"""Modality dropout: a training step hides images or text of products that have both."""

from __future__ import annotations

import pytest
import torch

from fashion import ConfigError, FashionModel
from fashion.training import TrainConfig
from fashion.training.losses import SumLoss
from fashion.training.step import StepModule
from tests.tiny_plugin import TINY_SPEC


def _features(model: FashionModel, size: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    features = {n: torch.ones(size, d) for n, d in model.input_dims.items()}
    masks = {n: torch.ones(size, dtype=torch.bool) for n in model.input_dims}
    masks["text"][-1] = False  # the last product has images only
    features["text"][-1] = 0.0
    return features, masks


def test_every_product_with_both_loses_exactly_one_and_inputs_stay_intact(tiny):
    torch.manual_seed(0)
    model = FashionModel(TINY_SPEC).train()
    step = StepModule(model, SumLoss(model.attributes), {}, cached=True, frozen_backbones=True, modality_dropout=1.0)
    features, masks = _features(model, 64)
    out_features, out_masks = step.drop_modality(features, masks)
    image, text = out_masks["image:full"], out_masks["text"]
    assert bool((image ^ text)[:-1].all())  # one of the two hidden for each product with both
    assert 10 < int(image[:-1].sum()) < 53  # images and text are each hidden about half the time
    assert bool(image[-1]) and not bool(text[-1])  # a product with one modality keeps it
    for name in masks:
        assert bool((out_features[name][~out_masks[name]] == 0).all())  # hidden = absent: zeros
    assert bool(masks["image:full"][:-1].all()) and bool((features["text"][:-1] == 1).all())


def test_off_by_default_and_at_evaluation(tiny):
    model = FashionModel(TINY_SPEC)
    features, masks = _features(model, 8)
    step = StepModule(model, SumLoss(model.attributes), {}, cached=True, frozen_backbones=True)
    assert step.modality_dropout == 0.0
    model.eval()
    dropping = StepModule(model, SumLoss(model.attributes), {}, cached=True, frozen_backbones=True, modality_dropout=1.0)
    targets = {"color": model.task("color").encode(["red"] * 8)}
    with torch.no_grad():
        eval_loss = dropping([((features, masks), targets)])[0]
        plain_loss = step([((features, masks), targets)])[0]
    assert torch.equal(eval_loss, plain_loss)


def test_config_key_is_a_probability(tmp_path):
    config = TrainConfig(datasets=[{"name": "a", "path": tmp_path / "a.csv"}], modality_dropout=0.3)
    assert config.modality_dropout == 0.3
    with pytest.raises((ConfigError, ValueError), match="modality_dropout"):
        TrainConfig(datasets=[{"name": "a", "path": tmp_path / "a.csv"}], modality_dropout=1.5)
