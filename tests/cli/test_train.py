"""`fashion train CONFIG` (TOML with relative paths, flag overrides) and `fashion evaluate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.cli.train import evaluate_command, train_command
from fashion.errors import ConfigError
from fashion.training import TrainConfig

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


def _docs_example() -> str:
    docs = Path(__file__).resolve().parents[2] / "docs" / "training.md"
    return re.search(r"```toml\n(.*?)```", docs.read_text(), re.S).group(1)


@pytest.mark.slow
def test_the_worked_example_in_the_docs_runs_on_the_catalog_it_names(tiny, tmp_path):
    """The doc's config, next to the catalog `fashion make-catalog data` writes, resolves every
    file it names, validates every attribute, and trains (components swapped for tiny ones)."""
    from fashion.catalog import make_catalog
    from fashion.training import Trainer

    make_catalog(tmp_path / "data", products=90, image_size=64, workers=1)
    (tmp_path / "train.toml").write_text(_docs_example())
    config = TrainConfig.load(tmp_path / "train.toml")
    assert [d.name for d in config.datasets] == ["colors_patterns", "categories", "sleeves"]
    for dataset in [*config.datasets, *(config.validation or [])]:
        assert dataset.manifest_path().is_file(), dataset
    assert config.taxonomies is None or config.taxonomies.is_file()
    assert set(config.model.attributes) == {"color", "pattern", "category", "style", "sleeve_length"}

    spec = config.model.model_dump(mode="json")
    spec["views"] = {"full": {"name": "tiny_crop"}}
    spec["backbones"] = {"image": {"name": "tiny_image", "views": ["full"]}, "text": {"name": "tiny_text"}}
    spec["fusion"] = {"name": "tiny_concat"}
    for attribute in spec["attributes"].values():
        attribute["head"] = {"name": "tiny_head"}
    small = config.with_overrides(
        model=spec, epochs=1, batch_size=16, num_workers=0, progress=False, save_bundle=False,
        device="cpu", output_dir=tmp_path / "run",
    )
    result = Trainer(None, small).fit()
    assert result.unvalidated == []
    assert set(result.evaluation.attributes) == set(config.model.attributes)


def test_an_attribute_without_validation_data_is_named_in_the_log_and_the_summary(
    tiny, tmp_path, catalog, monkeypatch, caplog
):
    config = CONFIG + """
[[validation]]
name = "colors"
path = "data/colors.csv"
"""
    (tmp_path / "train.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="fashion.training"):
        result = CliRunner().invoke(train_command, ["train.toml", "--epochs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no validation data for 'category'" in caplog.text
    summary = result.output.replace("\n", " ")
    assert "warning: no validation data for 'category'" in summary and "'color'" not in summary.split("warning:")[1]


def test_config_errors_name_the_table_and_use_config_file_words(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(CONFIG.replace("lr_head = 0.03", "lr_hed = 0.03").replace(
        'views = ["full"]', 'viewz = ["full"]'))
    with pytest.raises(ConfigError) as caught:
        TrainConfig.load(path)
    message = str(caught.value)
    assert "optimizer.lr_hed: unknown key; accepted keys of [optimizer]: lr_backbone, lr_head," in message
    assert "accepted keys of [model.backbones.image]: name, options, views" in message
    assert "epochs" not in message  # the top-level keys are not the ones to choose from
    with pytest.raises(ConfigError, match=r"datasets: missing; add a \[\[datasets\]\] table"):
        TrainConfig.parse({"epochs": 1})
    path.write_text('batchnorm_statistics = "frozen"\n' + CONFIG)
    with pytest.raises(ConfigError, match=r"batchnorm_statistics: Input should be 'auto', 'update' or 'fixed'"):
        TrainConfig.load(path)

    path.write_text("\n".join(line for line in CONFIG.splitlines() if not line.startswith(("[model", "name = \"tiny", "views", "labels", "head"))))
    result = CliRunner().invoke(train_command, [str(path)])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "add a [model] table" in str(result.exception) and "Trainer" not in str(result.exception)


def test_a_dataset_path_that_does_not_exist_is_named_before_the_model_loads(tiny, tmp_path, catalog, monkeypatch):
    from fashion.training import Trainer, trainer

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the data paths were checked")

    monkeypatch.setattr(trainer, "FashionModel", no_model)
    path = tmp_path / "train.toml"
    path.write_text(CONFIG.replace('path = "data/categories.csv"', 'path = "data/categoriez"'))
    with pytest.raises(ConfigError, match=r"dataset 'categories': .*categoriez does not exist; check `path`"):
        Trainer(None, TrainConfig.load(path)).fit()
