"""The training state's one serialization, the callbacks around the loop, the one masked loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fashion import ConfigError, FashionModel
from fashion.training import Callback, Trainer
from fashion.training.losses import get_loss
from fashion.training.state import TrainingState
from tests.tiny_plugin import TINY_SPEC


def _state(model: FashionModel, fingerprint: str = "abc") -> TrainingState:
    combiner = get_loss("dwa", model.attributes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return TrainingState(model, optimizer, combiner, None, fingerprint, {}, model.attributes, torch.device("cpu"))


def test_training_state_round_trips_through_its_state_dict(tiny):
    model = FashionModel(TINY_SPEC)
    state = _state(model)
    model.heads["color"].parameters().__next__().sum().backward()
    state.optimizer.step()
    state.global_step, state.epoch, state.step_in_epoch = 17, 2, 3
    state.history = [{"epoch": 1, "loss": 0.5}]
    assert state.record_score(0.4, 1) and not state.record_score(0.3, 2)
    state.loss_sums += torch.tensor([1.0, 2.0])
    state.loss_counts += torch.tensor([1, 2])
    state.combiner.end_epoch({"color": 1.0, "category": 2.0})
    saved = state.state_dict()

    other = _state(FashionModel(TINY_SPEC))
    other.load_state_dict(saved, Path("ckpt"))
    again = other.state_dict()
    for key in ("global_step", "epoch", "step_in_epoch", "history", "best_score", "best_epoch", "bad_epochs"):
        assert again[key] == saved[key], key
    assert (other.best_score, other.best_epoch, other.bad_epochs) == (0.4, 1, 1)
    assert torch.equal(again["loss_sums"], saved["loss_sums"]) and torch.equal(again["loss_counts"], saved["loss_counts"])
    assert other.combiner.weights() == state.combiner.weights()
    assert other.optimizer.state_dict()["state"].keys() == saved["optimizer"]["state"].keys()

    with pytest.raises(ConfigError, match="different model, data"):
        _state(FashionModel(TINY_SPEC), fingerprint="other").load_state_dict(saved, Path("ckpt"))


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.calls.append("start")

    def on_step_end(self, trainer, step) -> None:
        self.calls.append("step")

    def on_epoch_end(self, trainer, entry, improved) -> None:
        self.calls.append(f"epoch{entry['epoch']}:{improved}")

    def on_fit_end(self, trainer, completed) -> None:
        self.calls.append(f"end:{completed}")


def test_callback_objects_see_the_run_and_early_stopping_ends_it(tiny, train_config):
    recorder = Recorder()
    config = train_config(epochs=30, early_stopping_patience=1, optimizer={"lr_head": 0.0, "lr_backbone": 0.0})
    result = Trainer(None, config, callbacks=[recorder]).fit()
    # nothing learns (lr 0): epoch 1 sets the best score, epoch 2 is no better, patience 1 stops
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 1
    steps = result.history[0]["steps"]
    assert recorder.calls == ["start", *["step"] * steps, "epoch1:True", *["step"] * steps, "epoch2:False", "end:True"]


def test_head_loss_is_the_masked_mean_cross_entropy(tiny):
    head = FashionModel(TINY_SPEC).task("color")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=generator, requires_grad=True)
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    mask = torch.tensor([True, False, True, True, False, True])
    weight = torch.tensor([0.3, 2.0])
    for w in (None, weight):
        expected = F.cross_entropy(logits[mask], targets[mask], weight=w)
        assert torch.allclose(head.loss(logits, targets, mask, w), expected)
    none = head.loss(logits, targets, torch.zeros(6, dtype=torch.bool))
    assert float(none.detach()) == 0.0
    none.backward()  # connected to the graph, with a zero gradient
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0
