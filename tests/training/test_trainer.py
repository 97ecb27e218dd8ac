"""The MDMT trainer: learning from disjoint labels, masking, resume, feature cache, losses."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from fashion import ConfigError, FashionModel
from fashion.training import DatasetConfig, Trainer, load_dataset
from fashion.training.loader import BatchCollator
from fashion.training.losses import get_loss
from fashion.training.step import StepModule
from tests.tiny_plugin import TINY_SPEC


def test_two_datasets_with_disjoint_attributes_train_together(tiny, train_config):
    config = train_config(epochs=6)
    result = Trainer(None, config).fit()
    metrics = result.evaluation.attributes
    assert metrics["color"].support == 16 and metrics["category"].support == 15  # held out 25 %
    assert metrics["color"].accuracy >= 0.9  # chance: 0.5
    assert metrics["category"].accuracy >= 0.8  # chance: 0.33
    history = result.history
    assert len(history) == 6 and set(history[0]["losses"]) == {"color", "category"}
    assert history[-1]["loss"] < history[0]["loss"]
    assert json.loads((config.output_dir / "history.json").read_text()) == history
    assert (config.output_dir / "checkpoints" / "checkpoint.json").is_file()
    assert (config.output_dir / "best.safetensors").is_file()
    assert (config.output_dir / "evaluation" / "metrics.json").is_file()
    assert (config.output_dir / "evaluation" / "confusion_color.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((config.output_dir / "data_report.json").read_text())
    assert [d["rows_read"] for d in data] == [60, 60]


def test_a_batch_leaves_heads_of_unlabeled_attributes_without_gradient(tiny, catalog):
    model = FashionModel(TINY_SPEC)
    colors = load_dataset(DatasetConfig(name="c", path=catalog["colors"]), model).encode(model)
    module = StepModule(model, get_loss("sum", model.attributes), {}, cached=False, frozen_backbones=False)
    batch, targets = BatchCollator(model, [colors])((0, list(range(8))))
    total, losses = module([(batch, targets)])
    total.backward()
    assert set(losses) == {"color"}
    assert all(p.grad is None for p in model.heads["category"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads["color"].parameters())
    # unlabeled rows of a labeled attribute do not count either: their targets are irrelevant
    target, mask = targets["color"]
    mask = mask.clone()
    mask[:4] = False
    flipped = target.clone()
    flipped[:4] = 1 - flipped[:4]
    a = module([(batch, {"color": (target, mask)})])[0]
    b = module([(batch, {"color": (flipped, mask)})])[0]
    assert torch.equal(a, b)


def _weights(directory, which):
    """The best weights, or the model tensors of the last checkpoint."""
    if which == "best":
        return load_file(str(directory / "best.safetensors"))
    pointer = json.loads((directory / "checkpoints" / "checkpoint.json").read_text())
    return load_file(str(directory / "checkpoints" / pointer["model"]))


def test_resume_after_a_kill_gives_the_same_final_weights(tiny, train_config, tmp_path):
    base = {"epochs": 3, "checkpoint_every": 5, "loss": "uncertainty"}
    full = train_config(**base, output_dir=tmp_path / "full")
    reference = Trainer(None, full).fit()

    killed = train_config(**base, output_dir=tmp_path / "killed")

    def kill(state):
        if state.global_step == 17:  # mid epoch 2, two steps after the step-15 checkpoint
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        Trainer(None, killed, callbacks=[kill]).fit()
    pointer = json.loads((killed.output_dir / "checkpoints" / "checkpoint.json").read_text())
    assert pointer["step"] == 15

    steps_run = []
    resumed = Trainer(
        None, killed.model_copy(update={"resume": True}), callbacks=[steps_run.append]
    ).fit()
    assert steps_run[0].global_step == 16 and len(steps_run) == reference.global_step - 15
    assert resumed.global_step == reference.global_step
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in reference.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    for name in ("best", "last"):
        a, b = _weights(full.output_dir, name), _weights(killed.output_dir, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_checkpoints_leave_frozen_components_out_and_resume_exactly(tiny, train_config, tmp_path):
    base = {"epochs": 2, "checkpoint_every": 5, "freeze": ["image-backbone"], "feature_cache": False}
    full = train_config(**base, output_dir=tmp_path / "full")
    Trainer(None, full).fit()
    killed = train_config(**base, output_dir=tmp_path / "killed")

    def kill(state):
        if state.global_step == 7:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        Trainer(None, killed, callbacks=[kill]).fit()
    last = _weights(killed.output_dir, "last")  # the step-5 checkpoint
    assert not any(k.startswith("backbones.image.") for k in last)
    assert any(k.startswith("backbones.text.") for k in last)
    Trainer(None, killed.model_copy(update={"resume": True})).fit()
    for name in ("best", "last"):
        a, b = _weights(full.output_dir, name), _weights(killed.output_dir, name)
        assert not any(k.startswith("backbones.image.") for k in a)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    # a model whose frozen backbone differs cannot continue the checkpoint (not in its files)
    torch.manual_seed(123)
    other = FashionModel(TINY_SPEC)
    with pytest.raises(ConfigError, match="frozen components"):
        Trainer(other, killed.model_copy(update={"resume": True, "epochs": 3})).fit()


def test_resume_refuses_a_different_config(tiny, train_config):
    Trainer(None, train_config(epochs=1)).fit()
    with pytest.raises(ConfigError, match="different"):
        Trainer(None, train_config(epochs=2, seed=5, resume=True)).fit()


def test_cached_features_give_the_same_loss_curve(tiny, train_config, tmp_path):
    common = {"epochs": 3, "freeze": ["backbones"], "cache_dir": tmp_path / "cache"}
    torch.manual_seed(0)
    plain = Trainer(None, train_config(**common, feature_cache=False, output_dir=tmp_path / "plain")).fit()
    torch.manual_seed(0)
    trainer = Trainer(None, train_config(**common, output_dir=tmp_path / "cached"))
    cached = trainer.fit()
    # keyed by content: products with equal image bytes and text share one entry
    assert trainer.cache.misses + trainer.cache.hits == 120 and trainer.cache.misses > 100
    assert any((tmp_path / "cache").rglob("chunk-*.safetensors"))
    for p, c in zip(plain.history, cached.history, strict=True):
        assert c["losses"] == pytest.approx(p["losses"], rel=1e-5, abs=1e-6)
        assert c["val_macro_f1"] == pytest.approx(p["val_macro_f1"])
    again = Trainer(None, train_config(**common, output_dir=tmp_path / "again"))
    again.fit()
    assert again.cache.misses == 0 and again.cache.hits == 120  # reused from disk


def test_freeze_keeps_a_backbone_fixed(tiny, train_config):
    torch.manual_seed(0)
    model = FashionModel(TINY_SPEC)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, train_config(epochs=1, freeze=["image-backbone"], val_fraction=0.0)).fit()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbones.image."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbones.text."))


def test_a_fits_freeze_holds_for_that_fit_only(tiny, train_config):
    """Head-only first, then the image backbone: the second Trainer trains what its own config
    leaves unfrozen, not also what the first froze; a parameter frozen before either fit (as a
    plugin freezes its encoder) stays frozen through both."""
    torch.manual_seed(0)
    model = FashionModel(TINY_SPEC)
    held = next(model.heads["color"].parameters())
    held.requires_grad_(False)
    given = {n: p.requires_grad for n, p in model.named_parameters()}
    Trainer(model, train_config(epochs=1, freeze=["backbones"], val_fraction=0.0)).fit()
    assert {n: p.requires_grad for n, p in model.named_parameters()} == given
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, train_config(epochs=1, freeze=["text-backbone"], val_fraction=0.0,
                                output_dir=train_config().output_dir.with_name("second"))).fit()
    after = model.state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbones.image."))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbones.text."))
    assert torch.equal(held, before[next(n for n, p in model.named_parameters() if p is held)])
    assert {n: p.requires_grad for n, p in model.named_parameters()} == given


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "mean", "sampler": "round_robin", "class_weights": "balanced"},
        {"loss": "dwa", "sampler": "temperature", "sampler_options": {"temperature": 3.0}},
        {"loss": "pcgrad", "sampler": "all_tasks"},
    ],
    ids=["mean-round_robin", "dwa-temperature", "pcgrad-all_tasks"],
)
def test_losses_and_samplers_train(tiny, train_config, options):
    result = Trainer(None, train_config(epochs=3, **options)).fit()
    losses = [h["loss"] for h in result.history]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]
    assert set(result.history[-1]["loss_weights"]) == {"color", "category"}


def test_early_stopping_max_steps_and_workers(tiny, train_config):
    frozen = train_config(epochs=5, early_stopping_patience=1, optimizer={"lr_backbone": 0.0, "lr_head": 0.0})
    result = Trainer(None, frozen).fit()
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 1
    again = Trainer(None, frozen.model_copy(update={"resume": True})).fit()  # nothing left to do
    assert again.stopped_early and again.global_step == result.global_step

    budget = Trainer(None, train_config(epochs=5, max_steps=7, num_workers=1)).fit()
    assert budget.global_step == 7 and len(budget.history) == 1 and budget.history[0]["steps"] == 7


def test_workers_give_the_same_result_as_the_main_process(tiny, train_config, tmp_path):
    runs = []
    for workers in (0, 2):
        torch.manual_seed(0)
        runs.append(Trainer(None, train_config(epochs=1, num_workers=workers, output_dir=tmp_path / str(workers))).fit())
    assert runs[0].history[0]["losses"] == runs[1].history[0]["losses"]


def test_a_bundle_with_metrics_and_provenance_is_saved(tiny, train_config):
    bundle = pytest.importorskip("fashion.registry.bundle")
    result = Trainer(None, train_config(epochs=2, save_bundle=True)).fit()
    loaded = bundle.load_bundle(result.bundle_path)
    index = loaded.index
    assert index.metrics["color"]["accuracy"] == pytest.approx(result.evaluation.attributes["color"].accuracy, abs=1e-6)
    datasets = index.provenance.datasets
    assert [d["name"] for d in datasets] == ["colors", "categories"] and len(datasets[0]["sha256"]) == 64
    assert index.provenance.training_config["batch_size"] == 8
