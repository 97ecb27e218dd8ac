"""Partial fine-tuning over cached activations, the resumable feature cache, CPU precision."""

from __future__ import annotations

import logging
import threading

import pytest
import torch

from fashion import ConfigError, FashionModel
from fashion.training import DatasetConfig, FeatureCache, Trainer, load_dataset
from fashion.training.step import precision_candidates, training_precision
from tests.tiny_plugin import TINY_SPEC

PARTIAL_SPEC = {
    "views": {"full": {"name": "full", "options": {"size": 32}}},
    "backbones": {
        "image": {"name": "resnet18", "views": ["full"], "options": {"pretrained": False}},
        "text": {"name": "tiny_text"},
    },
    "fusion": {"name": "concat"},
    "attributes": TINY_SPEC["attributes"],
}


def _dataset(catalog, model, name="colors"):
    return load_dataset(DatasetConfig(name=name, path=catalog[name]), model).encode(model)


class Killed(BaseException):
    """Stands for a kill: raised right after a chunk file lands, it skips every ``except``."""


def test_a_cache_fill_killed_midway_resumes_and_gives_the_same_features(tiny, catalog, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = FashionModel(TINY_SPEC).eval()
    dataset = _dataset(catalog, model)
    done = []
    real = FeatureCache._write

    def write_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        done.append(1)
        if len(done) == 3:  # both inputs of chunk 1, then the image input of chunk 2
            raise Killed

    monkeypatch.setattr(FeatureCache, "_write", write_then_die)
    with pytest.raises(Killed):
        FeatureCache(tmp_path / "killed", model, chunk_rows=8).fill(dataset, batch_size=4, progress=False)
    monkeypatch.setattr(FeatureCache, "_write", real)
    assert len(list((tmp_path / "killed").rglob("chunk-*.safetensors"))) == 3
    assert not list((tmp_path / "killed").rglob("*.tmp"))

    resumed = FeatureCache(tmp_path / "killed", model, chunk_rows=8)
    ran = resumed.fill(dataset, batch_size=4, progress=False)
    assert ran == len(dataset) - 8  # only the first chunk was complete for every input
    fresh = FeatureCache(tmp_path / "fresh", model, chunk_rows=8)
    assert fresh.fill(dataset, batch_size=4, progress=False) == len(dataset)
    a, b = resumed.load(dataset), fresh.load(dataset)
    for name in b.features:
        assert torch.equal(a.features[name], b.features[name])
        assert torch.equal(a.masks[name], b.masks[name])


def test_two_fills_of_one_cache_at_once_take_turns(tiny, catalog, tmp_path):
    model = FashionModel(TINY_SPEC).eval()
    dataset = _dataset(catalog, model)
    caches = [FeatureCache(tmp_path / "shared", model, chunk_rows=16) for _ in range(2)]
    threads = [threading.Thread(target=c.fill, args=(dataset,), kwargs={"progress": False}) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c.misses for c in caches) == [0, len(dataset)]  # the second found the first's entries
    a, b = (c.load(dataset) for c in caches)
    assert all(torch.equal(a.features[n], b.features[n]) for n in a.features)


def test_the_fill_reports_rows_per_second_and_eta(tiny, catalog, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("FASHION_PROGRESS_INTERVAL", "0")  # a line at every batch
    model = FashionModel(TINY_SPEC).eval()
    dataset = _dataset(catalog, model)
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        FeatureCache(tmp_path / "c", model).fill(dataset, batch_size=8, progress=False)
    lines = [r.message for r in caplog.records if r.message.startswith("feature cache colors")]
    assert any("rows/s" in line and "ETA" in line for line in lines), lines
    assert f"{len(dataset)}/{len(dataset)} rows" in lines[-1]


def test_backbones_declare_cut_points_and_split_exactly():
    from fashion.contract.manager import build_component

    for name, expected in (("resnet18", "layer4"), ("efficientnet_lite0", "head")):
        backbone = build_component("backbone", name, {"pretrained": False}).eval()
        assert backbone.cut_points()[-1] == expected and backbone.resolve_cut(1) == expected
        x = torch.randn(2, 3, 32, 32)
        for cut in backbone.cut_points():
            assert torch.allclose(backbone.forward_above(backbone.forward_below(x, cut), cut), backbone(x), atol=1e-5)
        with pytest.raises(ConfigError, match="cut points"):
            backbone.resolve_cut("nope")


def test_partial_fine_tuning_changes_only_the_layers_above_the_cut(tiny, train_config, tmp_path):
    torch.manual_seed(0)
    model = FashionModel(PARTIAL_SPEC)
    image = model.backbones["image"]
    before = {n: t.clone() for n, t in image.state_dict().items()}
    below_before, whole_before = image.below_fingerprint("layer4"), image.fingerprint()
    config = train_config(
        model=PARTIAL_SPEC, epochs=2, freeze=["image-backbone@layer4", "text-backbone"],
        cache_dir=tmp_path / "cache", optimizer={"lr_backbone": 0.01, "lr_head": 0.03},
    )
    trainer = Trainer(model, config)
    result = trainer.fit()
    assert trainer.cuts == {"image": "layer4"} and trainer.train_features is not None  # trained on the cache
    assert trainer.cache.misses > 0 and any((tmp_path / "cache").glob("image_full@layer4-*"))
    after = image.state_dict()
    changed = {n.split(".")[1] for n, t in after.items() if not torch.equal(t, before[n])}
    assert changed == {"layer4"}  # conv1, bn1 and layer1-3 (weights and BatchNorm statistics) did not move
    # fingerprints: the frozen part's is unchanged, the backbone's as a whole is not
    assert image.below_fingerprint("layer4") == below_before and image.fingerprint() != whole_before
    assert image.below_fingerprint("layer3") != below_before  # the cut is part of the key
    # checkpoints leave the frozen part out and record its fingerprint
    assert "backbones.image.body.layer4.0.conv1.weight" in trainer.state.model_tensors()
    assert not any(k.startswith("backbones.image.body.layer3.") for k in trainer.state.model_tensors())
    assert result.history[-1]["precision"] in ("fp32", "bf16")


def test_bf16_on_a_cpu_without_native_bf16_falls_back_with_a_clear_line(tiny, train_config, monkeypatch, caplog):
    import fashion.training.step as step_module

    monkeypatch.setattr(step_module, "cpu_bf16_native", lambda: False)
    cpu = torch.device("cpu")
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        assert training_precision(train_config(precision="bf16"), cpu) == "fp32"
        assert training_precision(train_config(precision="auto"), cpu) == "fp32"
    text = " ".join(r.message for r in caplog.records)
    assert "no native bf16" in text and "training in fp32" in text
    assert precision_candidates(train_config(precision="auto"), cpu) == ["fp32"]
    convolutional = FashionModel(TINY_SPEC)
    assert precision_candidates(train_config(precision="auto"), cpu, convolutional) == ["fp32", "fp32+channels_last"]
    # native bf16: an explicit bf16 trains in it; auto times fp32, channels_last and bf16 (pick_precision)
    monkeypatch.setattr(step_module, "cpu_bf16_native", lambda: True)
    assert precision_candidates(train_config(precision="auto"), cpu) == ["fp32", "bf16"]
    assert precision_candidates(train_config(precision="auto"), cpu, convolutional) == [
        "fp32", "fp32+channels_last", "bf16"]
    for parameter in convolutional.parameters():  # nothing convolutional trains: no layout to time
        parameter.requires_grad_(False)
    assert precision_candidates(train_config(precision="auto"), cpu, convolutional) == ["fp32", "bf16"]
    assert precision_candidates(train_config(precision="fp32"), cpu) == ["fp32"]
    assert training_precision(train_config(precision="bf16"), cpu) == "bf16"
    assert training_precision(train_config(precision="fp32"), cpu) == "fp32"


def test_cpu_bf16_autocast_runs_the_depthwise_convolutions_in_fp32():
    """Their bf16 backward is slow on the CPU (fp32_depthwise's docstring has the numbers): inside
    the trainer's CPU bf16 autocast they run in fp32, everything else in bf16, and the hooks go
    away with the context."""
    from fashion.training.step import depthwise_convolutions, fp32_depthwise

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Conv2d(8, 4, 1))
    assert depthwise_convolutions(net) == [net[0]]
    seen: dict[int, torch.dtype] = {}
    for i, module in enumerate(net):
        module.register_forward_hook(lambda _m, _a, out, i=i: seen.__setitem__(i, out.dtype))
    x = torch.randn(2, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
    assert seen == {0: torch.bfloat16, 1: torch.bfloat16}  # plain autocast: both in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16), fp32_depthwise(depthwise_convolutions(net)):
        out = net(x)
        assert torch.is_autocast_enabled("cpu")  # back on after the depthwise convolution
    assert seen == {0: torch.float32, 1: torch.bfloat16}
    out.float().sum().backward()
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()
    assert not net[0]._forward_pre_hooks and len(net[0]._forward_hooks) == 1  # only the test's own
    net(x)  # outside autocast: nothing changes
    assert seen[0] == torch.float32 and seen[1] == torch.float32


def test_partial_epochs_skip_the_frozen_blocks_forward(tiny, train_config, tmp_path, monkeypatch):
    """Below the cut only the cache fill runs (once per batch it encodes); every epoch's training
    and validation steps start from the cached activations at the cut."""
    torch.manual_seed(0)
    model = FashionModel(PARTIAL_SPEC)
    image = model.backbones["image"]
    calls = {"layer3": 0, "layer4": 0, "encode": 0}
    for name in ("layer3", "layer4"):
        getattr(image.body, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    real = FeatureCache._encode

    def encode(self, *args, **kwargs):
        calls["encode"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "_encode", encode)
    config = train_config(model=PARTIAL_SPEC, epochs=3, freeze=["image-backbone@layer4", "text-backbone"],
                          cache_dir=tmp_path / "cache")
    trainer = Trainer(model, config)
    trainer.fit()
    assert calls["encode"] > 0 and calls["layer3"] == calls["encode"]  # the fill only, never per epoch
    assert calls["layer4"] >= 3 * calls["encode"]  # the top block runs every epoch
    # a second fit over the same cache runs nothing below the cut at all
    calls.update(layer3=0, encode=0)
    Trainer(model, train_config(model=PARTIAL_SPEC, epochs=1, freeze=["image-backbone@layer4", "text-backbone"],
                                cache_dir=tmp_path / "cache", output_dir=tmp_path / "again")).fit()
    assert calls["layer3"] == 0 and calls["encode"] == 0
