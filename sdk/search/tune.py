"""HNSW's ``efSearch`` chosen by measurement on the index's own products.

How many candidates a graph search must visit to find the true nearest neighbours depends on
the vectors, not on the library: on vectors with the structure of image features a few dozen
suffice at a million rows, while on random unit vectors (no structure) even 512 misses a third
of them. A fixed default is therefore either slow or wrong. :func:`tune_ef_search` takes
products that are **not in the graph** as queries (a product of the graph finds itself and then
its own graph links, its neighbours by construction: measured, that reads recall 0.97 where new
queries get 0.35), finds their exact top ``k`` and picks the smallest ``efSearch`` of
:data:`EF_STEPS` whose recall@k reaches the target **at its lower confidence bound** (mean minus
two standard errors over the queries), so a lucky sample does not pick a value that misses the
target on others. :class:`~fashion.search.index.Index` holds :data:`TUNE_QUERIES` products out
when it builds a graph, tunes with them, then adds them; when an HNSW index has grown by a
quarter since, it tunes again with a sample of the products being added, before adding them.

The measurement is recorded in the index (``index.json``: ``tuning``) and shown by
``fashion index build``; an explicit ``ef_search`` (``--ef-search``) is used as given.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fashion._util.config import StrictModel
from fashion.search import backend

EF_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
TUNE_QUERIES = 256  # products held out of a new graph to tune it
MIN_QUERIES = 32  # fewer new products than this: no retuning on this add
TUNE_K = 10
EXACT_BLOCK = 65_536  # rows scored at a time for the exact answer (256 queries: 64 MiB)


class Tuning(StrictModel):
    """What :func:`tune_ef_search` measured (recorded in ``index.json``)."""

    ef_search: int = Field(ge=1)
    target: float = Field(gt=0, lt=1)
    recall: float = Field(ge=0, le=1)  # mean recall@k over the queries at ef_search
    lower: float  # recall minus two standard errors: what had to reach the target
    reached: bool
    queries: int = Field(ge=1)
    k: int = Field(ge=1)
    rows: int = Field(ge=1)  # live rows when measured


def exact_neighbours(vectors: np.ndarray, live: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """For each query, the ``k`` live rows of ``vectors`` with the largest inner product:
    ``(len(queries), k)`` row numbers (-1 where fewer exist)."""
    q = np.ascontiguousarray(queries, np.float32).T
    best_s = np.full((q.shape[1], k), -np.inf, np.float32)
    best_r = np.full((q.shape[1], k), -1, np.int64)
    for start in range(0, len(vectors), EXACT_BLOCK):
        block = (np.asarray(vectors[start:start + EXACT_BLOCK]) @ q).T  # (queries, block)
        block[:, ~live[start:start + EXACT_BLOCK]] = -np.inf
        scores = np.concatenate([best_s, block], axis=1)
        ids = np.concatenate([best_r, np.broadcast_to(np.arange(start, start + block.shape[1]),
                                                      block.shape)], axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(scores, keep, axis=1)
        best_r = np.take_along_axis(ids, keep, axis=1)
    best_r[~np.isfinite(best_s)] = -1
    return best_r


def recall_per_query(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Share of each query's true neighbours (rows of ``want``, -1 = none) found in ``got``."""
    out = np.empty(len(want))
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        truth = set(w[w >= 0].tolist())
        out[i] = len(truth & set(g.tolist())) / len(truth) if truth else 1.0
    return out


def tune_ef_search(index: object, vectors: np.ndarray, live: np.ndarray, queries: np.ndarray, *,
                   target: float, k: int = TUNE_K) -> Tuning:
    """The smallest ``efSearch`` of :data:`EF_STEPS` whose recall@``k`` for ``queries`` (unit
    vectors of products *not* in the graph) reaches ``target`` at its lower bound; the largest
    step when none does (``reached`` False)."""
    rows = int(live.sum())
    k = max(1, min(k, rows))
    want = exact_neighbours(vectors, live, queries, k)
    allowed = None if bool(live.all()) else live
    q = np.ascontiguousarray(queries, np.float32)
    ef, mean, lower = EF_STEPS[-1], 0.0, 0.0
    for ef in (step for step in EF_STEPS if step >= k):
        _, got = backend.hnsw_search(index, q, k, ef_search=ef, allowed=allowed)
        per = recall_per_query(got, want)
        mean = float(per.mean())
        lower = mean - 2.0 * float(per.std(ddof=1)) / np.sqrt(len(per)) if len(per) > 1 else mean
        if lower >= target:
            break
    return Tuning(ef_search=ef, target=target, recall=round(mean, 4), lower=round(lower, 4),
                  reached=lower >= target, queries=len(q), k=k, rows=rows)


__all__ = ["EF_STEPS", "MIN_QUERIES", "TUNE_QUERIES", "Tuning", "exact_neighbours", "recall_per_query", "tune_ef_search"]
