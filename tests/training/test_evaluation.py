"""Evaluation metrics, reports (JSON, table, PNG) and `evaluate` on manifests."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from fashion import FashionModel
from fashion.training import EvaluationReport, evaluate
from fashion.training.evaluation import AttributeCounts
from tests.tiny_plugin import TINY_SPEC


def one_hot_logits(pred, n):
    return torch.nn.functional.one_hot(torch.tensor(pred), n).float()


def test_single_label_metrics_by_hand():
    counts = AttributeCounts(["a", "b", "c"], multilabel=False)
    truth = [0, 0, 0, 1, 1, 2, 1]
    pred = [0, 0, 1, 1, 2, 2, 0]
    mask = torch.tensor([True] * 6 + [False])  # the last row is unlabeled: not scored
    counts.update(one_hot_logits(pred, 3), torch.tensor(truth), mask)
    m = counts.metrics("letter")
    assert m.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m.support == 6 and m.accuracy == pytest.approx(4 / 6)
    assert m.per_class["a"].precision == 1.0 and m.per_class["a"].recall == pytest.approx(2 / 3)
    assert m.per_class["b"].f1 == pytest.approx(0.5) and m.per_class["c"].f1 == pytest.approx(2 / 3)
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.per_class["c"].support == 1


def test_validation_loss_is_the_mean_cross_entropy_of_labeled_rows_across_batches():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 3.0, 0.0], [9.0, 9.0, 9.0]])
    truth = torch.tensor([0, 2, 1, 1])
    mask = torch.tensor([True, True, True, False])  # unlabeled: not in the loss
    first, second = AttributeCounts(["a", "b", "c"], False), AttributeCounts(["a", "b", "c"], False)
    first.update(logits[:2], truth[:2], mask[:2])
    second.update(logits[2:], truth[2:], mask[2:])
    first.merge(second)
    expected = torch.nn.functional.cross_entropy(logits[:3], truth[:3]).item()
    assert first.metrics("x").loss == pytest.approx(expected, rel=1e-5)  # batched sums vs one call
    assert first.metrics("x").to_dict()["loss"] == pytest.approx(expected, abs=1e-6)
    multi = AttributeCounts(["floral", "striped"], multilabel=True)
    ml_logits, ml_truth = torch.tensor([[2.0, -1.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    multi.update(ml_logits, ml_truth, torch.ones(2, dtype=torch.bool))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(ml_logits, ml_truth).item()
    assert multi.metrics("pattern").loss == pytest.approx(bce, rel=1e-5)
    assert AttributeCounts(["a"], False).metrics("empty").loss is None  # nothing scored: no loss


def test_macro_f1_ignores_classes_never_seen_nor_predicted():
    counts = AttributeCounts(["a", "b", "c"], multilabel=False)
    counts.update(one_hot_logits([0, 1], 3), torch.tensor([0, 1]), torch.ones(2, dtype=torch.bool))
    assert counts.metrics("x").macro_f1 == 1.0


def test_multilabel_metrics():
    counts = AttributeCounts(["floral", "striped"], multilabel=True)
    logits = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    targets = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    counts.update(logits, targets, torch.ones(3, dtype=torch.bool))
    m = counts.metrics("pattern")
    assert m.multilabel and m.confusion is None
    assert m.accuracy == pytest.approx(1 / 3)  # exact-match rows
    assert m.per_class["floral"].f1 == 1.0
    assert m.per_class["striped"].recall == pytest.approx(1 / 3) and m.per_class["striped"].precision == 1.0


def test_evaluate_manifests_and_write_outputs(tiny, catalog, tmp_path):
    torch.manual_seed(0)
    model = FashionModel(TINY_SPEC)
    report = evaluate(model, [catalog["colors"], catalog["categories"]], batch_size=16, plots_dir=tmp_path / "out")
    assert isinstance(report, EvaluationReport)
    assert report.attributes["color"].support == 60 and report.attributes["category"].support == 60
    assert set(report.per_dataset) == {"colors", "categories"}
    assert set(report.per_dataset["colors"]) == {"color"}  # only the attributes a dataset labels
    assert sum(sum(row) for row in report.attributes["category"].confusion) == 60
    assert 0.0 <= report.mean_macro_f1 <= 1.0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["attributes"]["color"]["support"] == 60 and "per_class" in saved["attributes"]["color"]
    assert saved["data"][0]["rows_used"] == 60
    assert (tmp_path / "out" / "confusion_category.png").read_bytes()[:4] == b"\x89PNG"
    console = Console(record=True, width=120)
    console.print(report.table())
    console.print(report.class_table("category"))
    text = console.export_text()
    assert "macro-F1" in text and "category" in text and "pants" in text


def test_confusion_matrix_title_fits_inside_the_figure(tmp_path):
    from matplotlib.figure import Figure

    counts = AttributeCounts(["a", "b"], multilabel=False)
    counts.update(one_hot_logits([0, 1, 1], 2), torch.tensor([0, 1, 0]), torch.ones(3, dtype=torch.bool))
    report = EvaluationReport({"sleeve_length_of_the_garment": counts.metrics("sleeve_length_of_the_garment")})
    seen = {}
    real = Figure.savefig

    def capture(figure, path, **kwargs):
        seen["figure"] = figure
        return real(figure, path, **kwargs)

    Figure.savefig = capture
    try:
        report.plot_confusion("sleeve_length_of_the_garment", tmp_path / "c.png")
    finally:
        Figure.savefig = real
    figure = seen["figure"]
    renderer = figure.canvas.get_renderer()
    box = figure.axes[0].title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height
