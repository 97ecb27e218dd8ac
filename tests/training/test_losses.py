"""Loss combination: sum, mean, uncertainty, dwa, pcgrad; class weights; incompatible pairs."""

from __future__ import annotations

import math
import types

import pytest
import torch

from fashion import PluginError, get_component_info, hookimpl
from fashion.contract.manager import register_plugin, unregister_plugin
from fashion.errors import ConfigError
from fashion.training import LossCombiner, TrainConfig, Trainer, get_loss, list_losses
from fashion.training.config import check_compatible
from fashion.training.losses import PCGradLoss, balanced_class_weights

TASKS = ["color", "category", "style"]


def losses(**values):
    return {k: torch.tensor(v) for k, v in values.items()}


def test_sum_and_mean_over_present_tasks():
    assert float(get_loss("sum", TASKS)(losses(color=1.0, style=3.0))) == 4.0
    assert float(get_loss("mean", TASKS)(losses(color=1.0, style=3.0))) == 2.0


def test_uncertainty_uses_learned_log_variances():
    combiner = get_loss("uncertainty", TASKS)
    with torch.no_grad():
        combiner.log_vars.copy_(torch.tensor([0.0, 1.0, 2.0]))
    value = combiner(losses(category=2.0, style=1.0))
    expected = math.exp(-1.0) * 2.0 + 0.5 + math.exp(-2.0) * 1.0 + 1.0
    assert float(value.detach()) == pytest.approx(expected)
    value.backward()
    assert combiner.log_vars.grad[0] == 0  # color absent: no gradient
    assert combiner.log_vars.grad[1] != 0


def test_dwa_weights_follow_the_loss_ratio_after_two_epochs():
    combiner = get_loss("dwa", TASKS, {"temperature": 2.0})
    assert combiner.weights() == dict.fromkeys(TASKS, 1.0)
    combiner.end_epoch({"color": 1.0, "category": 1.0, "style": 1.0})
    assert combiner.weights() == dict.fromkeys(TASKS, 1.0)  # one epoch: no ratio yet
    combiner.end_epoch({"color": 0.5, "category": 1.0, "style": 1.5})
    r = torch.tensor([0.5, 1.0, 1.5]) / 2.0
    expected = (3 * torch.softmax(r, 0)).tolist()
    assert list(combiner.weights().values()) == pytest.approx(expected, rel=1e-5)
    assert float(combiner(losses(style=2.0))) == pytest.approx(2.0 * expected[2], rel=1e-5)
    # state goes through a state_dict (checkpoints)
    other = get_loss("dwa", TASKS)
    other.load_state_dict(combiner.state_dict())
    assert other.weights() == combiner.weights()


def test_pcgrad_removes_conflicting_components():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = PCGradLoss.project(g, torch.Generator().manual_seed(0))
    # g0 projected off g1: [1,0] - (-1/2)[-1,1] = [0.5, 0.5]; g1 off g0: [0, 1]
    assert out.tolist() == pytest.approx([0.5, 1.5])
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert PCGradLoss.project(agreeing).tolist() == [2.0, 1.0]  # no conflict: plain sum


def test_balanced_class_weights():
    w = balanced_class_weights(torch.tensor([30, 10, 0]))
    assert w.tolist() == pytest.approx([40 / (2 * 30), 40 / (2 * 10), 1.0])


def test_pcgrad_with_proportional_is_refused_clearly(tiny, train_config):
    with pytest.raises(ConfigError, match='sampler = "all_tasks"'):
        check_compatible("proportional", "pcgrad")
    with pytest.raises(ConfigError, match="all_tasks"):
        train_config(loss="pcgrad", sampler="proportional")
    config = train_config(loss="pcgrad", sampler="all_tasks").model_copy(update={"sampler": "round_robin"})
    with pytest.raises(ConfigError, match="all_tasks"):
        Trainer(None, config)
    assert isinstance(train_config(loss="pcgrad", sampler="all_tasks"), TrainConfig)


def test_register_losses_hook_adds_a_combination_the_config_accepts(tmp_path):
    class Max(LossCombiner):
        name = "test_max"

        def forward(self, losses):
            return torch.stack(list(losses.values())).max()

    plugin = types.ModuleType("loss_plugin")
    plugin.register_losses = hookimpl(lambda register: register(Max))
    datasets = [{"name": "a", "path": str(tmp_path / "a.csv")}]
    with pytest.raises(ConfigError, match="loss = 'test_max' is not registered; registered: dwa, mean"):
        TrainConfig.parse({"datasets": datasets, "loss": "test_max"})
    register_plugin(plugin, name="loss_plugin")
    try:
        assert "test_max" in list_losses()
        assert get_component_info("loss", "test_max").plugin == "loss_plugin"
        assert float(get_loss("test_max", TASKS)(losses(color=1.0, style=3.0))) == 3.0
        assert TrainConfig.parse({"datasets": datasets, "loss": "test_max"}).loss == "test_max"
    finally:
        unregister_plugin(plugin)
    assert "test_max" not in list_losses()


def test_a_registered_loss_must_subclass_loss_combiner():
    plugin = types.ModuleType("bad_loss_plugin")
    plugin.register_losses = hookimpl(lambda register: register(torch.nn.Module))
    register_plugin(plugin, name="bad_loss_plugin")
    try:
        with pytest.raises(PluginError, match="not a subclass of fashion.LossCombiner"):
            list_losses()
    finally:
        unregister_plugin(plugin)
