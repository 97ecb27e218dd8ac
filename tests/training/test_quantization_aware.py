"""Quantization-aware training: int8 simulated in the image backbones while they train."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fashion import ConfigError
from fashion.model.quantization import ActivationRange, simulate
from fashion.training import Trainer
from fashion.training.callbacks import Callback
from tests.training.test_follow_and_strategy import SMALL_SPEC


def _block() -> nn.Sequential:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    block[1].running_var.uniform_(0.5, 3.0)
    block[1].running_mean.uniform_(-0.2, 0.2)
    block[1].weight.data.uniform_(-1.5, 1.5)
    return block


def test_the_simulation_rounds_the_folded_weights_and_the_inputs_as_the_int8_graph_will():
    block, x = _block(), torch.randn(4, 3, 10, 10)
    reference = block.eval()(x)
    block.train()
    simulation = simulate(block, weight_bits=7)
    statistics = block[1].running_var.clone()
    block(x).sum().backward()  # first call: pairs Conv -> BatchNorm, then trains simulated
    assert simulation.paired == {block[0]: block[1]} and len(simulation.convs) == 2
    assert not simulation.outputs  # the BatchNorm's output goes to a ReLU
    assert torch.equal(block[1].running_var, statistics)  # the fold's statistics stay fixed
    assert block[0].weight.grad is not None and block[0].weight.grad.abs().sum() > 0  # straight through

    block.eval()
    simulated = block[:2](x)
    conv, norm = block[0], block[1]
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = conv.weight * scale.view(-1, 1, 1, 1)
    step = folded.abs().amax(dim=(1, 2, 3), keepdim=True) / 63  # 7-bit, symmetric, per channel
    rounded = torch.round(folded / step) * step
    rng = simulation.ranges[conv]
    q = (rng.high - rng.low) / 255
    zero = round(-rng.low / q)
    inputs = (torch.clamp(torch.round(x / q) + zero, 0, 255) - zero) * q
    bias = norm.bias + (conv.bias - norm.running_mean) * scale
    expected = nn.functional.conv2d(inputs, rounded) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(simulated, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(block(x), reference, atol=1e-4)  # the simulation is on ...

    simulation.remove()  # ... and off: the module computes exactly as before
    assert "_conv_forward" not in block[0].__dict__
    torch.testing.assert_close(block(x), reference, atol=0, rtol=0)


def test_activation_ranges_are_the_running_min_max_in_training_and_hold_in_eval():
    rng = ActivationRange()
    rng(torch.tensor([0.5, 2.0]))
    assert (rng.low, rng.high) == (0.0, 2.0)  # 0 always inside, as the calibration keeps it
    rng(torch.tensor([-1.0, 1.0]))
    assert (rng.low, rng.high) == (-1.0, 2.0)  # MinMax over every batch so far
    rng.eval()
    out = rng(torch.tensor([10.0, -10.0]))  # clipped to the held range, which does not move
    assert (rng.low, rng.high) == (-1.0, 2.0)
    torch.testing.assert_close(out, torch.tensor([2.0, -1.0]), atol=0.02, rtol=0)


def test_residual_branches_are_quantized_before_their_addition_as_the_graph_does():
    """In a ResNet the BatchNorm outputs that meet the shortcut (an in-place add, then the ReLU)
    are quantized; those a ReLU reads directly are not (the next convolution's input is)."""
    import torchvision

    net = torchvision.models.resnet18()
    simulation = simulate(net)
    net(torch.randn(2, 3, 32, 32))
    names = {module: name for name, module in net.named_modules()}
    assert len(simulation.convs) == len(simulation.paired) == 20
    assert sorted(names[n] for n in simulation.outputs) == sorted(
        [f"layer{i}.{j}.bn2" for i in range(1, 5) for j in range(2)]
        + [f"layer{i}.0.downsample.1" for i in range(2, 5)])


def test_a_cached_strategy_is_refused_at_config_load_naming_the_way_out(train_config):
    with pytest.raises(ConfigError, match=r"quantization_aware.*strategy = 'partial'.*feature_cache = false"):
        train_config(model=SMALL_SPEC, strategy="partial", quantization_aware=True)
    assert train_config(model=SMALL_SPEC, strategy="partial", quantization_aware=True, feature_cache=False)


def test_a_quantization_aware_run_trains_simulated_and_leaves_a_plain_fp32_bundle(train_config):
    seen: list[tuple[int, bool]] = []

    class Watch(Callback):
        def on_step_end(self, trainer, step):
            convs = [m for m in trainer.model.backbones["image"].modules() if isinstance(m, nn.Conv2d)]
            seen.append((step.global_step, all("_conv_forward" in c.__dict__ for c in convs)))

    config = train_config(model=SMALL_SPEC, pretrained=False, epochs=1, quantization_aware=True,
                          save_bundle=True, calibrate=False)
    trainer = Trainer(None, config, callbacks=[Watch()])
    result = trainer.fit()
    assert seen == [(n, True) for n in range(1, trainer.steps_per_epoch + 1)]  # every step ran simulated
    # the epoch's validation scored the simulation; the final evaluation scores the fp32 weights
    assert trainer.best_scores is not None and trainer.best_scores[0] == 1
    assert trainer.final_validation_passes == 1
    image = trainer.model.backbones["image"]
    assert not any("_conv_forward" in m.__dict__ for m in image.modules())  # removed at the end
    assert not image._forward_pre_hooks
    model_keys = set(trainer.model.state_dict())
    from fashion.registry import load_bundle

    bundle = load_bundle(result.bundle_path)
    assert set(bundle.model.state_dict()) == model_keys  # plain names: the bundle predicts in fp32
    recorded = json.dumps(json.loads((result.bundle_path / "fashion.json").read_text()))
    assert '"quantization_aware": true' in recorded


def test_a_run_on_cached_features_is_refused_before_it_trains(train_config):
    config = train_config(model=SMALL_SPEC, pretrained=False, freeze=["backbones"], quantization_aware=True,
                          epochs=1, max_steps=1)
    with pytest.raises(ConfigError, match=r"cached features.*feature_cache = false"):
        Trainer(None, config).fit()
