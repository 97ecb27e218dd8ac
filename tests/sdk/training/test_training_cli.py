"""`fashion train CONFIG` (TOML with relative paths, flag overrides) and `fashion evaluate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.training import TrainConfig
from fashion.training.cli import evaluate_command, train_command

CONFIG = """
epochs = 3
batch_size = 8
sampler = "proportional"
loss = "sum"
val_fraction = 0.25
output_dir = "runs/first"
progress = false
device = "cpu"

[optimizer]
lr_backbone = 0.03
lr_head = 0.03
weight_decay = 0.0

[schedule]
warmup_steps = 2

[[datasets]]
name = "colors"
path = "data/colors.csv"

[[datasets]]
name = "categories"
path = "data/categories.csv"
attributes = ["category"]

[model.views.full]
name = "tiny_crop"

[model.backbones.image]
name = "tiny_image"
views = ["full"]

[model.backbones.text]
name = "tiny_text"

[model.fusion]
name = "tiny_concat"

[model.attributes.color]
labels = ["red", "blue"]
head = { name = "tiny_head" }

[model.attributes.category]
labels = ["dress", "shirt", "pants"]
head = { name = "tiny_head" }
"""


def test_config_file_paths_are_relative_to_the_file(tiny, tmp_path, catalog):
    path = tmp_path / "train.toml"
    path.write_text(CONFIG)
    config = TrainConfig.load(path)
    assert config.datasets[0].path == catalog["colors"]
    assert config.output_dir == tmp_path / "runs" / "first"
    assert config.schedule.warmup_steps == 2 and config.model.attributes["color"].labels == ["red", "blue"]
    with pytest.raises(Exception, match="epochz"):
        TrainConfig.parse({"epochz": 1, "datasets": []})


def test_train_then_evaluate_from_the_command_line(tiny, tmp_path, catalog, monkeypatch):
    pytest.importorskip("fashion.registry.bundle")
    (tmp_path / "train.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        train_command,
        ["train.toml", "--epochs", "2", "--output", "out", "--seed", "3", "--sampler", "round_robin"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "trained 2 epoch(s)" in result.output
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(history) == 2  # --epochs and --output override the file
    bundle = tmp_path / "out" / "bundle"
    assert (bundle / "fashion.json").is_file()

    result = runner.invoke(
        evaluate_command, [str(bundle), str(catalog["colors"]), "--json", "--out", "report"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["attributes"]["color"]["support"] == 60 and "category" not in report["attributes"]
    assert (tmp_path / "report" / "confusion_color.png").is_file()

    result = runner.invoke(evaluate_command, [str(bundle), str(catalog["categories"])], catch_exceptions=False)
    assert result.exit_code == 0 and "macro-F1" in result.output


def test_the_worked_example_in_the_docs_is_a_valid_config(tmp_path):
    docs = Path(__file__).resolve().parents[3] / "docs" / "training.md"
    example = re.search(r"```toml\n(.*?)```", docs.read_text(), re.S).group(1)
    (tmp_path / "train.toml").write_text(example)
    config = TrainConfig.load(tmp_path / "train.toml")
    assert [d.name for d in config.datasets] == ["colors_patterns", "categories", "sleeves"]
    assert config.taxonomies == tmp_path / "fashion-attributes.json"
    assert set(config.model.attributes) == {"color", "pattern", "category", "style", "sleeve_length"}
