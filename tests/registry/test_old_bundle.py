"""A bundle written before the layered package (fashion 0.1.0, commit cd4e6f4) still loads and
predicts what it predicted then (tests/fixtures/bundle-0.1.0/README.txt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fashion import Predictor
from fashion.registry import load_bundle, read_index, verify_bundle
from tests.tiny_model import assert_close_predictions, products

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bundle-0.1.0"


def test_a_bundle_written_by_0_1_0_loads_and_predicts_as_it_did(tiny, tmp_path):
    bundle = shutil.copytree(FIXTURE / "bundle", tmp_path / "bundle")
    index = read_index(bundle)
    assert index.sdk_version == "0.1.0"
    verify_bundle(bundle)  # every file's sha256 as recorded then
    loaded = load_bundle(bundle)
    assert sorted(loaded.model.attributes) == ["category", "color", "pattern"]
    expected = json.loads((FIXTURE / "predictions.json").read_text(encoding="utf-8"))
    got = [r.to_dict() for r in Predictor.from_pretrained(str(bundle)).predict(products())]
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    assert_close_predictions(got, expected, tol=1e-4)
