"""Trust beyond the trust package: catalog options, evaluation, add-attribute's scope."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fashion.catalog import (
    NOISE_FILE,
    NOT_APPLICABLE_CELLS,
    SLEEVED,
    make_catalog,
    read_ground_truth,
)
from fashion.errors import ConfigError
from fashion.model.taxonomy_files import builtin_taxonomies
from tests.mdmt_data import make_catalog as make_tiny_data
from tests.tiny_plugin import TINY_SPEC


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------- catalog options


def test_catalog_label_noise_flips_train_cells_and_lists_them(tmp_path: Path) -> None:
    info = make_catalog(tmp_path / "c", products=60, image_size=64, seed=3, workers=1,
                        label_noise=0.2, images_per_product=(1, 1))
    truth = {r["id"]: r for r in read_ground_truth(info)}
    flipped = _rows(tmp_path / "c" / NOISE_FILE)
    assert info.noise_path == tmp_path / "c" / NOISE_FILE
    assert json.loads((tmp_path / "c" / "catalog.json").read_text())["label_noise"] == 0.2
    by_cell = {(r["id"], r["attribute"]): r for r in flipped}
    for dataset in info.datasets.values():
        for split, rel in dataset.manifests.items():
            rows = _rows(tmp_path / "c" / rel)
            for a in dataset.attributes:
                labeled = [r for r in rows if truth[r["id"]][a]]
                hits = [r for r in rows if (r["id"], a) in by_cell]
                if split != "train":
                    assert not hits  # validation and test stay clean
                    continue
                assert len(hits) == round(0.2 * len(labeled))
                for line, row in enumerate(rows, start=2):
                    record = by_cell.get((row["id"], a))
                    if record is None:
                        continue
                    assert record["true"] == truth[row["id"]][a] != record["given"] == row[a]
                    assert record["given"] in builtin_taxonomies()[a].labels
                    assert (record["manifest"], record["line"]) == (rel, str(line))


def test_catalog_not_applicable_puts_out_of_scope_products_in_sleeves(tmp_path: Path) -> None:
    info = make_catalog(tmp_path / "c", products=60, image_size=64, seed=1, workers=1,
                        not_applicable=1.0, images_per_product=(1, 1))
    truth = {r["id"]: r for r in read_ground_truth(info)}
    sleeves = [r for split in ("train", "val", "test")
               for r in _rows(info.manifest_path("sleeves", split))]
    out_of_scope = [r for r in sleeves if truth[r["id"]]["category"] not in SLEEVED]
    every_unsleeved = [r for r in truth.values() if r["category"] not in SLEEVED]
    assert len(out_of_scope) == len(every_unsleeved) > 0
    spec = builtin_taxonomies()["sleeve_length"]
    for row in out_of_scope:
        assert row["sleeve_length"] in NOT_APPLICABLE_CELLS
        assert spec.resolve(row["sleeve_length"]).not_applicable
        assert truth[row["id"]]["dataset"] == "sleeves" and truth[row["id"]]["sleeve_length"] == ""
    assert not (tmp_path / "c" / NOISE_FILE).exists()


def test_catalog_options_are_checked_and_on_the_command_line(tmp_path: Path) -> None:
    from fashion.cli import cli

    with pytest.raises(ConfigError, match="label_noise"):
        make_catalog(tmp_path / "bad", products=5, image_size=64, label_noise=1.5)
    result = CliRunner().invoke(cli, ["make-catalog", str(tmp_path / "c"), "--products", "12",
                                      "--image-size", "64", "--label-noise", "0.3",
                                      "--not-applicable", "0.5", "--workers", "1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "c" / "catalog.json").read_text())
    assert (saved["label_noise"], saved["not_applicable"]) == (0.3, 0.5)


# ------------------------------------------------------------------------------ evaluation


def _scoped_model() -> object:
    from fashion import FashionModel
    from fashion.model.taxonomy import Abstention, Calibration

    spec = json.loads(json.dumps(TINY_SPEC))
    spec["attributes"]["color"]["applies_to"] = {"category": ["dress", "shirt"]}
    torch.manual_seed(0)
    model = FashionModel(spec)
    model.spec.attributes["color"].calibration = Calibration(temperature=2.0, ece_before=0.2, ece_after=0.1, rows=30)
    model.spec.attributes["color"].abstention = Abstention(threshold=0.5, min_precision=0.9, precision=0.9,
                                                           coverage=0.5, reached=True)
    return model


def test_evaluate_reports_calibration_abstention_and_applicability(tiny: object, tmp_path: Path) -> None:
    from fashion.training import evaluate
    from fashion.training.data import label_normalizers, load_dataset
    from fashion.training.evaluation import _as_dataset_config
    from fashion.trust.calibration import confidences, expected_calibration_error
    from fashion.trust.fit import collect_outputs

    data = make_tiny_data(tmp_path / "data", n_colors=30, n_categories=30)
    model = _scoped_model()
    report = evaluate(model, [data["colors"], data["categories"]], plots_dir=tmp_path / "eval")
    trust = report.trust
    assert trust is not None and trust.split == "test"
    color = trust.attributes["color"]
    assert color.temperature == 2.0 and color.rows == 30
    loaded = load_dataset(_as_dataset_config(data["colors"], "test"), model,
                          normalizers=label_normalizers(model), on_unknown_label="skip")
    outputs = collect_outputs(model, [loaded])["color"]
    conf, ok = confidences(outputs.logits, outputs.targets, temperature=2.0)
    assert color.ece_after == pytest.approx(expected_calibration_error(conf, ok), abs=1e-5)
    assert color.abstention is not None and color.abstention["threshold"] == 0.5
    assert color.abstention["coverage"] == pytest.approx(float((conf >= 0.5).float().mean()))

    # applicability, from the rows that label category: out of scope = the 10 pants rows
    scope = trust.applicability["color"]
    assert (scope["out_of_scope"], scope["in_scope"]) == (10, 20)
    categories = load_dataset(_as_dataset_config(data["categories"], "test"), model,
                              normalizers=label_normalizers(model))
    predicted = model.predict(categories.products, abstain=True)
    pants = [i for i, label in enumerate(categories.labels["category"]) if label == "pants"]
    said = sum(predicted[i]["category"].top_k[0][0] == "pants" for i in pants)
    assert scope["not_applicable_recall"] == pytest.approx(said / len(pants))

    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert abs(saved["trust"]["color"]["ece_after"] - color.ece_after) <= 5e-5 + 1e-12  # saved to 4 places
    assert (tmp_path / "eval" / "reliability_color.png").is_file()
    assert (tmp_path / "eval" / "coverage_color.png").is_file()
    assert (tmp_path / "eval" / "trust_test.json").is_file()
    assert evaluate(model, [data["colors"]], trust=False).trust is None


def test_evaluate_of_a_plain_model_has_no_trust_section(tiny: object, tmp_path: Path) -> None:
    from fashion import FashionModel
    from fashion.training import evaluate

    data = make_tiny_data(tmp_path / "data", n_colors=10, n_categories=10)
    report = evaluate(FashionModel(TINY_SPEC), [data["colors"]])
    assert report.trust is None and "trust" not in report.to_dict()


# ---------------------------------------------------------------------------- add-attribute


def test_scaffold_copies_the_taxonomy_scope(tmp_path: Path) -> None:
    from fashion.attributes.pipeline import add_attribute
    from fashion.model.taxonomy_files import PROJECT_FILE, load_project_taxonomies

    add_attribute("sleeve_length", project_dir=tmp_path)
    written = load_project_taxonomies(tmp_path / PROJECT_FILE)["sleeve_length"]
    assert written.applies_to == builtin_taxonomies()["sleeve_length"].applies_to
    assert written.applies_to["category"] == ["t_shirt", "shirt", "dress", "jacket", "sweater"]


def test_new_attribute_scope_keeps_what_the_base_model_predicts(tiny: object) -> None:
    from fashion import FashionModel
    from fashion.attributes.labels import scope_for

    sleeves = builtin_taxonomies()["sleeve_length"]
    model = FashionModel(TINY_SPEC)  # category: dress, shirt, pants
    assert scope_for("sleeve_length", sleeves, model.spec.attributes) == {"category": ["shirt", "dress"]}
    colors_only = {"color": model.spec.attributes["color"]}
    assert scope_for("sleeve_length", sleeves, colors_only) == {}
    assert scope_for("sleeve_length", None, model.spec.attributes) == {}
