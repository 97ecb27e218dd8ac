"""No wasted passes: validation runs once per epoch and the final evaluation reuses the best
epoch's metrics; checkpoints hold only what resume needs."""

from __future__ import annotations

import json

import pytest

import fashion.training.trainer as trainer_module
from fashion.training import Trainer


def test_validation_runs_once_per_epoch_and_the_best_metrics_are_reused(tiny, train_config, monkeypatch):
    calls = []
    real = trainer_module.score_datasets

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "score_datasets", counting)
    trainer = Trainer(None, train_config(epochs=3))
    result = trainer.fit()
    assert len(calls) == 3  # one pass per epoch, none after the best weights are restored
    assert trainer.final_validation_passes == 0
    best = result.history[result.best_epoch - 1]
    assert result.evaluation.mean_macro_f1 == best["val_macro_f1"]
    assert result.evaluation.summary()["attributes"] == best["val"]
    # the history holds the validation loss, per attribute and their mean (the training curves).
    # The per-attribute losses are stored rounded to 6 decimals and the mean is not: each rounded
    # value is within 5e-7 of the exact one, so their mean is too (whatever the float kernels).
    for entry in result.history:
        losses = [v["loss"] for v in entry["val"].values()]
        assert losses and entry["val_loss"] == pytest.approx(sum(losses) / len(losses), rel=0, abs=5e-7 + 1e-12)


def test_demo_training_curves_have_whole_epoch_ticks_and_validation_curves(tmp_path):
    from fashion.demo.report import plot_history

    history = [
        {"epoch": e, "losses": {"color": 1.0 / e, "category": 2.0 / e}, "val_macro_f1": 0.1 * e,
         "val": {"color": {"loss": 1.2 / e, "macro_f1": 0.1 * e}, "category": {"loss": 2.2 / e, "macro_f1": 0.2}}}
        for e in (1, 2, 3)
    ]
    import matplotlib.pyplot as plt

    seen = {}
    real_savefig = plt.Figure.savefig

    def capture(figure, path, **kwargs):
        seen["figure"] = figure
        return real_savefig(figure, path, **kwargs)

    plt.Figure.savefig = capture
    try:
        path = plot_history(history, tmp_path / "curves.png")
    finally:
        plt.Figure.savefig = real_savefig
    assert path.stat().st_size > 0
    loss_axes, f1_axes = seen["figure"].axes
    ticks = [t for t in loss_axes.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    labels = [line.get_label() for line in loss_axes.get_lines()]
    assert "color (val)" in labels and "category (train)" in labels
    assert {line.get_label() for line in f1_axes.get_lines()} >= {"color", "category", "mean"}


def test_a_resumed_run_scores_restored_weights_only_when_their_metrics_are_not_in_memory(
    tiny, train_config, monkeypatch
):
    Trainer(None, train_config(epochs=2)).fit()
    trainer = Trainer(None, train_config(epochs=3, resume=True))
    result = trainer.fit()
    assert len(result.history) == 3
    expected = 0 if trainer.best_scores is not None and trainer.best_scores[0] == result.best_epoch else 1
    assert trainer.final_validation_passes == expected
    best = result.history[result.best_epoch - 1]
    assert result.evaluation.mean_macro_f1 == best["val_macro_f1"]


def test_checkpoints_hold_only_what_resume_needs(tiny, train_config):
    config = train_config(epochs=1, freeze=["backbones"])
    Trainer(None, config).fit()
    directory = config.output_dir / "checkpoints"
    pointer = json.loads((directory / "checkpoint.json").read_text())
    assert sorted(p.name for p in directory.iterdir()) == sorted(["checkpoint.json", pointer["model"], pointer["state"]])
    from safetensors.torch import load_file

    # frozen backbones are recorded by fingerprint, not saved; no best weights or metrics inside
    assert not any(k.startswith("backbones.") for k in load_file(str(directory / pointer["model"])))
