"""`fashion add-attribute`: scaffold, label proposal, head-only training, the gate, publishing."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fashion.attributes.labels import propose_labels
from fashion.attributes.pipeline import add_attribute
from fashion.data.manifest import iter_manifest
from fashion.errors import FashionError
from fashion.model.inputs import row_to_product
from fashion.model.taxonomy_files import load_taxonomy
from fashion.registry import LocalRegistry, load_bundle
from tests.mdmt_data import FILLER, make_catalog, write_manifest
from tests.tiny_plugin import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]
# The CLI as a real subprocess; the tiny test plugin is registered before `main` runs.
BOOT = (
    "import sys; from fashion.contract.manager import register_plugin; from tests import tiny_plugin; "
    "register_plugin(tiny_plugin, name='tests.tiny_plugin'); from fashion.cli import main; "
    "main(sys.argv[1:])"
)
SLEEVE_WORDS = {"sleeveless": ["sleeveless", "Tank"], "short": ["short sleeve", "SS"],
                "long": ["long sleeve", "long-sleeved"]}


def _sleeves(root: Path, n: int, seed: int, name: str) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["sleeveless", "short", "long"][i % 3]
        words = rng.sample(FILLER, 2) + [SLEEVE_WORDS[label][0]]
        rng.shuffle(words)
        rows.append({"id": f"{name}{i}", "images": "", "title": " ".join(words),
                     "sleeve_length": rng.choice(SLEEVE_WORDS[label])})
    return write_manifest(root / f"{name}.csv", rows)


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FASHION_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", BOOT, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.fixture
def base_model(tiny, tmp_path, fashion_home):
    """A base model (color, category) trained by MDMT and published as local://shop."""
    from fashion.training import Trainer

    train = make_catalog(tmp_path / "train", seed=0)
    val = make_catalog(tmp_path / "val", n_colors=24, n_categories=24, seed=1)
    result = Trainer(None, {
        "model": TINY_SPEC,
        "datasets": [{"name": "colors", "path": train["colors"]},
                     {"name": "categories", "path": train["categories"]}],
        "validation": [{"name": "colors-val", "path": val["colors"]},
                       {"name": "categories-val", "path": val["categories"]}],
        "epochs": 6, "batch_size": 8, "device": "cpu", "precision": "fp32", "progress": False,
        "optimizer": {"lr_backbone": 0.03, "lr_head": 0.03, "weight_decay": 0.0},
        "output_dir": tmp_path / "run",
    }).fit()
    revision = LocalRegistry().publish(result.bundle_path, "shop", tag="base")
    return revision, val


def _logits(model, products):
    model.eval()
    with torch.inference_mode():
        return model(model.prepare(products))


def test_head_only_adds_an_attribute_and_keeps_old_predictions_bit_identical(
    base_model, tmp_path, fashion_home
):
    revision, val = base_model
    data = tmp_path / "sleeves"
    train, valid, test = (_sleeves(data, n, s, name) for n, s, name in
                          ((90, 2, "train"), (30, 3, "val"), (90, 4, "test")))
    result = _cli(["add-attribute", "sleeve_length", "--data", str(train), "--validation",
                   str(valid), "--base", "local://shop@base", "--push", "shop", "--tag", "v2",
                   "--epochs", "25", "--lr", "0.01", "--project-dir", str(tmp_path)], fashion_home)
    assert result.returncode == 0, result.stderr
    assert "labels proposed from the data" in result.stdout and "published" in result.stdout

    old = load_bundle(f"local://shop@{revision.id}")
    new = load_bundle("local://shop@v2")
    assert new.model.attributes == ["color", "category", "sleeve_length"]
    assert new.index.provenance.parent == f"local://shop@{revision.id}"
    # the gate saw every old component unchanged (fingerprints), so "after" reused "before"
    gate = new.index.provenance.model_dump()["added_attribute"]["gate"]
    assert gate["changed_components"] == [] and gate["passed"]
    assert "old components bit-identical" in result.stdout
    # unchanged components are the same files (content-addressed, shared between revisions)
    for path in ("backbones/image", "backbones/text", "fusion", "heads/color", "heads/category"):
        entry = new.index.components[path]
        assert entry.fingerprint == old.index.components[path].fingerprint
        if entry.weights:  # (a parameter-free fusion has no file)
            assert (new.path / entry.weights).stat().st_ino == (old.path / entry.weights).stat().st_ino

    products = [row_to_product(r, val["colors"]) for r in iter_manifest(val["colors"])]
    products += [row_to_product(r, test) for r in iter_manifest(test)]
    before, after = _logits(old.model, products), _logits(new.model, products)
    for attribute in ("color", "category"):
        assert torch.equal(before[attribute], after[attribute]), attribute

    rows = list(iter_manifest(test))
    taxonomy = load_taxonomy("sleeve_length")
    truth = [taxonomy.normalize(r.values["sleeve_length"]) for r in rows]
    # the scope comes from the sleeve_length taxonomy, kept to the categories the base knows
    assert new.model.spec.attributes["sleeve_length"].applies_to == {"category": ["shirt", "dress"]}
    predictions = [p["sleeve_length"] for p in new.model.predict([row_to_product(r, test) for r in rows])]
    scored = [(p.label, t) for p, t in zip(predictions, truth, strict=True) if p.reason != "not_applicable"]
    predicted = [p for p, _ in scored]
    accuracy = sum(p == t for p, t in scored) / len(scored)
    assert len(scored) >= len(rows) // 3 and accuracy >= 0.8, (accuracy, predicted, truth)  # chance is 1/3

    # the same command again publishes the same head: its initial weights come from the seed
    again = _cli(["add-attribute", "sleeve_length", "--data", str(train), "--validation",
                  str(valid), "--base", "local://shop@base", "--push", "shop", "--tag", "v3",
                  "--epochs", "25", "--lr", "0.01", "--project-dir", str(tmp_path)], fashion_home)
    assert again.returncode == 0, again.stderr
    head = "heads/sleeve_length"
    assert load_bundle("local://shop@v3").index.components[head].fingerprint == new.index.components[head].fingerprint


def test_gate_refuses_a_harmful_finetune_and_publishes_nothing(base_model, tmp_path, fashion_home):
    revision, _ = base_model
    train = _sleeves(tmp_path / "sleeves", 60, 5, "train")
    result = _cli(["add-attribute", "sleeve_length", "--data", str(train), "--base",
                   "local://shop@base", "--push", "shop", "--strategy", "finetune", "--lr", "3",
                   "--epochs", "2", "--max-regression", "0.01",
                   "--project-dir", str(tmp_path)], fashion_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing was published" in result.stderr and "REGRESSED" in result.stdout
    assert "retrained: backbones/image" in result.stdout  # so "after" was evaluated again
    assert [r.id for r in LocalRegistry().list_revisions("shop")] == [revision.id]


def test_scaffold_writes_the_attribute_and_a_template(tmp_path):
    result = add_attribute("neckline", labels=["crew", "v_neck", "collar"],
                           synonyms={"V-Neck": "v_neck"}, project_dir=tmp_path)
    assert not result.published and result.labels == ["crew", "v_neck", "collar"]
    project = json.loads((tmp_path / "fashion-attributes.json").read_text())
    assert project["attributes"]["neckline"]["labels"] == ["crew", "v_neck", "collar"]
    template = tmp_path / "neckline-manifest.csv"
    assert template.read_text().splitlines()[0] == "id,images,title,description,brand,neckline"
    assert "fashion add-attribute neckline --data" in result.next_command


def test_scaffold_cli_prints_the_next_command(tmp_path, fashion_home):
    result = _cli(["add-attribute", "sleeve_length", "--project-dir", str(tmp_path)], fashion_home)
    assert result.returncode == 0, result.stderr
    assert "sleeveless, short, long" in result.stdout
    assert "next:" in result.stdout and "--data" in result.stdout


def test_labels_are_proposed_from_the_data_with_synonyms(tmp_path):
    path = _sleeves(tmp_path, 30, 0, "m")
    counts, unknown = propose_labels("sleeve_length", [path])
    assert counts == {"sleeveless": 10, "short": 10, "long": 10} and unknown == {}
    bad = write_manifest(tmp_path / "bad.csv", [{"id": "1", "title": "x", "sleeve_length": "elbow-ish"}])
    counts, unknown = propose_labels("sleeve_length", [bad])
    assert unknown == {"elbow-ish": 1}
    with pytest.raises(Exception, match="elbow-ish"):
        add_attribute("sleeve_length", data=[bad], base="unused", project_dir=tmp_path)


def test_options_come_as_a_config_object_or_keywords_and_bad_ones_are_named(tmp_path):
    from fashion.attributes.config import AddAttributeConfig
    from fashion.errors import ConfigError

    config = AddAttributeConfig(labels=["crew", "v_neck"], project_dir=tmp_path, head="linear")
    by_object = add_attribute("neckline", config)
    assert by_object.labels == ["crew", "v_neck"] and by_object.scaffolded
    # keywords override the object's fields
    by_both = add_attribute("neckline", config, labels=["crew", "v_neck", "collar"])
    assert by_both.labels == ["crew", "v_neck", "collar"]
    with pytest.raises(ConfigError, match=r"strategy: .*Accepted options: labels"):
        add_attribute("neckline", strategy="retrain-all", project_dir=tmp_path)
    with pytest.raises(ConfigError, match="colour: Extra inputs are not permitted"):
        add_attribute("neckline", {"colour": "red"})


def test_add_attribute_leaves_nothing_in_the_temp_folder_and_keeps_an_unpushed_bundle(
    base_model, tmp_path, fashion_home, monkeypatch
):
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    train = _sleeves(tmp_path / "sleeves", 60, 6, "train")
    options = {"data": [train], "base": "local://shop@base", "epochs": 2, "device": "cpu",
               "progress": False, "project_dir": tmp_path}
    valid = _sleeves(tmp_path / "sleeves", 30, 7, "val")
    pushed = add_attribute("sleeve_length", push="shop", tag="pushed", validation=[valid], **options)
    assert pushed.published and pushed.bundle_path is None
    assert list(temp.iterdir()) == []
    bundle = load_bundle("local://shop@pushed")
    assert bundle.model.attributes[-1] == "sleeve_length"
    # the card keeps the base's plots, names the model, and lists validation data as such
    card = (bundle.path / "README.md").read_text()
    for attribute in ("color", "category", "sleeve_length"):
        assert f"![{attribute} confusion matrix]" in card
    # the new attribute was calibrated on its validation rows: its reliability diagram too
    assert "![sleeve_length reliability diagram](plots/sleeve_length.reliability.png)" in card
    assert (bundle.path / "plots" / "sleeve_length.reliability.png").is_file()
    assert 'Predictor.from_pretrained("local://shop@latest")' in card
    training = card.split("## Training data")[1].split("##")[0]
    assert "sleeves/train.csv" in training and "val.csv" not in training
    assert "- sleeves/val.csv:" in card.split("## Validation data")[1]

    kept = add_attribute("sleeve_length", **options)
    assert not kept.published and kept.bundle_path == tmp_path / "sleeve_length-bundle"
    assert (kept.bundle_path / "fashion.json").is_file()
    again = add_attribute("sleeve_length", **options)  # never replaces the folder kept before
    assert again.bundle_path == tmp_path / "sleeve_length-bundle-2"
    assert list(temp.iterdir()) == []

    with pytest.raises(FashionError):  # a failed run cleans up too
        add_attribute("sleeve_length", **{**options, "base": "local://shop@no-such-tag"})
    assert list(temp.iterdir()) == []


PARTIAL_SPEC = {
    **TINY_SPEC,
    "views": {"full": {"name": "full", "options": {"size": 32}}},
    "backbones": {
        "image": {"name": "resnet18", "views": ["full"], "options": {"pretrained": False}},
        "text": {"name": "tiny_text", "options": {"dim": 32}},  # frozen by partial: wide enough
    },
}


@pytest.mark.slow
def test_partial_trains_the_top_block_keeps_the_rest_bit_identical_and_learns_the_new_attribute(
    tiny, tmp_path, fashion_home
):
    from fashion.training import Trainer

    # the base trains to convergence (category and color macro-F1 1.0 on 72 validation rows on
    # AVX2 and AVX512 kernels alike): at 12 epochs an AVX2 CPU left category at 0.82 and
    # retraining layer4 moved one row (-1.4 points), which the 0.01 gate rightly refused
    torch.manual_seed(0)
    train = make_catalog(tmp_path / "train", n_colors=30, n_categories=30, seed=0)
    val = make_catalog(tmp_path / "val", n_colors=72, n_categories=72, seed=1)
    base = Trainer(None, {
        "model": PARTIAL_SPEC,
        "datasets": [{"name": "colors", "path": train["colors"]},
                     {"name": "categories", "path": train["categories"]}],
        "validation": [{"name": "colors-val", "path": val["colors"]},
                       {"name": "categories-val", "path": val["categories"]}],
        "epochs": 20, "batch_size": 8, "device": "cpu", "precision": "fp32", "progress": False, "pretrained": False,
        "optimizer": {"lr_backbone": 0.01, "lr_head": 0.03, "weight_decay": 0.0},
        "output_dir": tmp_path / "run",
    }).fit()
    revision = LocalRegistry().publish(base.bundle_path, "shop", tag="base")
    data = tmp_path / "sleeves"
    train_csv, valid, test = (_sleeves(data, n, s, name) for n, s, name in
                              ((90, 2, "train"), (30, 3, "val"), (90, 4, "test")))
    result = _cli(["add-attribute", "sleeve_length", "--data", str(train_csv), "--validation",
                   str(valid), "--base", "local://shop@base", "--push", "shop", "--tag", "v2",
                   "--strategy", "partial", "--epochs", "20", "--lr", "0.003",
                   "--project-dir", str(tmp_path)], fashion_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published" in result.stdout

    old = load_bundle(f"local://shop@{revision.id}")
    new = load_bundle("local://shop@v2")
    assert new.model.attributes == ["color", "category", "sleeve_length"]
    gate = new.index.provenance.model_dump()["added_attribute"]["gate"]
    assert gate["passed"] and "backbones/image" in gate["changed_components"]  # evaluated again
    assert "backbones/text" not in gate["changed_components"]
    assert new.index.provenance.model_dump()["added_attribute"]["strategy"] == "partial"
    # below the cut (stem, layer1-3: weights and BatchNorm statistics) bit-identical; layer4 trained
    before, after = old.model.backbones["image"].state_dict(), new.model.backbones["image"].state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer4"}, changed
    assert new.model.backbones["image"].below_fingerprint("layer4") == old.model.backbones["image"].below_fingerprint("layer4")
    assert (new.index.components["backbones/text"].fingerprint == old.index.components["backbones/text"].fingerprint)

    # the new head learned: its top label on every test row (the scope, applies_to, rests on the
    # base's category head, which this short base training leaves weak)
    rows = list(iter_manifest(test))
    taxonomy = load_taxonomy("sleeve_length")
    truth = [taxonomy.normalize(r.values["sleeve_length"]) for r in rows]
    labels = new.model.spec.attributes["sleeve_length"].labels
    top = _logits(new.model, [row_to_product(r, test) for r in rows])["sleeve_length"].argmax(dim=1)
    accuracy = sum(labels[int(k)] == t for k, t in zip(top, truth, strict=True)) / len(rows)
    assert accuracy >= 0.8, accuracy  # chance is 1/3
