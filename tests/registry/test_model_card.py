"""The model card (the bundle's README, what the Hub shows): a load example that runs, validation
and test metrics labeled as such, the model's name, and data sections that say what each set was."""

from __future__ import annotations

import re

import yaml

from fashion.registry import LocalRegistry, load_bundle
from tests.mdmt_data import make_catalog
from tests.tiny_plugin import TINY_SPEC


def test_the_card_names_the_model_runs_its_example_and_separates_validation_from_test(
    tiny, tmp_path, fashion_home
):
    from fashion.training import Trainer

    train = make_catalog(tmp_path / "train", seed=0)
    val = make_catalog(tmp_path / "val", n_colors=20, n_categories=20, seed=1)
    test = make_catalog(tmp_path / "test", n_colors=20, n_categories=20, seed=2)
    result = Trainer(None, {
        "model": TINY_SPEC, "name": "local://shop",
        "datasets": [{"name": "colors", "path": train["colors"]},
                     {"name": "categories", "path": train["categories"]}],
        "validation": [{"name": "colors-val", "path": val["colors"]},
                       {"name": "categories-val", "path": val["categories"]}],
        "test": [{"name": "colors-test", "path": test["colors"]},
                 {"name": "categories-test", "path": test["categories"]}],
        "epochs": 2, "batch_size": 8, "device": "cpu", "progress": False,
        "output_dir": tmp_path / "run",
    }).fit()
    assert set(result.test_evaluation.attributes) == {"color", "category"}
    card = (result.bundle_path / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    (entry,) = front["model-index"]
    assert entry["name"] == "shop"
    splits = {(r["dataset"]["split"], m["type"]) for r in entry["results"] for m in r["metrics"]}
    assert splits == {(s, t) for s in ("validation", "test") for t in ("accuracy", "macro_f1")}
    assert {r["dataset"]["name"] for r in entry["results"]} == {
        "colors-val, categories-val", "colors-test, categories-test"}

    body = card.split("---", 2)[2]
    assert "| attribute | validation accuracy | validation macro-F1 | test accuracy | test macro-F1 |" in body
    metrics_table = body.split("## Metrics")[1].split("##")[0]
    assert "support" not in metrics_table and "multilabel" not in metrics_table
    training = body.split("## Training data")[1].split("##")[0]
    assert "colors:" in training and "-val" not in training and "-test" not in training
    assert "- colors-val:" in body.split("## Validation data")[1]
    assert "- colors-test:" in body.split("## Test data")[1]
    assert "docs/" not in card

    # the load example, as printed, runs once the model is published under its name
    LocalRegistry().publish(result.bundle_path, "shop")
    code = re.search(r"```python\n(.*?)```", body, re.S).group(1)
    assert 'Predictor.from_pretrained("local://shop@latest")' in code
    title = re.search(r'"title": "([^"]+)"', code).group(1)
    known = [label for a in load_bundle("local://shop@latest").index.attributes.values() for label in a.labels]
    assert all(word in known for word in title.split())
    exec(compile(code, "README.md", "exec"), {})
