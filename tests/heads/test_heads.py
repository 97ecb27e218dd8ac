"""The built-in attribute heads: linear, mlp (single-label) and multilabel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from fashion import ConfigError, build_component

LABELS = ["red", "blue", "green", "black"]
CASES: list[tuple[str, dict[str, Any]]] = [
    ("linear", {}),
    ("linear", {"dropout": 0.2}),
    ("mlp", {}),
    ("mlp", {"hidden": [16, 8], "norm": "none", "activation": "relu", "dropout": 0.0}),
    ("mlp", {"hidden": []}),
    ("multilabel", {}),
    ("multilabel", {"hidden": [16], "thresholds": {"red": 0.3}}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


def _targets(head: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if head.multilabel:
        rows = [["red", "blue"], "green", "black|red", None, ["blue"], "green|black", "red", None]
    else:
        rows = ["red", "blue", "green", None, "black", "red", "green", None]
    return head.encode(rows[:size])


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_shapes_training_and_decode(name: str, options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    head = build_component("head", name, options, input_dim=12, labels=LABELS)
    x = torch.randn(8, 12)
    assert head(x).shape == (8, 4)
    targets, mask = _targets(head, 8)
    assert mask.tolist() == [True, True, True, False, True, True, True, False]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.train()
    losses = []
    for _ in range(10):
        loss = head.loss(head(x), targets, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    head.eval()
    with torch.no_grad():
        predictions = head.decode(head(x), top_k=2)
    assert len(predictions) == 8
    for p in predictions:
        assert len(p.top_k) == 2 and all(isinstance(label, str) for label, _ in p.top_k)
        assert p.top_k[0][1] >= p.top_k[1][1]
        labels = p.label if isinstance(p.label, list) else [p.label]
        assert all(label in LABELS for label in labels)


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_masked_rows_give_zero_loss_and_zero_gradient(name: str, options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    head = build_component("head", name, options, input_dim=12, labels=LABELS)
    targets, _ = _targets(head, 8)
    loss = head.loss(head(torch.randn(8, 12)), targets, torch.zeros(8, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    for p in head.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_safetensors_round_trip(name: str, options: dict[str, Any], tmp_path: Path) -> None:
    torch.manual_seed(1)
    head = build_component("head", name, options, input_dim=12, labels=LABELS).eval()
    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    torch.manual_seed(2)  # a different initialization, overwritten by the file
    rebuilt = build_component("head", head.component_name, head.options_dict(),
                              input_dim=12, labels=LABELS).eval()
    x = torch.randn(5, 12)
    assert not torch.equal(rebuilt(x), head(x))
    rebuilt.load_state_dict(load_file(str(tmp_path / "head.safetensors")), strict=True)
    assert torch.equal(rebuilt(x), head(x))
    assert rebuilt.fingerprint() == head.fingerprint()


def test_mlp_trains_with_batch_size_one() -> None:
    torch.manual_seed(0)
    head = build_component("head", "mlp", input_dim=12, labels=LABELS).train()
    x = torch.randn(1, 12)
    targets, mask = head.encode(["green"])
    loss = head.loss(head(x), targets, mask)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in head.parameters())
    assert any(isinstance(m, torch.nn.LayerNorm) for m in head.modules())


def test_head_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="norm"):
        build_component("head", "mlp", {"norm": "batch"}, input_dim=4, labels=LABELS)
    with pytest.raises(ConfigError, match="hidden"):
        build_component("head", "mlp", {"hidden": [0]}, input_dim=4, labels=LABELS)
    with pytest.raises(ConfigError, match="unknown"):
        build_component("head", "linear", {"unknown": 1}, input_dim=4, labels=LABELS)
    with pytest.raises(ConfigError, match="two labels"):
        build_component("head", "linear", input_dim=4, labels=["only"])
    with pytest.raises(ConfigError, match="thresholds"):
        build_component("head", "multilabel", {"thresholds": {"pink": 0.2}}, input_dim=4,
                        labels=LABELS)
    with pytest.raises(ConfigError, match="at least one label"):
        build_component("head", "multilabel", input_dim=4, labels=[])


# ------------------------------------------------------------------------------ multilabel


def test_multilabel_encode() -> None:
    head = build_component("head", "multilabel", input_dim=4, labels=LABELS)
    assert head.multilabel
    targets, mask = head.encode(["red|blue", ["green", "red"], None, "", [], ("black",),
                                 " blue | black ", float("nan")])
    assert mask.tolist() == [True, True, False, False, False, True, True, False]
    assert targets.dtype == torch.float32 and targets.shape == (8, 4)
    assert targets.tolist()[:2] == [[1, 1, 0, 0], [1, 0, 1, 0]]
    assert targets[5].tolist() == [0, 0, 0, 1] and targets[6].tolist() == [0, 1, 0, 1]
    assert targets[2].sum() == 0
    with pytest.raises(ConfigError, match="taxonomy"):
        head.encode(["red|pink"])


def test_multilabel_one_label_is_allowed() -> None:
    head = build_component("head", "multilabel", input_dim=4, labels=["logo"])
    assert head(torch.randn(2, 4)).shape == (2, 1)


def _logits_for(probs: list[list[float]]) -> torch.Tensor:
    return torch.logit(torch.tensor(probs))


def test_multilabel_decode_thresholds() -> None:
    logits = _logits_for([[0.9, 0.6, 0.2, 0.4], [0.3, 0.1, 0.45, 0.2], [0.35, 0.1, 0.2, 0.8]])
    default = build_component("head", "multilabel", input_dim=4, labels=LABELS)
    first, second, third = default.decode(logits, top_k=3)
    assert first.label == ["red", "blue"] and not first.abstained
    assert first.score == pytest.approx(0.9)
    assert [label for label, _ in first.top_k] == ["red", "blue", "black"]
    assert second.label == [] and second.abstained and second.score == pytest.approx(0.45)
    assert third.label == ["black"]

    tuned = build_component("head", "multilabel",
                            {"thresholds": {"green": 0.4, "red": 0.95}, "default_threshold": 0.7},
                            input_dim=4, labels=LABELS)
    first, second, third = tuned.decode(logits)
    assert first.label == [] and first.abstained  # red 0.9 < 0.95, blue 0.6 < 0.7
    assert second.label == ["green"] and second.score == pytest.approx(0.45)
    assert third.label == ["black"]
    # The spec's abstain threshold raises every label's bar.
    assert default.decode(logits, threshold=0.85)[0].label == ["red"]
    assert default.decode(logits, threshold=0.95)[0].abstained


def test_multilabel_score_is_the_best_chosen_label() -> None:
    head = build_component("head", "multilabel", {"thresholds": {"red": 0.95}},
                           input_dim=4, labels=LABELS)
    (pred,) = head.decode(_logits_for([[0.9, 0.6, 0.2, 0.4]]))
    assert pred.label == ["blue"] and pred.score == pytest.approx(0.6)
    assert pred.top_k[0] == ("red", pytest.approx(0.9))


def test_multilabel_loss_is_masked_bce() -> None:
    head = build_component("head", "multilabel", input_dim=4, labels=LABELS)
    logits = torch.randn(3, 4)
    targets, mask = head.encode(["red", None, "blue|black"])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], targets[[0, 2]])
    assert torch.allclose(head.loss(logits, targets, mask), expected)
    weights = torch.tensor([1.0, 0.0, 0.0, 0.0])  # only "red" counts
    weighted = head.loss(logits, targets, mask, class_weights=weights)
    terms = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[[0, 2]], targets[[0, 2]], reduction="none")
    assert torch.allclose(weighted, terms[:, 0].sum() / 8)
