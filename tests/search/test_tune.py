"""HNSW's efSearch measured on products held out of the graph (fashion.search.tune)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from fashion.search import Index  # noqa: E402
from fashion.search import tune as tune_module  # noqa: E402
from fashion.search.backend import hnsw_search  # noqa: E402
from fashion.search.index import HnswParams  # noqa: E402
from fashion.search.plan import exact  # noqa: E402
from fashion.search.tune import exact_neighbours, recall_per_query  # noqa: E402
from fashion.search.vectors import VectorsInfo  # noqa: E402

D = 32


def structured(n: int, seed: int, intrinsic: int = 12) -> np.ndarray:
    """Unit vectors on a curved manifold (faiss' SyntheticDataset recipe), hard enough that
    the tuned efSearch is above the first step."""
    rng = np.random.default_rng(seed)
    x = np.sin(rng.standard_normal((n, intrinsic)) @ np.random.default_rng(0).random((intrinsic, D)) * 2.0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(n: int, seed: int = 1, **hnsw: object) -> Index:
    index = Index(VectorsInfo(model_revision="r", dimension=D, attributes={}),
                  hnsw=HnswParams(m=8, ef_construction=40, **hnsw),  # type: ignore[arg-type]
                  hnsw_threshold=1000)
    index.add_arrays([f"p{i}" for i in range(n)], structured(n, seed), {}, {})
    return index


def fresh_recall(index: Index, queries: np.ndarray) -> float:
    got = [{h.id for h in index.search(q, 10)} for q in queries]
    want = [{index.ids[r] for r in exact(index.vectors, q, 10)[1]} for q in queries]
    return float(np.mean([len(g & w) / 10 for g, w in zip(got, want, strict=True)]))


def test_a_new_graph_is_tuned_on_products_held_out_of_it(tmp_path: Path) -> None:
    index = make(3000)
    t = index.tuning
    assert index.kind == "hnsw" and t is not None
    assert t.queries == 256 and t.rows == 3000 - 256 and t.k == 10 and t.target == 0.95
    assert t.reached and t.lower >= 0.95 and t.recall >= t.lower
    assert index.ef_search == t.ef_search and t.ef_search in tune_module.EF_STEPS
    assert len(index) == 3000  # the held-out products were added after tuning
    # the measured recall holds for queries the tuning never saw
    assert fresh_recall(index, structured(300, seed=7)) >= 0.93
    # the tuning is the smallest step: one step lower misses the target on the same queries
    held = np.asarray(index.vectors[-256:])
    inside = np.ones(len(index.ids), bool)
    inside[-256:] = False
    assert t.ef_search > tune_module.EF_STEPS[0]  # else the check below says nothing
    lower_step = tune_module.EF_STEPS[tune_module.EF_STEPS.index(t.ef_search) - 1]
    _, got = hnsw_search(index.faiss, held, 10, ef_search=lower_step, allowed=inside)
    per = recall_per_query(got, exact_neighbours(index.vectors, inside, held, 10))
    assert per.mean() - 2 * per.std(ddof=1) / np.sqrt(len(per)) < 0.95
    index.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["tuning"]["ef_search"] == t.ef_search and meta["hnsw"]["ef_search"] is None
    loaded = Index.load(tmp_path / "ix")
    assert loaded.tuning == t and loaded.ef_search == t.ef_search
    assert loaded.describe()["hnsw"]["ef_search_used"] == t.ef_search


def test_a_given_ef_search_is_used_as_given() -> None:
    index = make(1500, ef_search=77)
    assert index.tuning is None and index.ef_search == 77
    explain: dict[str, object] = {}
    index.search(index.vector("p0"), 5, explain=explain)
    assert explain["ef_search"] == 77


def test_a_target_no_step_reaches_is_recorded_and_warned(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(tune_module, "EF_STEPS", (10,))
    with caplog.at_level(logging.WARNING, logger="fashion.search"):
        index = make(1500, recall_target=0.9999)
    t = index.tuning
    assert t is not None and not t.reached and t.ef_search == 10 and t.lower < 0.9999
    assert "below the target" in caplog.text and "--hnsw-threshold" in caplog.text


def test_growth_by_a_quarter_tunes_again_with_the_products_being_added() -> None:
    index = make(1500)
    first = index.tuning
    assert first is not None
    index.add_arrays([f"q{i}" for i in range(20)], structured(20, 3), {}, {})
    assert index.tuning is first  # few products, small growth: kept
    index.add_arrays([f"r{i}" for i in range(400)], structured(400, 4), {}, {})
    second = index.tuning
    assert second is not None and second is not first
    assert second.rows == 1520 and second.queries == 256  # measured before they joined the graph
    assert len(index) == 1920


def test_exact_neighbours_by_blocks_leave_dead_rows_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tune_module, "EXACT_BLOCK", 37)
    vectors = structured(200, 5)
    live = np.ones(200, bool)
    live[::3] = False
    queries = structured(9, 6)
    got = exact_neighbours(vectors, live, queries, 7)
    for q, rows in zip(queries, got, strict=True):
        want = exact(vectors, q, 7, np.flatnonzero(live))[1]
        assert sorted(rows.tolist()) == sorted(want.tolist())
    few = np.zeros(200, bool)
    few[[4, 5]] = True
    assert (exact_neighbours(vectors, few, queries[:1], 4)[0] == -1).sum() == 2
