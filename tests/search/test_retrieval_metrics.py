"""The retrieval-quality bench's metrics (P@k, MRR, In-Shop galleries) on cases worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _unit(*rows: list[float]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_same_product_ranks_exclude_the_query_photo_and_count_the_first_hit() -> None:
    from benchmarks.retrieval import evaluate

    # photos 0,1 of product 0; photo 2 of product 1; photos 3,4 of product 2
    vectors = _unit([1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [-0.2, 1])
    owner = np.array([0, 0, 1, 2, 2])
    kinds = np.array([0, 0, 0, 1, 1])  # products 0 and 1 share category and pattern
    got = evaluate(vectors, owner, kinds)["same_product"]
    # queries: photos of products with 2+ photos (0, 1, 3, 4), product 1's single photo is none.
    # photo 0: neighbours by score 2 (0.95,.05), 1 -> first same-product hit at rank 2
    # photo 1: 2 then 0 -> rank 2; photo 3: 4 first -> rank 1; photo 4: 3 first -> rank 1
    assert got["queries"] == 4
    assert got["p_at_1"] == pytest.approx(0.5)
    assert got["mrr"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)


def test_attribute_retrieval_leaves_the_query_product_out_of_the_gallery() -> None:
    from benchmarks.retrieval import evaluate

    vectors = _unit([1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [-0.2, 1])
    owner = np.array([0, 0, 1, 2, 2])
    kinds = np.array([0, 0, 0, 1, 1])
    got = evaluate(vectors, owner, kinds)["attribute"]
    # photo 0 and 1: gallery without product 0 -> photo 2 first (same kind): rank 1
    # photo 2: gallery 0,1,3,4 -> 0 or 1 first (same kind): rank 1, and 2 of its top 10 are hits
    # photos 3 and 4: the only photos of their kind are their own product's -> no hit, MRR 0
    assert got["queries"] == 5
    assert got["p_at_1"] == pytest.approx(3 / 5)
    assert got["mrr"] == pytest.approx(3 / 5)
    assert got["p_at_10"] == pytest.approx((1 + 1 + 2) / 10 / 5)


def test_an_identical_duplicate_elsewhere_ranks_first_but_never_the_query_itself() -> None:
    from benchmarks.retrieval import ranks

    vectors = _unit([1, 0], [1, 0], [0, 1])
    r = ranks(vectors, np.zeros((3, 3), bool))
    assert np.isinf(np.diag(r)).all()
    assert r[0, 1] == 1 and r[0, 2] == 2


def test_the_retrieval_row_runs_at_smoke_sizes(tmp_path: Path) -> None:
    import torch

    from benchmarks import MEASUREMENTS
    from benchmarks.common import SMOKE, Context
    from benchmarks.retrieval import run

    assert "retrieval" in MEASUREMENTS
    ctx = Context(sizes=SMOKE, out=tmp_path, work=tmp_path, device=torch.device("cpu"), threads=1,
                  log=lambda _: None)
    data = run(ctx)
    for vector in ("multi_task", "emphasized", "imagenet"):
        cells = data["metrics"][vector]
        assert set(cells) == {"same_product", "attribute"}
        assert 0.0 <= cells["same_product"]["mrr"] <= 1.0
        assert cells["attribute"]["queries"] == data["settings"]["photos"]
    assert [r["verdict"] in {"met", "missed"} for r in data["comparisons"]] == [True] * 4
    assert all("paired difference" in r["note"] for r in data["comparisons"])
    assert "reciprocal" not in data["metrics"]["multi_task"]  # per-query arrays stay out
    assert data["settings"]["emphasized"]["embedding_dim"] > data["settings"]["embedding_dim"]
    lid = data["metrics"]["intrinsic_dimension"]
    assert lid["points"] == data["settings"]["photos"]
    assert set(lid) == {"multi_task", "imagenet", "search_stand_in", "random_unit", "points", "k"}


def test_paired_difference_and_its_standard_error() -> None:
    import numpy as np

    from benchmarks.retrieval import paired

    a, b = np.array([1.0, 0.5, 0.0, 1.0]), np.array([0.5, 0.5, 0.0, 0.0])
    delta, se = paired(a, b)
    assert delta == 0.375 and abs(se - np.std([0.5, 0, 0, 1], ddof=1) / 2) < 1e-12


def test_intrinsic_dimension_recovers_a_known_dimension() -> None:
    import numpy as np

    from benchmarks.search import intrinsic_dimension

    rng = np.random.default_rng(0)
    flat = np.zeros((1500, 64))
    flat[:, :4] = rng.standard_normal((1500, 4))  # a 4-dimensional Gaussian inside 64 dimensions
    assert 3.3 < intrinsic_dimension(flat) < 4.7
    assert intrinsic_dimension(rng.standard_normal((1500, 32))) > 2 * intrinsic_dimension(flat)
    assert np.isnan(intrinsic_dimension(flat[:2]))  # too few points for any neighbours
