"""Fixtures of the search tests: a tiny bundle, a small photo manifest, vectors files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tiny_model import image, make_model

COLORS = ["red", "blue"]


@pytest.fixture(autouse=True)
def _faiss_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHION_SEARCH_THREADS", "1")


@pytest.fixture
def bundle(tiny: object, tmp_path: Path) -> Path:
    from fashion.registry import save_bundle

    return save_bundle(make_model(0), tmp_path / "bundle")


def photo_manifest(folder: Path, n: int = 24, bad: Sequence[int] = ()) -> Path:
    """``n`` products in two colours (shades differ) and titles; rows in ``bad`` name a photo
    that does not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = COLORS[i % 2]
        shade = (200 + i, 30 + i, 30) if name == "red" else (30, 40 + i, 200 + i)
        path = folder / f"{i}.png"
        if i not in bad:
            image(shade).save(path)  # type: ignore[arg-type]
        lines.append({"id": f"p{i}", "image": str(path), "title": f"{name} dress {i}"})
    manifest = folder / "products.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return manifest


def random_vectors(path: Path, n: int, *, dimension: int = 16, revision: str = "r1",
                   seed: int = 0, start: int = 0) -> Path:
    """A vectors file of random unit vectors with random colours and scores (no model)."""
    import pyarrow.parquet as pq

    from fashion.search.vectors import AttributeInfo, VectorsInfo, records_table

    rng = np.random.default_rng(seed)
    info = VectorsInfo(model_revision=revision, dimension=dimension, attributes={
        "color": AttributeInfo(labels=["red", "blue", "black", "green"], min_score=0.3),
        "style": AttributeInfo(labels=["a", "b", "c"], multilabel=True)})
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records: list[dict[str, Any]] = []
    for i in range(n):
        color = ["red", "blue", "black", "green"][int(rng.integers(4))]
        style = [s for s in "abc" if rng.random() < 0.4]
        records.append({"id": f"v{start + i}", "row": i + 1, "vector": vectors[i], "attributes": {
            "color": (None if rng.random() < 0.05 else color, float(rng.random())),
            "style": (style, float(rng.random()))}})
    pq.write_table(records_table(info, records), path)
    return path


@pytest.fixture
def cli_main() -> Iterator[Any]:
    from fashion.cli import main

    yield main
