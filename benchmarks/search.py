"""Similarity search: exact FAISS vs HNSW vs numpy brute force, unfiltered and filtered.

The vectors (``search_dimension`` wide) are made by the recipe of faiss' own
``faiss.contrib.datasets.SyntheticDataset`` ("not completely random but still challenging to
index"): Gaussian points in 10 dimensions, a random linear map to 128 and a sine, then
L2-normalized. Its local intrinsic dimension (Levina-Bickel, k=20, at 2,000 points) is about
25, against about 7 for the multi-task vectors of the synthetic catalog's photos (the
``retrieval`` row measures it) and 55 for random unit vectors: harder than the product vectors
this SDK makes, and not structureless. Queries are new vectors of the same distribution (a
product that is not indexed). Random unit vectors, the worst case for a graph index, are
measured at one size (``search_random_size``).

Indexes are built through ``fashion.search.Index`` (HNSW from the first row, M and
efConstruction as ``fashion.search`` defaults, efSearch tuned by the index on products held out
of its graph, :mod:`fashion.search.tune`), so the HNSW cells are what a user gets. Per size:
build time (tuning included, and alone) and memory per vector (the serialized index over its
vectors) of ``IndexFlatIP`` and HNSW, per-query latency p50/p99 of one query at a time (what a
request does) for numpy brute force (``vectors @ q`` + ``argpartition``, what a user writes by
hand), exact FAISS and HNSW at the tuned efSearch, recall@10 against exact, and recall/latency
over a sweep of efSearch. At the largest size, the planned search of ``Index`` with filters
keeping 1%, 10% and 50% of the rows: latency, recall@10 against the exact filtered answer, the
plan it took, and filter violations (must be 0).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .common import Context, compare, result

NAME = "search"
TITLE = "Similarity search: exact FAISS vs HNSW vs numpy brute force, with filters"
K = 10
SELECTIVITIES = (0.01, 0.10, 0.50)
INTRINSIC = 10  # SyntheticDataset's "intrinsic dimension (more or less)"
LID_POINTS, LID_K = 2_000, 20


def structured(rng: np.random.Generator, n: int, d: int, chunk: int = 200_000) -> np.ndarray:
    """``n`` unit vectors by faiss' SyntheticDataset recipe (float32, made in chunks)."""
    project = rng.random((INTRINSIC, d)).astype(np.float32)
    scale = (rng.random(d) * 4 + 0.1).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = np.sin(rng.standard_normal((m, INTRINSIC), dtype=np.float32) @ project * scale)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def intrinsic_dimension(vectors: np.ndarray, k: int = LID_K, points: int = LID_POINTS,
                        seed: int = 0) -> float:
    """Median local intrinsic dimension (Levina-Bickel maximum likelihood over the ``k``
    nearest neighbours) of ``points`` vectors sampled from ``vectors``, measured among them."""
    rng = np.random.default_rng(seed)
    x = np.asarray(vectors, np.float64)
    x = x[rng.choice(len(x), min(points, len(x)), replace=False)]
    k = min(k, len(x) - 1)  # a few points (smoke sizes): fewer neighbours
    if k < 2:
        return float("nan")
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
    np.fill_diagonal(dist, np.inf)
    near = np.sort(dist, axis=1)[:, :k]
    near = np.maximum(near, 1e-12)
    estimate = -1.0 / np.mean(np.log(near[:, :-1] / near[:, -1:]), axis=1)
    return float(np.median(estimate))


def _timed(call: Any, queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    seconds, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        answers.append(call(q))
        seconds.append(time.perf_counter() - t0)
    return seconds, answers


def _ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q) * 1000.0)


def _recall(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    hits = sum(len(set(g.tolist()) & set(w.tolist())) for g, w in zip(got, want, strict=True))
    return hits / max(1, sum(len(w) for w in want))


def _numpy_top(vectors: np.ndarray, q: np.ndarray) -> np.ndarray:
    scores = vectors @ q
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top])]


def _index(ctx: Context, vectors: np.ndarray, masks: dict[float, np.ndarray]) -> tuple[Any, float, float]:
    """``fashion.search.Index`` of ``vectors`` (HNSW from the first row; one yes/no attribute per
    filter selectivity): the index, its build seconds, and the seconds of those spent tuning."""
    from fashion.search import Index
    from fashion.search.index import HnswParams
    from fashion.search.vectors import AttributeInfo, VectorsInfo

    s = ctx.sizes
    names = {p: f"keep{round(p * 100)}" for p in masks}
    info = VectorsInfo(model_revision="bench", dimension=vectors.shape[1],
                       attributes={name: AttributeInfo(labels=["yes", "no"]) for name in names.values()})
    index = Index(info, hnsw=HnswParams(m=s.search_m, ef_construction=s.search_ef_construction),
                  hnsw_threshold=1)
    tuning: list[float] = []
    measure = index._tune

    def timed(*args: Any) -> None:
        t0 = time.perf_counter()
        measure(*args)
        tuning.append(time.perf_counter() - t0)

    index._tune = timed  # type: ignore[method-assign]
    n = len(vectors)
    labels = {names[p]: np.where(m, "yes", "no").tolist() for p, m in masks.items()}
    t0 = time.perf_counter()
    index.add_arrays([str(i) for i in range(n)], vectors, labels,
                     {name: [1.0] * n for name in labels})
    return index, time.perf_counter() - t0, sum(tuning)


def _one_size(ctx: Context, n: int, rng: np.random.Generator, make: Any,
              masks: dict[float, np.ndarray] | None = None) -> tuple[dict[str, Any], Any]:
    import faiss

    from fashion.search.backend import flat_index, hnsw_search

    s = ctx.sizes
    d = s.search_dimension
    both = make(rng, n + s.search_queries, d)
    vectors, queries = both[:n], both[n:]
    t0 = time.perf_counter()
    flat = flat_index(d)
    flat.add(vectors)
    flat_build = time.perf_counter() - t0
    index, hnsw_build, tune_s = _index(ctx, vectors, masks or {})
    graph, order = index.faiss, np.array([int(i) for i in index.ids])
    ef = index.ef_search

    def hnsw(q: np.ndarray, ef: int = ef) -> np.ndarray:
        return order[hnsw_search(graph, q[None, :], K, ef_search=ef)[1][0]]

    brute_s, brute = _timed(lambda q: _numpy_top(vectors, q), queries)
    flat_s, exact = _timed(lambda q: flat.search(q[None, :], K)[1][0], queries)
    hnsw_s, approx = _timed(hnsw, queries)
    sweep = {}
    for step in s.search_ef_sweep:
        took, answers = _timed(lambda q, step=step: hnsw(q, step), queries)
        sweep[str(step)] = {"p50_ms": round(_ms(took, 50), 4), "recall_at_10": round(_recall(answers, exact), 4)}
    row = {
        "vectors": n,
        "ef_search": ef,
        "tuning": None if index.tuning is None else index.tuning.model_dump(),
        "hnsw_ef_sweep": sweep,
        "build_s": {"flat": round(flat_build, 3), "hnsw": round(hnsw_build, 2),
                    "hnsw_tuning": round(tune_s, 2)},
        "bytes_per_vector": {"flat": len(faiss.serialize_index(flat)) / n,
                             "hnsw": len(faiss.serialize_index(graph)) / n},
        "query_ms": {name: {"p50": round(_ms(t, 50), 4), "p99": round(_ms(t, 99), 4)}
                     for name, t in (("numpy", brute_s), ("flat", flat_s), ("hnsw", hnsw_s))},
        "recall_at_10": {"hnsw_vs_exact": round(_recall(approx, exact), 4),
                         "numpy_vs_exact": round(_recall(brute, exact), 4)},
    }
    return row, (vectors, queries, index)


def _filtered(vectors: np.ndarray, queries: np.ndarray, index: Any,
              masks: dict[float, np.ndarray]) -> dict[str, Any]:
    """The planned search of fashion.search.Index with filters of each selectivity."""
    from fashion.search.plan import exact as exact_rows

    n = len(vectors)
    out: dict[str, Any] = {}
    plain_s, plain = _timed(lambda q: index.search(q, K), queries)
    truth = [exact_rows(vectors, q, K, np.arange(n))[1] for q in queries]
    out["unfiltered"] = {"p50_ms": round(_ms(plain_s, 50), 4), "p99_ms": round(_ms(plain_s, 99), 4),
                         "recall_at_10": round(_recall([np.array([int(h.id) for h in a]) for a in plain], truth), 4)}
    for p, mask in masks.items():
        name = f"keep{round(p * 100)}"
        plans: dict[str, int] = {}

        def query(q: np.ndarray, name: str = name, plans: dict[str, int] = plans) -> list[Any]:
            explain: dict[str, Any] = {}
            hits = index.search(q, K, where={name: "yes"}, explain=explain)
            plans[explain["strategy"]] = plans.get(explain["strategy"], 0) + 1
            return hits

        took, answers = _timed(query, queries)
        rows = np.flatnonzero(mask)
        want = [exact_rows(vectors, q, K, rows)[1] for q in queries]
        got = [np.array([int(h.id) for h in a], dtype=np.int64) for a in answers]
        violations = sum(int((~mask[g]).sum()) for g in got)
        out[name] = {"selectivity": p, "first_ms": round(took[0] * 1000, 4),  # the filter's rows found
                     "p50_ms": round(_ms(took, 50), 4),
                     "p99_ms": round(_ms(took, 99), 4), "recall_at_10": round(_recall(got, want), 4),
                     "violations": violations, "plans": plans}
    return out


def run(ctx: Context) -> dict[str, Any]:
    from fashion.search.backend import faiss

    faiss().omp_set_num_threads(ctx.threads)
    s = ctx.sizes
    rng = np.random.default_rng(ctx.seed)
    lid = {"structured": round(intrinsic_dimension(structured(rng, LID_POINTS, s.search_dimension)), 1),
           "random": round(intrinsic_dimension(unit(rng, LID_POINTS, s.search_dimension)), 1)}
    ctx.log(f"  search: intrinsic dimension at {LID_POINTS} points: {lid}")
    rows, last = [], None
    largest = s.search_sizes[-1]
    masks = {p: rng.random(largest) < p for p in SELECTIVITIES}
    for n in s.search_sizes:
        ctx.log(f"  search: {n} structured vectors of {s.search_dimension} dimensions")
        row, last = _one_size(ctx, n, rng, structured, masks if n == largest else None)
        rows.append(row)
    ctx.log(f"  search: {s.search_random_size} random unit vectors (the worst case)")
    worst, _ = _one_size(ctx, s.search_random_size, rng, unit)
    vectors, queries, index = last  # type: ignore[misc]
    filtered = _filtered(vectors, queries, index, masks)
    big = rows[-1]
    q = big["query_ms"]
    n = big["vectors"]
    tuned = f"efSearch {big['ef_search']} (tuned by the index)"
    comparisons = [
        compare(f"HNSW vs numpy brute force, per query p50 at {n} vectors", sdk=1000 / q["hnsw"]["p50"],
                baseline=1000 / q["numpy"]["p50"], unit="queries/s", sdk_label="HNSW",
                baseline_label="numpy", target=10.0, note=tuned),
        compare(f"exact FAISS vs numpy brute force, per query p50 at {n} vectors",
                sdk=1000 / q["flat"]["p50"], baseline=1000 / q["numpy"]["p50"], unit="queries/s",
                sdk_label="IndexFlatIP", baseline_label="numpy"),
        compare(f"recall@10 of HNSW vs exact at {n} vectors, unfiltered",
                sdk=big["recall_at_10"]["hnsw_vs_exact"], baseline=1.0, unit="recall",
                sdk_label="HNSW", baseline_label="exact", target=0.95, note=tuned),
        compare(f"worst case, random unit vectors: recall@10 of HNSW at {worst['vectors']}",
                sdk=worst["recall_at_10"]["hnsw_vs_exact"], baseline=1.0, unit="recall",
                sdk_label="HNSW", baseline_label="exact",
                note=f"efSearch {worst['ef_search']} (tuned); "
                     f"{worst['query_ms']['numpy']['p50'] / worst['query_ms']['hnsw']['p50']:.1f}x "
                     "numpy per query"),
    ]
    for name, cell in filtered.items():
        if name == "unfiltered":
            continue
        comparisons.append(compare(
            f"recall@10 of the planned search vs exact, filter keeping {cell['selectivity']:.0%}",
            sdk=cell["recall_at_10"], baseline=1.0, unit="recall", sdk_label="planned",
            baseline_label="exact", target=0.95,
            note=f"plans {cell['plans']}; {cell['violations']} filter violations"))
    one = filtered["keep1"]
    comparisons.append(compare(
        "latency of a 1% filter vs unfiltered (p50)", sdk=one["p50_ms"],
        baseline=filtered["unfiltered"]["p50_ms"], unit="ms", sdk_label="1% filter",
        baseline_label="unfiltered", kind="max_ratio", target=2.0,
        note=f"the filter's first query {one['first_ms']:.1f} ms (its rows found, then kept by "
             "the index for the next queries)"))
    return result(
        NAME, TITLE, ctx,
        settings={"sizes": list(s.search_sizes), "random_size": s.search_random_size,
                  "dimension": s.search_dimension, "queries": s.search_queries, "k": K,
                  "vectors": "faiss SyntheticDataset recipe (10-d Gaussian, linear map, sine), "
                             "unit rows; queries: new vectors of the same distribution",
                  "hnsw": {"M": s.search_m, "efConstruction": s.search_ef_construction,
                           "efSearch": "tuned to recall@10 0.95 (fashion.search.tune)"},
                  "faiss_threads": ctx.threads},
        metrics={"intrinsic_dimension": lid, "sizes": rows, "random": worst, "filtered": filtered},
        comparisons=comparisons,
        size=f"{', '.join(str(n) for n in s.search_sizes)} structured unit vectors, "
             f"{s.search_random_size} random ones, {s.search_queries} queries",
        noise="latencies move +-20% between runs on a shared 2-core VM; recalls are exact counts",
        notes=[f"Intrinsic dimension (Levina-Bickel, k={LID_K}, {LID_POINTS} points): structured "
               f"{lid['structured']}, random {lid['random']}; the retrieval row measures the "
               "multi-task vectors'.",
               "Queries are new vectors of the indexed distribution (not indexed themselves).",
               "Filtered rows use fashion.search's planner: exact over few matching rows, "
               "HNSW with an IDSelectorBitmap and raised efSearch over many; p50/p99 are over "
               "queries that reuse the filter's rows, first_ms is the query that found them."],
    )
