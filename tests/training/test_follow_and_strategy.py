"""Runs a team can follow and trust: plain progress lines with ETAs without a terminal, the
start lines, threads, precision chosen by measurement, one spelling of partial fine-tuning,
augmentation that knows the attributes."""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fashion import ConfigError
from fashion.errors import BundleError
from fashion.training import Trainer
from fashion.training.step import pick_precision
from tests.tiny_plugin import TINY_SPEC

# a model of built-in components only (the `fashion` script in a subprocess has no test plugin)
SMALL_SPEC = {
    "views": {"full": {"name": "full", "options": {"size": 32}}},
    "backbones": {"image": {"name": "resnet18", "views": ["full"], "options": {"pretrained": False}}},
    "fusion": {"name": "concat"},
    "attributes": {"color": {"labels": ["red", "blue"]}, "category": {"labels": ["dress", "shirt", "pants"]}},
}
# the tiny test plugin's components behind the real `full` cropper (fast runs in process)
TINY_FULL = {**TINY_SPEC, "views": {"full": {"name": "full", "options": {"size": 16}}}}
SCRIPT = shutil.which("fashion", path=str(Path(sys.executable).parent)) or shutil.which("fashion")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def test_fashion_train_without_a_terminal_writes_epoch_lines_with_etas_while_it_runs(catalog, tmp_path):
    """`fashion train CONFIG > file`: the start lines, step lines and epoch lines (with the
    epoch's and the run's ETA) are in the file while the run is still going."""
    assert SCRIPT, "the fashion console script is not installed in this environment"
    config = tmp_path / "train.toml"
    lines = [
        "epochs = 40", "batch_size = 8", "threads = 1", "log_every = 2", "pretrained = false",
        'device = "cpu"', "save_bundle = false", 'output_dir = "run"',
        "[model]", f"views = {_toml(SMALL_SPEC['views'])}", f"backbones = {_toml(SMALL_SPEC['backbones'])}",
        f"fusion = {_toml(SMALL_SPEC['fusion'])}", f"attributes = {_toml(SMALL_SPEC['attributes'])}",
        "[[datasets]]", 'name = "colors"', f'path = "{catalog["colors"]}"',
    ]
    config.write_text("\n".join(lines) + "\n")
    log = tmp_path / "train.log"
    env = {**os.environ, "FASHION_PROGRESS": "0"}
    with open(log, "w") as out:
        process = subprocess.Popen([SCRIPT, "train", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 240
            seen = ""
            while time.monotonic() < deadline and process.poll() is None:
                seen = log.read_text()
                if "epoch 2/40 done" in seen:
                    break
                time.sleep(0.5)
            running = process.poll() is None
        finally:
            process.kill()
            process.wait()
    assert running, f"the run ended before its epoch lines could be read:\n{log.read_text()}"
    assert "epoch 2/40 done" in seen, seen
    epoch_lines = [line for line in seen.splitlines() if " done: loss " in line]
    assert epoch_lines and all("ETA run " in line and "val macro-F1" in line for line in epoch_lines), seen
    step_lines = [line for line in seen.splitlines() if line.startswith("epoch 1/40 step ")]
    assert step_lines and "ETA epoch " in step_lines[-1] and "rows/s" in step_lines[-1], seen
    from fashion.model.precision import cpu_bf16_native

    if cpu_bf16_native():  # auto times fp32 against bf16 here, says so, and trains in the pick
        assert re.search(r"precision auto: timed .* training in (fp32|bf16)", seen), seen
        assert re.search(r"precision: asked auto, training in (fp32|bf16) on cpu", seen), seen
    else:
        assert "precision: asked auto, training in fp32 on cpu" in seen, seen
    assert "1 torch intra-op threads (threads = 1)" in seen and "CPU: " in seen


def test_auto_precision_keeps_the_faster_candidate_and_never_one_slower_than_fp32():
    assert pick_precision(["fp32", "bf16"], {"fp32": 1.0, "bf16": 1.6}.__getitem__)[0] == "fp32"
    assert pick_precision(["fp32", "bf16"], {"fp32": 1.0, "bf16": 0.5}.__getitem__)[0] == "bf16"
    assert pick_precision(["fp32", "bf16"], {"fp32": 1.0, "bf16": 1.0}.__getitem__)[0] == "fp32"
    # faster, but within the margin a few timed steps cannot resolve: fp32 stays
    assert pick_precision(["fp32", "bf16"], {"fp32": 1.0, "bf16": 0.95}.__getitem__)[0] == "fp32"
    assert pick_precision(["fp32", "bf16"], {"fp32": 1.0, "bf16": 0.88}.__getitem__)[0] == "bf16"
    assert pick_precision(["fp32"], {"fp32": 1.0}.__getitem__)[0] == "fp32"


@pytest.mark.parametrize(("cl_seconds", "bf16_seconds", "expected"), [
    (1.0, 2.0, "fp32"), (1.0, 0.25, "bf16"), (0.5, 0.8, "fp32+channels_last"), (0.95, 2.0, "fp32"),
])
def test_auto_precision_times_the_run_and_records_its_choice(tiny, train_config, monkeypatch, caplog,
                                                             cl_seconds, bf16_seconds, expected):
    """On a (pretended) native-bf16 CPU, `auto` times fp32, fp32 with channels_last weights and
    bf16 on the real step; the stub timing decides; the timing leaves the weights as they were."""
    import fashion.training.step as step_module

    monkeypatch.setattr(step_module, "cpu_bf16_native", lambda: True)
    timings = iter([1.0, cl_seconds, bf16_seconds])
    ran = []

    def stub(run_step):
        run_step()  # the real forward + backward of the candidate runs once
        ran.append(True)
        return next(timings)

    monkeypatch.setattr(step_module, "time_training_step", stub)
    config = train_config(epochs=1, max_steps=2, calibrate=False, precision="auto")
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        trainer = Trainer(None, config)
        result = trainer.fit()
    text = " ".join(r.message for r in caplog.records)
    assert len(ran) == 3
    assert (f"fp32 1.000 s/step, fp32+channels_last {cl_seconds:.3f} s/step, bf16 {bf16_seconds:.3f} "
            f"s/step; training in {expected}") in text
    precision, _, layout = expected.partition("+")
    assert result.history[-1]["precision"] == precision == trainer.precision
    memory_format = "contiguous" if expected == "fp32" else "channels_last"
    assert result.history[-1]["memory_format"] == memory_format == trainer.memory_format
    weight = trainer.model.backbones["image"].net[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last if layout or precision == "bf16"
                                else torch.contiguous_format)


def test_a_resumed_auto_run_keeps_the_precision_it_began_in(tiny, train_config, monkeypatch, caplog, tmp_path):
    """`auto` times the candidates once per run: a resume after a kill trains on in the
    precision the checkpoint recorded, even where a new timing would pick another."""
    import fashion.training.step as step_module

    monkeypatch.setattr(step_module, "cpu_bf16_native", lambda: True)
    timings = iter([1.0, 1.0, 0.25])  # the first run: bf16 4x faster
    timed = []

    def stub(run_step):
        timed.append(True)
        return next(timings)

    monkeypatch.setattr(step_module, "time_training_step", stub)
    config = train_config(epochs=3, checkpoint_every=4, calibrate=False, precision="auto",
                          output_dir=tmp_path / "killed")

    def kill(state):
        if state.global_step == 6:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        Trainer(None, config, callbacks=[kill]).fit()
    assert len(timed) == 3
    timings = iter([1.0, 1.0, 4.0])  # a new timing would now pick fp32
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        resumed = Trainer(None, config.model_copy(update={"resume": True}))
        result = resumed.fit()
    assert len(timed) == 3, "the resumed run timed the candidates again"
    assert "resuming in bf16" in " ".join(r.message for r in caplog.records)
    assert resumed.precision == "bf16"
    assert [h["precision"] for h in result.history] == ["bf16"] * 3

    # resumed on a machine without native bf16: the recorded pick cannot run, so it is timed again
    killed_again = config.model_copy(update={"output_dir": tmp_path / "moved"})
    timings = iter([1.0, 1.0, 0.25])
    with pytest.raises(KeyboardInterrupt):
        Trainer(None, killed_again, callbacks=[kill]).fit()
    monkeypatch.setattr(step_module, "cpu_bf16_native", lambda: False)
    timings = iter([1.0, 1.0])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        moved = Trainer(None, killed_again.model_copy(update={"resume": True}))
        moved.fit()
    assert "the checkpoint began in bf16, which is not a candidate on this machine" in caplog.text
    assert moved.precision == "fp32"


def test_an_unknown_cut_is_refused_at_config_load_naming_the_valid_cuts(train_config):
    with pytest.raises(ConfigError) as error:
        train_config(model=SMALL_SPEC, freeze=["image-backbone@9"])
    message = str(error.value)
    assert "image-backbone@9" in message and "image-backbone@1 (layer4 trains)" in message
    assert "image-backbone@4" in message
    with pytest.raises(ConfigError, match="image-backbone@1"):
        train_config(model=SMALL_SPEC, freeze=["fusion@1"])
    assert train_config(model=SMALL_SPEC, freeze=["image-backbone@2"]).freeze == ["image-backbone@2"]


def test_strategy_partial_is_add_attributes_partial(train_config, tmp_path):
    """`strategy = "partial"`: croppers and the text backbone frozen, the image backbone's top
    block trains over cached activations, and early stopping is on (auto) for it."""
    from fashion.training.callbacks import EarlyStopping, default_callbacks

    config = train_config(model=SMALL_SPEC, strategy="partial", pretrained=False, epochs=1, max_steps=1, calibrate=False)
    assert config.frozen_groups() == ["croppers", "image-backbone@1", "text-backbone"]
    trainer = Trainer(None, config)
    trainer.fit()
    assert trainer.cuts == {"image": "layer4"} and trainer.cache is not None
    assert [c.patience for c in default_callbacks(config, cached=True) if isinstance(c, EarlyStopping)] == [3]
    assert not [c for c in default_callbacks(config, cached=False) if isinstance(c, EarlyStopping)]
    spelled = train_config(model=SMALL_SPEC, freeze=["croppers", "image-backbone@1", "text-backbone"])
    from fashion.training.runtime import config_fingerprint

    assert config_fingerprint(spelled) == config_fingerprint(config.with_overrides(epochs=1))


def test_colour_jitter_is_refused_for_a_model_that_predicts_a_colour(tiny, train_config):
    spec = {**TINY_FULL, "views": {"full": {"name": "full", "options": {"size": 16, "augment": {"hue": 0.2, "flip": True}}}}}
    trainer = Trainer(None, train_config(model=spec, epochs=1, max_steps=1))
    with pytest.raises(ConfigError, match=r"view 'full' augments with hue.*attribute 'color'"):
        trainer.fit()
    # an attribute that declares flips change its label refuses them too
    sided = {**spec["attributes"], "color": {**spec["attributes"]["color"], "changed_by": ["flip"]}}
    with pytest.raises(ConfigError, match=r"augments with flip.*attribute 'color'"):
        Trainer(None, train_config(model={**spec, "attributes": sided}, max_steps=1)).fit()
    # declared colour-safe: the run trains with the augmentation on, and the bundle records it
    safe = {**spec["attributes"], "color": {**spec["attributes"]["color"], "changed_by": []}}
    trainer = Trainer(None, train_config(model={**spec, "attributes": safe}, epochs=1, max_steps=2,
                                         save_bundle=True, calibrate=False))
    result = trainer.fit()
    from fashion.registry import load_bundle

    bundle = load_bundle(result.bundle_path)
    assert bundle.model.spec.views["full"].options["augment"]["hue"] == pytest.approx(0.2)
    assert not bundle.model.croppers["full"].training  # off at prediction time


def test_the_missing_bundle_of_an_interrupted_run_points_at_resume(tmp_path):
    from fashion.registry.uri import fetch_uri

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(BundleError, match=r"fashion train CONFIG --resume"):
        fetch_uri(tmp_path / "run" / "bundle")


def test_threads_set_torchs_intra_op_threads(tiny, train_config):
    before = torch.get_num_threads()
    try:
        Trainer(None, train_config(threads=1, epochs=1, max_steps=1, calibrate=False)).fit()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_an_augmenting_view_fills_k_cached_variants_and_epochs_draw_from_them(tiny, train_config, caplog):
    """head-only over cached features with a rotating view (the photos are plain colours): K variants filled (size logged
    first), epoch e reads variant e mod K, validation reads the plain views."""
    spec = {**TINY_FULL, "views": {"full": {"name": "full", "options": {"size": 16, "augment": {"rotate": 20, "flip": True}}}}}
    config = train_config(model=spec, strategy="head-only", cache_variants=2, epochs=2, calibrate=False)
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        trainer = Trainer(None, config)
        read = []
        real = trainer._run_epoch

        def run_epoch(schedule):
            result = real(schedule)
            read.append(trainer.loader.features)
            return result

        trainer._run_epoch = run_epoch
        trainer.fit()
    messages = [r.message for r in caplog.records]
    announced = next(i for i, m in enumerate(messages) if "2 augmented variants" in m and "MB on disk" in m)
    assert "views full augment" in messages[announced]
    assert announced < next(i for i, m in enumerate(messages) if "hits" in m and "computed" in m)
    first, second = trainer.train_variants
    assert read == [first, second]
    name = "image:full"
    assert not torch.equal(first[0].features[name], second[0].features[name])  # two augmented draws
    assert torch.equal(first[0].features["text"], second[0].features["text"])  # text is not augmented
    assert trainer.cache is not None and trainer.cache.variant is None  # validation: the plain views


def test_the_etas_count_the_steps_and_validation_passes_left():
    from fashion.training.callbacks import ProgressBar

    bar = ProgressBar()
    bar.total_steps, bar.epochs, bar.first_step, bar._global = 100, 5, 0, 10
    bar.train_seconds, bar.val_seconds = 10.0, [2.0]  # 1 s per step, 2 s per validation pass
    epoch_eta, run_eta = bar.etas(10, 10, 20)  # epoch 1 of 5, step 10 of 20
    assert epoch_eta == pytest.approx(10 + 2)
    assert run_eta == pytest.approx(90 + 5 * 2)  # this epoch's validation and four more
    bar._global, bar.train_seconds = 20, 20.0
    assert bar.etas(0, 20, 20) == pytest.approx((0.0, 80 + 4 * 2))  # at an epoch's end
    bar._global = bar.first_step = 20  # a resumed run before its first step: no estimate yet
    assert bar.etas(20, 20, 20) is None


def test_step_lines_show_each_attributes_mean_loss_over_the_steps_since_the_last_line(caplog):
    """MDMT batches label one dataset each: with colour batches on odd steps and category
    batches on even ones, a line every 2 steps still shows both, averaged over their own batches."""
    from types import SimpleNamespace

    from fashion.training.callbacks import ProgressBar, StepInfo

    bar = ProgressBar(live=False, every=2)
    config = SimpleNamespace(epochs=1, max_steps=None, batch_size=4)
    trainer = SimpleNamespace(is_main=True, config=config, steps_per_epoch=8,
                              state=SimpleNamespace(global_step=0, step_in_epoch=0))
    bar.on_fit_start(trainer)
    losses = {1: {"color": 1.0}, 2: {"category": 3.0}, 3: {"color": 2.0}, 4: {"category": 5.0}}
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        for n, values in losses.items():
            bar.on_step_end(trainer, StepInfo(epoch=0, step=n, global_step=n, steps_per_epoch=8,
                                              losses={k: torch.tensor(v) for k, v in values.items()}))
    lines = [r.getMessage() for r in caplog.records if "step " in r.getMessage()]
    assert len(lines) == 2
    assert "loss color 1.000 category 3.000" in lines[0]
    assert "loss color 2.000 category 5.000" in lines[1]  # each line: the steps since the last one


def _trained_resnet18(path: Path) -> Path:
    """A resnet18 weights file whose BatchNorms carry statistics (as pretrained ones do)."""
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    generator = torch.Generator().manual_seed(3)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize(("mode", "loaded", "fixed"), [
    ("update", True, False), ("fixed", False, True), ("auto", True, True), ("auto", False, False),
])
def test_batchnorm_statistics_stay_fixed_or_update_while_the_backbone_trains(train_config, caplog, tmp_path,
                                                                              mode, loaded, fixed):
    """Fixed: the image backbone's BatchNorms normalize with their running statistics, which do
    not move, while their scale and shift train with every other weight; update moves them.
    `auto` (the default) fixes them when the backbone was loaded with trained statistics (here a
    `weights_path`) and updates them when it is randomly initialised; the start lines say which."""
    from fashion.training.callbacks import Callback

    seen: dict[str, dict[str, torch.Tensor]] = {}

    class Watch(Callback):
        def on_fit_start(self, trainer):
            seen["before"] = {k: v.detach().clone() for k, v in trainer.model.backbones["image"].state_dict().items()}

    spec = copy.deepcopy(SMALL_SPEC)
    if loaded:
        spec["backbones"]["image"]["options"] = {"weights_path": str(_trained_resnet18(tmp_path / "r18.safetensors"))}
    config = train_config(model=spec, pretrained=loaded, epochs=1, max_steps=2, calibrate=False,
                          batchnorm_statistics=mode)
    trainer = Trainer(None, config, callbacks=[Watch()])
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        trainer.fit()
    after = trainer.model.backbones["image"].state_dict()
    moved = {k for k, v in seen["before"].items() if not torch.equal(v, after[k])}
    statistics = {k for k in after if k.endswith(("running_mean", "running_var"))}
    assert len(statistics) == 40  # resnet18: 20 BatchNorms
    assert {f"body.{k}" for k in ("bn1.weight", "bn1.bias", "conv1.weight", "layer4.1.bn2.weight")} <= moved  # everything trains
    assert trainer.fixed_batchnorm == (["image"] if fixed else [])
    if fixed:
        assert not moved & statistics
        why = "they were loaded trained" if mode == "auto" else "as asked"
        assert (f"batchnorm_statistics = {mode}: image (resnet18) keeps the statistics of its 20 BatchNorm "
                f"layers fixed ({why})") in caplog.text
    else:
        assert statistics <= moved
        assert f"batchnorm_statistics = {mode}: image (resnet18) updates the statistics of its 20" in caplog.text
        assert ("randomly initialised" in caplog.text) == (mode == "auto")


def test_auto_batchnorm_statistics_are_decided_on_the_model_as_built_not_on_a_restored_checkpoint(train_config):
    """A randomly initialised backbone updates its statistics under `auto`; after its first epoch
    they are no longer PyTorch's initial ones, but the resumed run decides as its start did."""
    config = train_config(model=SMALL_SPEC, pretrained=False, epochs=1, calibrate=False)
    first = Trainer(None, config)
    first.fit()
    assert first.fixed_batchnorm == []
    before = {k: v.clone() for k, v in first.model.backbones["image"].state_dict().items() if "running" in k}
    from fashion.training.callbacks import Callback

    restored: dict[str, torch.Tensor] = {}
    trained: dict[str, torch.Tensor] = {}

    class Watch(Callback):
        def on_fit_start(self, trainer):
            restored.update({k: v.clone() for k, v in trainer.model.backbones["image"].state_dict().items()})

        def on_epoch_end(self, trainer, entry, improved):  # before the best epoch's weights come back
            trained.update({k: v.clone() for k, v in trainer.model.backbones["image"].state_dict().items()})

    resumed = Trainer(None, config.model_copy(update={"epochs": 2, "resume": True}), callbacks=[Watch()])
    resumed.fit()
    assert all(torch.equal(v, restored[k]) for k, v in before.items())  # the run went on from epoch 1
    assert resumed.fixed_batchnorm == []
    assert all(not torch.equal(v, trained[k]) for k, v in before.items())  # epoch 2 moved them again
