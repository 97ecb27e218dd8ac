"""Training on the synthetic catalog: three datasets, five attributes, vendor spellings."""

from __future__ import annotations

import pytest

from fashion.training import TrainConfig, Trainer

LABELS = {
    "color": ["red", "white", "black", "blue", "green", "yellow", "pink", "grey"],
    "pattern": ["solid", "striped", "polka_dot", "plaid", "floral"],
    "category": ["t_shirt", "shirt", "dress", "pants", "skirt", "jacket", "sweater"],
    "style": ["casual", "formal", "sporty"],
    "sleeve_length": ["sleeveless", "short", "long"],
}


def test_three_catalog_datasets_train_one_model(tiny, tmp_path):
    catalog = pytest.importorskip("fashion.catalog")
    info = catalog.make_catalog(tmp_path / "catalog", products=90, image_size=64, workers=1)
    spec = {
        "views": {"full": {"name": "tiny_crop"}},
        "backbones": {"image": {"name": "tiny_image", "views": ["full"]}, "text": {"name": "tiny_text"}},
        "fusion": {"name": "tiny_concat"},
        "attributes": {a: {"labels": labels, "head": {"name": "tiny_head"}} for a, labels in LABELS.items()},
    }
    root = tmp_path / "catalog" / "datasets"
    config = TrainConfig.parse({
        "model": spec,
        "datasets": [{"name": n, "path": root / n} for n in info.dataset_names],
        "validation": [{"name": n, "path": root / n, "split": "val"} for n in info.dataset_names],
        "epochs": 2, "batch_size": 8, "output_dir": tmp_path / "run", "progress": False,
        "save_bundle": False, "device": "cpu", "on_unknown_label": "error",
    })
    result = Trainer(None, config).fit()  # vendor spellings all normalize: no unknown label
    reports = {r.dataset: r for r in result.data_reports}
    assert set(reports["colors_patterns"].attributes) == {"color", "pattern"}
    assert set(reports["sleeves"].attributes) == {"sleeve_length"}
    assert all(r.rows_read == r.rows_used + r.rows_skipped and r.unknown_labels == 0 for r in reports.values())
    assert set(result.history[-1]["losses"]) == set(LABELS)
    assert set(result.evaluation.attributes) == set(LABELS)
