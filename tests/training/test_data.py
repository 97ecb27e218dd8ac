"""Dataset loading: label normalization, unknown labels, bad rows, reports, splits, collation."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from fashion import ConfigError, DataError, FashionModel
from fashion.training import DatasetConfig, load_dataset
from fashion.training.data import stratified_split
from fashion.training.loader import BatchCollator
from tests.mdmt_data import write_manifest
from tests.tiny_plugin import TINY_SPEC


@pytest.fixture
def model(tiny):
    return FashionModel(TINY_SPEC)


def test_labels_are_normalized_with_spec_and_builtin_taxonomies(model, catalog):
    dataset = load_dataset(DatasetConfig(name="colors", path=catalog["colors"]), model)
    assert dataset.attributes == ["color"]  # only the model attributes among the columns
    assert set(dataset.labels["color"]) == {"red", "blue"}  # "crimson", " RED ", "navy"...
    report = dataset.report
    assert report.rows_read == report.rows_used == 60 and report.rows_skipped == 0
    assert report.label_counts == {"color": {"red": 30, "blue": 30}}
    assert len(report.sha256) == 64


def test_project_taxonomy_adds_synonyms(model, tmp_path, catalog):
    image = catalog["colors"].parent / "images" / "red-0.png"
    manifest = write_manifest(tmp_path / "m.csv", [
        {"id": "a", "images": str(image), "color": "Rouge Vif"},
        {"id": "b", "images": str(image), "color": "red"},
    ])
    project = tmp_path / "fashion-attributes.json"
    project.write_text(json.dumps({"attributes": {"color": {"labels": ["red", "blue"], "synonyms": {"rouge vif": "red"}}}}))
    config = DatasetConfig(name="m", path=manifest)
    with pytest.raises(DataError, match="Rouge Vif"):
        load_dataset(config, model)
    dataset = load_dataset(config, model, taxonomies=project)
    assert dataset.labels["color"] == ["red", "red"]


@pytest.fixture
def messy(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "red").save(good)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"definitely not a png")
    rows = [
        {"id": "ok", "images": "good.png", "title": "a", "color": "red", "category": "dress"},
        {"id": "unknown", "images": "good.png", "title": "b", "color": "chartreuse", "category": "shirt"},
        {"id": "missing", "images": "nope.png", "title": "c", "color": "red", "category": ""},
        {"id": "empty", "images": "empty.png", "title": "d", "color": "blue", "category": ""},
        {"id": "corrupt", "images": "corrupt.png", "title": "e", "color": "blue", "category": ""},
        {"id": "unlabeled", "images": "good.png", "title": "f", "color": "", "category": ""},
        {"id": "partial", "images": "good.png", "title": "g", "color": "", "category": "pants"},
        {"id": "both-unknown", "images": "good.png", "title": "h", "color": "mauve", "category": ""},
    ]
    return write_manifest(tmp_path / "messy.csv", rows)


def test_unknown_labels_fail_the_run_naming_file_row_and_value(model, messy):
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="messy", path=messy), model)
    message = str(info.value)
    # file line numbers, header counted: the header is line 1, "chartreuse" is on line 3
    assert "messy.csv:3" in message and "chartreuse" in message and "messy.csv:9" in message
    lines = messy.read_text().splitlines()
    assert "chartreuse" in lines[3 - 1] and "mauve" in lines[9 - 1]
    assert "on_unknown_label" in message  # says what to do


def test_skip_mode_counts_every_problem(model, messy):
    dataset = load_dataset(DatasetConfig(name="messy", path=messy), model, on_unknown_label="skip")
    report = dataset.report
    assert report.rows_read == 8
    assert report.rows_used + report.rows_skipped == report.rows_read
    assert [p.id for p in dataset.products] == ["ok", "unknown", "partial"]
    assert dataset.labels == {"color": ["red", None, None], "category": ["dress", "shirt", "pants"]}
    assert report.unknown_labels == 2
    reasons = {(p.row, p.field): p.reason for p in report.problems}
    assert "unknown label" in reasons[(3, "color")] and "unknown label" in reasons[(9, "color")]
    assert "does not exist" in reasons[(4, "images")]
    assert "0 bytes" in reasons[(5, "images")]
    assert "cannot decode" in reasons[(6, "images")]
    assert "no usable label" in reasons[(7, None)] and "no usable label" in reasons[(9, None)]
    assert all(p.file == str(messy) for p in report.problems)
    assert "chartreuse" in report.summary()
    assert report.to_dict()["problems"][0]["file"] == str(messy)


def test_bad_rows_can_fail_the_run(model, messy):
    with pytest.raises(DataError, match=r"messy.csv:4: images='[^']*nope.png'"):
        load_dataset(DatasetConfig(name="messy", path=messy), model, on_unknown_label="skip", on_bad_row="error")


def test_missing_labels_are_masked(model, messy):
    dataset = load_dataset(DatasetConfig(name="messy", path=messy), model, on_unknown_label="skip").encode(model)
    targets, mask = dataset.targets["color"]
    assert mask.tolist() == [True, False, False] and targets[0] == model.task("color").index["red"]
    assert dataset.targets["category"][1].tolist() == [True, True, True]


def test_attribute_selection_errors(model, catalog):
    with pytest.raises(ConfigError, match="style"):
        load_dataset(DatasetConfig(name="x", path=catalog["colors"], attributes=["style"]), model)
    with pytest.raises(DataError, match="no such column"):
        load_dataset(DatasetConfig(name="x", path=catalog["colors"], attributes=["category"]), model)
    only_title = write_manifest(catalog["colors"].parent / "t.csv", [{"id": "1", "title": "x", "pattern": "striped"}])
    with pytest.raises(ConfigError, match="labels none"):
        load_dataset(DatasetConfig(name="t", path=only_title), model)


def test_jsonl_parquet_and_folder_manifests(model, tmp_path, catalog):
    image = str(catalog["colors"].parent / "images" / "blue-0.png")
    records = [{"id": "1", "images": [image], "title": "x", "color": "Navy"}, {"id": "2", "title": 5, "color": "red"}]
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    dataset = load_dataset(DatasetConfig(name="j", path=folder), model)  # folder -> train.jsonl
    assert dataset.labels["color"] == ["blue"]
    assert dataset.report.rows_skipped == 1 and "must be text" in dataset.report.problems[0].reason
    pq.write_table(pa.table({"id": ["1"], "images": [image], "color": ["BLUE"]}), tmp_path / "p.parquet")
    assert load_dataset(DatasetConfig(name="p", path=tmp_path / "p.parquet"), model).labels["color"] == ["blue"]
    with pytest.raises(ConfigError, match="val.csv"):
        DatasetConfig(name="v", path=folder, split="val").manifest_path()


def test_stratified_split_keeps_label_proportions(model, catalog):
    dataset = load_dataset(DatasetConfig(name="categories", path=catalog["categories"]), model)
    train, val = stratified_split(dataset, 0.2, torch.Generator().manual_seed(0))
    assert sorted(train + val) == list(range(60)) and not set(train) & set(val)
    labels = [dataset.labels["category"][i] for i in val]
    assert {label: labels.count(label) for label in set(labels)} == {"dress": 4, "shirt": 4, "pants": 4}
    again = stratified_split(dataset, 0.2, torch.Generator().manual_seed(0))
    assert again == (train, val)


def test_collate_encodes_only_the_dataset_attributes(model, catalog):
    colors = load_dataset(DatasetConfig(name="colors", path=catalog["colors"]), model).encode(model)
    categories = load_dataset(DatasetConfig(name="categories", path=catalog["categories"]), model).encode(model)
    collate = BatchCollator(model, [colors, categories])
    batch, targets = collate((0, [0, 1, 2]))
    assert batch.size == 3 and set(targets) == {"color"}
    assert targets["color"][0].tolist() == colors.targets["color"][0][:3].tolist()
    _, targets = collate((1, [5]))
    assert set(targets) == {"category"}


def test_a_single_class_dataset_is_warned_about(model, tmp_path):
    from fashion.training.runtime import single_class_warnings

    rows = [{"id": str(i), "title": f"shirt {i}", "color": "Navy"} for i in range(3)]
    one = load_dataset(DatasetConfig(name="navy-only", path=write_manifest(tmp_path / "a.csv", rows)), model)
    mixed = rows + [{"id": "9", "title": "red shirt", "color": "red"}]
    two = load_dataset(DatasetConfig(name="mixed", path=write_manifest(tmp_path / "b.csv", mixed)), model)
    (message,) = single_class_warnings([one, two])
    assert "'navy-only'" in message and "'color'" in message and "'blue'" in message
    assert "(3)" in message and "add rows of other labels" in message
