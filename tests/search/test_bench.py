"""The bench row `search` at smoke sizes: it runs, fills every cell and never violates a filter
(numbers at these sizes mean nothing)."""

from __future__ import annotations

from pathlib import Path

import torch


def test_search_bench_row_at_smoke_sizes(tmp_path: Path) -> None:
    from benchmarks import MEASUREMENTS
    from benchmarks.common import SMOKE, Context
    from benchmarks.search import run

    assert "search" in MEASUREMENTS
    ctx = Context(sizes=SMOKE, out=tmp_path, work=tmp_path, device=torch.device("cpu"), threads=1,
                  log=lambda _: None)
    data = run(ctx)
    sizes = data["metrics"]["sizes"]
    assert [s["vectors"] for s in sizes] == list(SMOKE.search_sizes)
    for size in sizes:
        assert set(size["query_ms"]) == {"numpy", "flat", "hnsw"}
        assert size["recall_at_10"]["numpy_vs_exact"] == 1.0  # both exact
        assert size["bytes_per_vector"]["hnsw"] > size["bytes_per_vector"]["flat"] >= 4 * 128
    assert sizes[-1]["tuning"]["queries"] == 256  # 2,000 rows: the index tuned efSearch
    assert sizes[-1]["ef_search"] == sizes[-1]["tuning"]["ef_search"]
    lid = data["metrics"]["intrinsic_dimension"]
    assert 5 < lid["structured"] < lid["random"]  # the stand-in has structure random ones lack
    assert data["metrics"]["random"]["vectors"] == SMOKE.search_random_size
    filtered = data["metrics"]["filtered"]
    assert {c["selectivity"] for k, c in filtered.items() if k != "unfiltered"} == {0.01, 0.1, 0.5}
    assert all(c["violations"] == 0 and c["first_ms"] > 0 for k, c in filtered.items() if k != "unfiltered")
    assert all(r["verdict"] in {"met", "missed", "info"} for r in data["comparisons"])
