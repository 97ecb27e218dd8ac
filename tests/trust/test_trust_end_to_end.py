"""Training fits calibration and thresholds; calibrate, audit and review run on a tiny bundle."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fashion.cli import cli
from tests.mdmt_data import make_catalog
from tests.tiny_plugin import TINY_SPEC


def _train(tmp_path: Path, catalog: dict[str, Path]) -> Path:
    from fashion.training import TrainConfig, Trainer

    config = TrainConfig.parse({
        "model": TINY_SPEC,
        "datasets": [{"name": "colors", "path": catalog["colors"]},
                     {"name": "categories", "path": catalog["categories"]}],
        "epochs": 3, "batch_size": 16, "val_fraction": 0.3, "seed": 0,
        "optimizer": {"lr_backbone": 0.03, "lr_head": 0.03, "weight_decay": 0.0},
        "output_dir": tmp_path / "run", "progress": False, "save_bundle": True, "device": "cpu",
        "min_precision": 0.9,
    })
    result = Trainer(None, config).fit()
    assert result.bundle_path is not None
    return result.bundle_path


def _flip(path: Path, out: Path, column: str, every: int) -> list[str]:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    flipped = []
    for i, row in enumerate(rows):
        if i % every == 0:
            row[column] = "blue" if row[column].strip().lower() in ("red", "crimson") else "red"
            flipped.append(row["id"])
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return flipped


@pytest.mark.slow
def test_training_calibrates_and_the_trust_commands_run(tiny: object, tmp_path: Path) -> None:
    from fashion import Predictor
    from fashion.registry.bundle import read_index

    catalog = make_catalog(tmp_path / "data", n_colors=100, n_categories=100)
    bundle = _train(tmp_path, catalog)
    index = read_index(bundle)
    for attribute in ("color", "category"):
        entry = index.attributes[attribute]
        assert entry.calibration is not None and entry.calibration.temperature > 0
        assert entry.abstention is not None and entry.abstention.min_precision == 0.9
    card = (bundle / "README.md").read_text(encoding="utf-8")
    assert "## Calibration and abstention" in card
    for attribute in ("color", "category"):  # the reliability diagrams are in the model card
        assert f"![{attribute} reliability diagram](plots/{attribute}.reliability.png)" in card
        assert (bundle / "plots" / f"{attribute}.reliability.png").is_file()
        assert f"![{attribute} confusion matrix](plots/{attribute}.png)" in card
    assert (tmp_path / "run" / "evaluation" / "reliability_color.png").is_file()
    assert (tmp_path / "run" / "evaluation" / "coverage_category.png").is_file()
    import json

    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert set(metrics["trust"]) == {"color", "category"}  # metrics.json is written after calibration

    predictor = Predictor.from_pretrained(str(bundle), device="cpu")
    products = [{"images": [str(catalog["colors"].parent / "images" / "red-0.png")], "title": "soft dress"}]
    (plain,) = predictor.predict(products)
    (careful,) = predictor.predict(products, abstain=True)
    assert plain.attributes["color"].label is not None
    guarded = careful.attributes["color"]
    assert guarded.label == plain.attributes["color"].label or guarded.reason == "below_threshold"

    runner = CliRunner()
    out = tmp_path / "calibrated"
    result = runner.invoke(cli, ["calibrate", str(bundle), "--data", str(catalog["colors"]),
                                 "--min-precision", "0.9", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ece_before" in result.output and read_index(out).attributes["color"].calibration is not None
    assert read_index(out).provenance.parent == str(bundle)
    card = (out / "README.md").read_text(encoding="utf-8")  # the base's plots stay, new diagrams
    assert "![color confusion matrix](plots/color.png)" in card and (out / "plots" / "color.png").is_file()
    assert "![color reliability diagram](plots/color.reliability.png)" in card
    assert (out / "plots" / "color.reliability.png").read_bytes() != (bundle / "plots" / "color.reliability.png").read_bytes()

    noisy = catalog["colors"].with_name("noisy.csv")  # beside the images it names
    flipped = _flip(catalog["colors"], noisy, "color", every=10)
    report = tmp_path / "suspects.csv"
    result = runner.invoke(cli, ["audit", str(noisy), "--model", str(bundle), "--attribute", "color",
                                 "--out", str(report)])
    assert result.exit_code == 0, result.output
    listed = list(csv.DictReader(report.open(encoding="utf-8")))
    suspects = [row["id"] for row in listed]
    found = set(suspects[: len(flipped)]) & set(flipped)
    assert len(found) >= 0.8 * len(flipped)  # the images say the color: flips stand out
    streams = {"words", *Predictor.from_pretrained(str(bundle), device="cpu").model.input_dims}
    for row in listed[: len(flipped)]:  # which evidence disagrees with the given label
        assert row["contradicted_by"] and set(row["contradicted_by"].split("|")) <= streams
    with noisy.open("a", encoding="utf-8") as f:  # a row whose photo is missing: skipped, and said so
        f.write("gone-1,images/no-such-photo.png,lost item,red\n")
    result = runner.invoke(cli, ["audit", str(noisy), "--model", str(bundle), "--attribute", "color",
                                 "--no-words", "--out", str(report)])  # the model's features alone
    assert result.exit_code == 0, result.output
    assert "1 rows skipped" in result.output and "no-such-photo.png" in result.output
    suspects = [row["id"] for row in csv.DictReader(report.open(encoding="utf-8"))]
    assert len(set(suspects[: len(flipped)]) & set(flipped)) >= 0.8 * len(flipped)

    queue = tmp_path / "queue.csv"
    result = runner.invoke(cli, ["review", str(bundle), str(catalog["categories"]), "--out", str(queue),
                                 "--budget", "5", "--strategy", "disagreement"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(queue.open(encoding="utf-8")))
    assert len(rows) == 5 and len({r["id"] for r in rows}) == 5
    assert {"id", "images", "title", "review_attribute", "suggested"} <= set(rows[0])


def test_review_queue_is_diverse(tiny: object) -> None:
    from fashion import FashionModel
    from fashion.trust.features import Encoded
    from fashion.trust.review import build_queue

    model = FashionModel(TINY_SPEC)
    dims = {name: dim for name, dim in model.input_dims.items()}
    n = 40
    features = {name: torch.randn(1, dim).repeat(n, 1) for name, dim in dims.items()}
    for name in features:  # 20 copies of one product, 20 distinct ones
        features[name][20:] = torch.randn(20, dims[name])
    encoded = Encoded(features, {name: torch.ones(n, dtype=torch.bool) for name in dims})
    products = [object()] * n
    queue = build_queue(model, products, 10, attribute="color", encoded=encoded,  # type: ignore[arg-type]
                        diversity=10.0)
    copies = [item.index for item in queue if item.index < 20]
    assert len(queue) == 10 and len(copies) <= 1
