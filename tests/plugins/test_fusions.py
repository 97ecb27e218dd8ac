"""The built-in fusions: concat, mean, gated (early) and late (per-input heads + combiner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import fashion
from fashion import ConfigError, FashionModel, build_component
from fashion.model.network import LateAttribute
from tests.tiny_plugin import TINY_SPEC

DIMS = {"image:full": 6, "image:center": 6, "text": 5}
EARLY = ["concat", "mean", "gated"]
EARLY_OPTIONS: dict[str, list[dict[str, Any]]] = {
    "concat": [{}, {"normalize": "none", "missing_indicator": False}],
    "mean": [{"dim": 7}, {"dim": 7, "norm": "none"}],
    "gated": [{"dim": 7}, {"dim": 7, "score_hidden": 0, "dropout": 0.1, "norm": "none"}],
}


def _batch(size: int = 6, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    features = {name: torch.randn(size, dim, generator=g) * (i + 1) for i, (name, dim) in
                enumerate(DIMS.items())}
    masks = {
        "image:full": torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.bool)[:size],
        "image:center": torch.tensor([1, 0, 0, 1, 1, 0], dtype=torch.bool)[:size],
        "text": torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)[:size],
    }
    for name in features:  # the model's contract: a missing input's row is zeros
        features[name] = features[name] * masks[name].unsqueeze(1)
    return features, masks


def _cases() -> list[tuple[str, dict[str, Any]]]:
    return [(name, opts) for name in EARLY for opts in EARLY_OPTIONS[name]]


def test_registered_names() -> None:
    names = {(r.kind, r.name) for r in fashion.list_components()}
    expected = {("fusion", n) for n in ("concat", "mean", "gated", "late")}
    expected |= {("head", n) for n in ("linear", "mlp", "multilabel")}
    assert expected <= names
    for kind, name in expected:
        assert fashion.get_component_info(kind, name).plugin.startswith("fashion.")


@pytest.mark.parametrize(("name", "options"), _cases())
def test_early_fusion_shapes_masks_and_all_missing(name: str, options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    fusion = build_component("fusion", name, options, input_dims=DIMS).eval()
    features, masks = _batch()
    out = fusion(features, masks)
    assert out.shape == (6, fusion.output_dim)
    assert torch.isfinite(out).all()
    # Row 5 has no input at all: finite, and zeros for every early fusion here.
    assert torch.equal(out[5], torch.zeros_like(out[5]))
    # Changing a masked-out input's features does not change anything.
    changed = {k: v.clone() for k, v in features.items()}
    for key, mask in masks.items():
        changed[key][~mask] = torch.randn(int((~mask).sum()), DIMS[key]) * 50
    assert torch.allclose(fusion(changed, masks), out, atol=1e-6)
    # ...while a present input does change the output of its rows.
    changed = {k: v.clone() for k, v in features.items()}
    changed["text"][0] = torch.randn(DIMS["text"]) * 3  # (a shift alone is lost to LayerNorm)
    assert not torch.allclose(fusion(changed, masks)[0], out[0])


def test_concat_layout_and_missing_indicator() -> None:
    fusion = build_component("fusion", "concat", {"normalize": "none"}, input_dims=DIMS)
    assert fusion.names == sorted(DIMS)  # fixed order, independent of the spec's order
    assert fusion.output_dim == sum(DIMS.values()) + len(DIMS)
    features, masks = _batch()
    out = fusion(features, masks)
    assert torch.equal(out[:, :6], features["image:center"])
    assert torch.equal(out[:, -3:], torch.stack([masks[n] for n in fusion.names], 1).float())
    given = build_component("fusion", "concat", {"order": ["text", "image:full", "image:center"]},
                            input_dims=DIMS)
    assert given.names == ["text", "image:full", "image:center"]
    with pytest.raises(ConfigError, match="order"):
        build_component("fusion", "concat", {"order": ["text"]}, input_dims=DIMS)
    with pytest.raises(ConfigError, match="normalize"):
        build_component("fusion", "concat", {"normalize": "batch"}, input_dims=DIMS)


def test_concat_layernorm_equalizes_scales() -> None:
    fusion = build_component("fusion", "concat", {"missing_indicator": False}, input_dims=DIMS)
    features = {"image:full": torch.randn(4, 6) * 1000, "image:center": torch.randn(4, 6) * 0.01,
                "text": torch.randn(4, 5)}
    masks = {k: torch.ones(4, dtype=torch.bool) for k in DIMS}
    out = fusion(features, masks)
    stds = [out[:, :6].std(), out[:, 6:12].std(), out[:, 12:].std()]
    assert max(stds) / min(stds) < 2.0


def test_mean_is_the_average_of_present_projections() -> None:
    fusion = build_component("fusion", "mean", {"dim": 4, "norm": "none"}, input_dims=DIMS)
    features, masks = _batch()
    out = fusion(features, masks)
    proj = {n: p(features[n]) for n, p in zip(fusion.names, fusion.projections, strict=True)}
    # Row 1 has image:full and text.
    assert torch.allclose(out[1], (proj["image:full"][1] + proj["text"][1]) / 2, atol=1e-6)
    assert torch.allclose(out[4], proj["image:center"][4], atol=1e-6)


def test_gated_weights_are_a_masked_softmax() -> None:
    fusion = build_component("fusion", "gated", {"dim": 4}, input_dims=DIMS)
    features, masks = _batch()
    fusion(features, masks)
    weights = fusion.last_weights
    present = torch.stack([masks[n] for n in fusion.names], 1)
    assert weights is not None and weights.shape == (6, 3)
    assert torch.equal(weights[~present], torch.zeros(int((~present).sum())))
    assert torch.allclose(weights.sum(1)[:5], torch.ones(5))
    assert weights[5].sum() == 0
    assert "last_weights" not in fusion.state_dict()


@pytest.mark.parametrize("name", EARLY)
def test_early_fusion_trains_without_nan(name: str) -> None:
    torch.manual_seed(0)
    fusion = build_component("fusion", name, {"dim": 8} if name != "concat" else {},
                             input_dims=DIMS)
    head = build_component("head", "linear", input_dim=fusion.output_dim, labels=["a", "b", "c"])
    features, masks = _batch()
    targets = torch.tensor([0, 1, 2, 1, 0, 2])
    labeled = torch.ones(6, dtype=torch.bool)
    params = [*fusion.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)

    def step() -> float:
        loss = head.loss(head(fusion(features, masks)), targets, labeled)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
        optimizer.step()
        return loss.item()

    before = step()
    for _ in range(9):
        after = step()
    assert after < before


@pytest.mark.parametrize(("name", "options"), _cases())
def test_early_fusion_safetensors_round_trip(name: str, options: dict[str, Any],
                                             tmp_path: Path) -> None:
    torch.manual_seed(1)
    fusion = build_component("fusion", name, options, input_dims=DIMS).eval()
    for p in fusion.parameters():  # move off the initialization so the test can fail
        p.data.add_(torch.randn_like(p) * 0.1)
    save_file(fusion.state_dict(), str(tmp_path / "fusion.safetensors"))
    torch.manual_seed(2)
    rebuilt = build_component("fusion", fusion.component_name, fusion.options_dict(),
                              input_dims=DIMS).eval()
    rebuilt.load_state_dict(load_file(str(tmp_path / "fusion.safetensors")), strict=True)
    features, masks = _batch()
    assert torch.equal(rebuilt(features, masks), fusion(features, masks))
    assert rebuilt.fingerprint() == fusion.fingerprint()


# ------------------------------------------------------------------------------------ late


def test_late_fusion_contract() -> None:
    fusion = build_component("fusion", "late", input_dims=DIMS)
    assert fusion.late and fusion.output_dim == 0
    with pytest.raises(ConfigError, match="make_combiner"):
        fusion(*_batch())
    with pytest.raises(ConfigError, match="inputs"):
        fusion.make_combiner(["nope"], 3)


def test_late_combiner_masks_weights_and_all_missing() -> None:
    fusion = build_component("fusion", "late", input_dims=DIMS)
    combiner = fusion.make_combiner(list(DIMS), 4)
    _, masks = _batch()
    logits = {n: torch.randn(6, 4) for n in DIMS}
    out = combiner(logits, masks)
    assert out.shape == (6, 4) and torch.isfinite(out).all()
    # Equal weights at initialization, renormalized over the present inputs.
    assert torch.allclose(out[0], sum(logits[n][0] for n in DIMS) / 3, atol=1e-6)
    assert torch.allclose(out[1], (logits["image:full"][1] + logits["text"][1]) / 2, atol=1e-6)
    assert torch.allclose(out[2], logits["text"][2])
    assert torch.equal(out[5], torch.zeros(4))
    changed = {n: v.clone() for n, v in logits.items()}
    for n, mask in masks.items():
        changed[n][~mask] = 1e4
    assert torch.allclose(combiner(changed, masks), out)


def test_late_heads_and_combiner_train_and_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fusion = build_component("fusion", "late", input_dims=DIMS)
    labels = ["a", "b", "c"]
    heads = {n: build_component("head", "linear", input_dim=d, labels=labels)
             for n, d in DIMS.items()}
    attribute = LateAttribute(heads, fusion.make_combiner(list(DIMS), 3))
    features, masks = _batch()
    targets = torch.tensor([0, 1, 2, 1, 0, 2])
    labeled = torch.ones(6, dtype=torch.bool)
    optimizer = torch.optim.Adam(attribute.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        out = attribute(features, masks)
        assert torch.isfinite(out).all()
        loss = attribute.task.loss(out, targets, labeled)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert attribute.combiner.weights.grad is not None
    assert not torch.equal(attribute.combiner.weights.detach(), torch.zeros(3))

    save_file(attribute.state_dict(), str(tmp_path / "color.safetensors"))
    rebuilt_fusion = build_component("fusion", "late", fusion.options_dict(), input_dims=DIMS)
    rebuilt = LateAttribute(
        {n: build_component("head", "linear", input_dim=d, labels=labels) for n, d in DIMS.items()},
        rebuilt_fusion.make_combiner(list(DIMS), 3),
    )
    rebuilt.load_state_dict(load_file(str(tmp_path / "color.safetensors")), strict=True)
    assert torch.equal(rebuilt(features, masks), attribute(features, masks))


# ------------------------------------------------------------------- through FashionModel


def _products() -> list[dict[str, Any]]:
    red = Image.new("RGB", (20, 24), (200, 10, 10))
    blue = Image.new("RGB", (24, 20), (10, 10, 200))
    return [
        {"id": "both", "images": [red, blue], "title": "red summer dress"},
        {"id": "text-only", "title": "blue cotton shirt", "brand": "acme"},
        {"id": "image-only", "images": [blue]},
        {"id": "nothing"},
    ]


def _spec(fusion: dict[str, Any], head: str = "linear") -> dict[str, Any]:
    spec: dict[str, Any] = {**TINY_SPEC, "fusion": fusion}
    spec["attributes"] = {
        name: {**attr, "head": {"name": head}} for name, attr in TINY_SPEC["attributes"].items()
    }
    return spec


@pytest.mark.parametrize("fusion", EARLY)
def test_early_fusions_in_fashion_model(tiny: object, fusion: str) -> None:
    torch.manual_seed(0)
    options = {} if fusion == "concat" else {"dim": 8}
    model = FashionModel(_spec({"name": fusion, "options": options}), pretrained=False)
    model.eval()
    batch = model.prepare(_products())
    features, masks = model.encode(batch)
    assert masks["text"].tolist() == [True, True, False, False]
    assert masks["image:full"].tolist() == [True, False, True, False]
    logits = model(batch)
    assert logits["color"].shape == (4, 2) and logits["category"].shape == (4, 3)
    assert all(torch.isfinite(x).all() for x in logits.values())
    # The missing text of the image-only product does not matter, nor the image of text-only.
    changed = {k: v.clone() for k, v in features.items()}
    changed["text"][2] = torch.randn(8) * 5  # (not constant: LayerNorm maps those to 0)
    changed["image:full"][1] = torch.randn(8) * 5
    again = model.head_logits(changed, masks)
    assert torch.allclose(again["color"], logits["color"], atol=1e-6)
    predictions = model.predict(_products())
    assert len(predictions) == 4 and predictions[1]["color"].label in ("red", "blue")


def test_late_fusion_in_fashion_model(tiny: object, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FashionModel(_spec({"name": "late"}), pretrained=False).eval()
    color = model.heads["color"]
    assert isinstance(color, LateAttribute)
    assert set(color.heads) == {"image:full", "text"}
    assert all(h.component_name == "linear" for h in color.heads.values())
    assert color.heads["text"].input_dim == 8
    batch = model.prepare(_products())
    features, masks = model.encode(batch)
    logits = model(batch)
    assert logits["color"].shape == (4, 2) and logits["category"].shape == (4, 3)
    assert torch.isfinite(logits["category"]).all()
    # Text-only product: exactly the text head's logits; image-only: the image head's.
    with torch.no_grad():
        text_logits = color.heads["text"](features["text"])
        image_logits = color.heads["image:full"](features["image:full"])
    assert torch.allclose(logits["color"][1], text_logits[1], atol=1e-6)
    assert torch.allclose(logits["color"][2], image_logits[2], atol=1e-6)
    assert torch.allclose(logits["color"][0], (text_logits[0] + image_logits[0]) / 2, atol=1e-6)
    assert torch.equal(logits["color"][3], torch.zeros(2))
    # Each attribute (heads + combiner) is one state dict that round-trips through safetensors.
    state = model.component_modules()["heads/color"].state_dict()
    assert "combiner.weights" in state
    save_file(state, str(tmp_path / "color.safetensors"))
    torch.manual_seed(5)
    other = FashionModel(_spec({"name": "late"}), pretrained=False).eval()
    saved = load_file(str(tmp_path / "color.safetensors"))
    other.heads["color"].load_state_dict(saved, strict=True)
    other.backbones.load_state_dict(model.backbones.state_dict())
    assert torch.equal(other(batch)["color"], logits["color"])
