"""Similarity search: exact FAISS vs HNSW vs numpy brute force, unfiltered and filtered.

Random unit vectors (``search_dimension`` wide) at each of ``search_sizes``; queries are indexed
vectors with Gaussian noise added and renormalized (a "more like this" query has near
neighbours; a random query in 128 dimensions has none, and every method's recall is then
meaningless). Per size: build time and memory per vector (the serialized index over its
vectors) of ``IndexFlatIP`` and ``IndexHNSWFlat`` (the M and efConstruction of
``fashion.search``), per-query latency p50/p99 of one query at a time (what a request does) for
numpy brute force (``vectors @ q`` + ``argpartition``, what a user writes by hand), exact FAISS
and HNSW, recall@10 of HNSW against exact. At the largest size, the planned search of
``fashion.search.Index`` with filters keeping 1%, 10% and 50% of the rows: latency, recall@10
against the exact filtered answer, the plan it took, and filter violations (must be 0).
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


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _queries(rng: np.random.Generator, vectors: np.ndarray, n: int, noise: float) -> np.ndarray:
    picked = vectors[rng.integers(0, len(vectors), n)]
    q = picked + rng.standard_normal(picked.shape, dtype=np.float32) * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


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


def _one_size(ctx: Context, n: int, rng: np.random.Generator) -> tuple[dict[str, Any], Any]:
    import faiss

    from fashion.search.backend import flat_index, hnsw_index

    s = ctx.sizes
    d = s.search_dimension
    vectors = _unit(rng, n, d)
    queries = _queries(rng, vectors, s.search_queries, s.search_noise)
    t0 = time.perf_counter()
    flat = flat_index(d)
    flat.add(vectors)
    flat_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    hnsw = hnsw_index(d, s.search_m, s.search_ef_construction)
    hnsw.add(vectors)
    hnsw_build = time.perf_counter() - t0
    hnsw.hnsw.efSearch = s.search_ef_search
    brute_s, brute = _timed(lambda q: _numpy_top(vectors, q), queries)
    flat_s, exact = _timed(lambda q: flat.search(q[None, :], K)[1][0], queries)
    hnsw_s, approx = _timed(lambda q: hnsw.search(q[None, :], K)[1][0], queries)
    sweep = {}
    for ef in s.search_ef_sweep:
        hnsw.hnsw.efSearch = ef
        took, answers = _timed(lambda q: hnsw.search(q[None, :], K)[1][0], queries)
        sweep[str(ef)] = {"p50_ms": round(_ms(took, 50), 4), "recall_at_10": round(_recall(answers, exact), 4)}
    hnsw.hnsw.efSearch = s.search_ef_search
    row = {
        "vectors": n,
        "hnsw_ef_sweep": sweep,
        "build_s": {"flat": round(flat_build, 3), "hnsw": round(hnsw_build, 2)},
        "bytes_per_vector": {"flat": len(faiss.serialize_index(flat)) / n,
                             "hnsw": len(faiss.serialize_index(hnsw)) / n},
        "query_ms": {name: {"p50": round(_ms(t, 50), 4), "p99": round(_ms(t, 99), 4)}
                     for name, t in (("numpy", brute_s), ("flat", flat_s), ("hnsw", hnsw_s))},
        "recall_at_10": {"hnsw_vs_exact": round(_recall(approx, exact), 4),
                         "numpy_vs_exact": round(_recall(brute, exact), 4)},
    }
    return row, (vectors, queries, hnsw)


def _filtered(ctx: Context, vectors: np.ndarray, queries: np.ndarray, hnsw: Any,
              rng: np.random.Generator) -> dict[str, Any]:
    """The planned search of fashion.search.Index with filters of each selectivity."""
    from fashion.search import Index
    from fashion.search.index import HnswParams
    from fashion.search.plan import exact as exact_rows
    from fashion.search.vectors import AttributeInfo, VectorsInfo

    s = ctx.sizes
    n = len(vectors)
    names = {p: f"keep{round(p * 100)}" for p in SELECTIVITIES}
    info = VectorsInfo(model_revision="bench", dimension=vectors.shape[1], attributes={
        name: AttributeInfo(labels=["yes", "no"]) for name in names.values()})
    index = Index(info, hnsw=HnswParams(m=s.search_m, ef_construction=s.search_ef_construction,
                                        ef_search=s.search_ef_search), hnsw_threshold=1)
    index.faiss = hnsw  # the graph built above (same vectors, same parameters)
    masks = {p: rng.random(n) < p for p in SELECTIVITIES}
    ids = [str(i) for i in range(n)]
    index.ids, index.images = ids, [None] * n
    index.live = np.ones(n, bool)
    index.position = {pid: i for i, pid in enumerate(ids)}
    for p, name in names.items():
        index.attributes.codes[name] = np.where(masks[p], 0, 1).astype(np.int32)
        index.attributes.scores[name] = np.ones(n, np.float32)
    out: dict[str, Any] = {}
    plain_s, plain = _timed(lambda q: index.search(q, K), queries)
    truth = [exact_rows(vectors, q, K, np.arange(n))[1] for q in queries]
    out["unfiltered"] = {"p50_ms": round(_ms(plain_s, 50), 4), "p99_ms": round(_ms(plain_s, 99), 4),
                         "recall_at_10": round(_recall([np.array([int(h.id) for h in a]) for a in plain], truth), 4)}
    for p, name in names.items():
        plans: dict[str, int] = {}

        def query(q: np.ndarray, name: str = name, plans: dict[str, int] = plans) -> list[Any]:
            explain: dict[str, Any] = {}
            hits = index.search(q, K, where={name: "yes"}, explain=explain)
            plans[explain["strategy"]] = plans.get(explain["strategy"], 0) + 1
            return hits

        took, answers = _timed(query, queries)
        rows = np.flatnonzero(masks[p])
        want = [exact_rows(vectors, q, K, rows)[1] for q in queries]
        got = [np.array([int(h.id) for h in a]) for a in answers]
        violations = sum(int((~masks[p][g]).sum()) for g in got)
        out[name] = {"selectivity": p, "p50_ms": round(_ms(took, 50), 4),
                     "p99_ms": round(_ms(took, 99), 4), "recall_at_10": round(_recall(got, want), 4),
                     "violations": violations, "plans": plans}
    return out


def run(ctx: Context) -> dict[str, Any]:
    from fashion.search.backend import faiss

    faiss().omp_set_num_threads(ctx.threads)
    s = ctx.sizes
    rng = np.random.default_rng(ctx.seed)
    rows, last = [], None
    for n in s.search_sizes:
        ctx.log(f"  search: {n} vectors of {s.search_dimension} dimensions")
        row, last = _one_size(ctx, n, rng)
        rows.append(row)
    vectors, queries, hnsw = last  # type: ignore[misc]
    filtered = _filtered(ctx, vectors, queries, hnsw, rng)
    big = rows[-1]
    q = big["query_ms"]
    n = big["vectors"]
    comparisons = [
        compare(f"HNSW vs numpy brute force, per query p50 at {n} vectors", sdk=1000 / q["hnsw"]["p50"],
                baseline=1000 / q["numpy"]["p50"], unit="queries/s", sdk_label="HNSW",
                baseline_label="numpy", target=10.0),
        compare(f"exact FAISS vs numpy brute force, per query p50 at {n} vectors",
                sdk=1000 / q["flat"]["p50"], baseline=1000 / q["numpy"]["p50"], unit="queries/s",
                sdk_label="IndexFlatIP", baseline_label="numpy"),
        compare(f"recall@10 of HNSW vs exact at {n} vectors, unfiltered",
                sdk=big["recall_at_10"]["hnsw_vs_exact"], baseline=1.0, unit="recall",
                sdk_label="HNSW", baseline_label="exact", target=0.95),
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
        baseline_label="unfiltered", kind="max_ratio", target=2.0))
    return result(
        NAME, TITLE, ctx,
        settings={"sizes": list(s.search_sizes), "dimension": s.search_dimension,
                  "queries": s.search_queries, "query_noise": s.search_noise, "k": K,
                  "hnsw": {"M": s.search_m, "efConstruction": s.search_ef_construction,
                           "efSearch": s.search_ef_search}, "faiss_threads": ctx.threads},
        metrics={"sizes": rows, "filtered": filtered},
        comparisons=comparisons,
        size=f"{', '.join(str(n) for n in s.search_sizes)} random unit vectors, "
             f"{s.search_queries} queries",
        noise="latencies move +-20% between runs on a shared 2-core VM; recalls are exact counts",
        notes=["Queries are indexed vectors plus Gaussian noise (a near neighbour exists).",
               "Filtered rows use fashion.search's planner: exact over few matching rows, "
               "HNSW with an IDSelectorBitmap and raised efSearch over many."],
    )
