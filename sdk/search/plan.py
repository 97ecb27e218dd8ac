"""Filtered similarity search, planned per query by the filter's selectivity.

- No filter: exact inner products over every row (numpy over the ``IndexFlatIP`` storage,
  measured faster per single query than ``IndexFlatIP.search`` here), or HNSW at ``efSearch``.
- A filter keeping few rows (at most ``EXACT_ROWS`` rows or ``EXACT_SELECTIVITY`` of them) or
  an exact index: exact inner products over the matching rows only. Filtered HNSW loses its
  recall there, and the exact scan is cheap because the rows are few.
- Otherwise HNSW restricted by an ``IDSelectorBitmap`` with ``efSearch`` raised by 1/selectivity
  (capped at ``EF_CAP``); when fewer than ``k`` rows come back, exact over the matching rows.

Every answer is checked against the filter before it is returned: a row that does not match
is never returned, whatever the graph did.

The rows a filter keeps (:class:`Selection`: the bitmap, and for an exact plan the row numbers
and their vectors copied contiguous) are computed once and kept by the index for the next
queries with the same filter (``SELECTION_CACHE`` filters, at most ``SELECTION_BYTES`` of
vectors), until the index changes: a filter's first query scans every row's labels and gathers
its rows' vectors; the following ones only score them.

``change`` ("this, but in black"): the rows must match the change too, and they are ranked by
``(1 + similarity) / 2 * mean score of the changed attributes`` over the ``4k`` most similar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fashion.errors import ConfigError
from fashion.search import backend
from fashion.search.filters import parse_conditions

EXACT_ROWS = 20_000
EXACT_SELECTIVITY = 0.02
EF_CAP = 4096
SELECTION_CACHE = 8  # filters whose rows an index keeps for the next queries
SELECTION_BYTES = 256 * 2**20  # at most this many bytes of their vectors


@dataclass
class Hit:
    id: str
    score: float  # cosine similarity to the query
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    rank: float | None = None  # with change: the re-ranking score
    image: str | None = None  # the product's first image (path or URL), when embedded from one

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "score": round(self.score, 6), "attributes": self.attributes}
        out |= {} if self.rank is None else {"rank": round(self.rank, 6)}
        return out | ({} if self.image is None else {"image": self.image})


@dataclass
class Plan:
    strategy: str  # "index", "exact", "hnsw-filtered", "hnsw-filtered+exact"
    candidates: int  # rows the filter keeps
    ef_search: int | None = None


def exact(vectors: np.ndarray, query: np.ndarray, k: int,
          rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``rows`` (None: all) with the largest inner product (scores, rows),
    best first."""
    if rows is None:
        rows = np.arange(len(vectors))
        scores = vectors @ query
    elif len(rows) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    else:
        scores = np.take(vectors, rows, axis=0) @ query  # take: faster than fancy indexing
    k = min(k, len(rows))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    top = top[np.argsort(-scores[top], kind="stable")]
    return scores[top], rows[top]


@dataclass
class Selection:
    """The live rows a filter keeps: ``allowed`` None when that is every row of the index."""

    allowed: np.ndarray | None
    count: int
    rows: np.ndarray | None = None  # the kept rows, when the plan is exact
    matrix: np.ndarray | None = None  # their vectors, contiguous (when the index keeps them)

    @property
    def nbytes(self) -> int:
        return 0 if self.matrix is None else int(self.matrix.nbytes)


def select_rows(index: Any, mask: np.ndarray | None) -> Selection:
    """The :class:`Selection` of ``mask & live`` (``mask`` None: every live row)."""
    live = index.live
    allowed = live if mask is None else (live & mask)
    count, total = int(allowed.sum()), len(live)
    if mask is None and count == total:
        return Selection(None, count)
    if index.kind == "flat" or count <= EXACT_ROWS or count <= EXACT_SELECTIVITY * total:
        return Selection(allowed, count, np.flatnonzero(allowed))
    return Selection(allowed, count)


def planned(index: Any, query: np.ndarray, k: int, selection: Selection) -> tuple[np.ndarray, np.ndarray, Plan]:
    """The ``k`` best rows of ``selection``."""
    allowed, count, total = selection.allowed, selection.count, len(index.live)
    if count == 0 or k < 1:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), Plan("exact", count)
    vectors = index.vectors
    if allowed is None and index.kind == "flat":  # nothing to leave out
        scores, rows = exact(vectors, query, k)
        return scores, rows, Plan("exact", count)
    if allowed is None:
        ef = max(index.ef_search, k)
        scores, rows = backend.hnsw_search(index.faiss, query[None, :], min(k, total), ef_search=ef)
        plan = Plan("index", count, ef)
        scores, rows = scores[0], rows[0]
    elif selection.rows is not None:
        if selection.matrix is not None:  # kept contiguous by the index: no gather
            scores, top = exact(selection.matrix, query, k)
            return scores, selection.rows[top], Plan("exact", count)
        scores, rows = exact(vectors, query, k, selection.rows)
        return scores, rows, Plan("exact", count)
    else:
        ef = int(min(EF_CAP, max(index.ef_search, k) * total / count))
        scores, rows = backend.hnsw_search(index.faiss, query[None, :], k, ef_search=ef,
                                           allowed=allowed)
        plan = Plan("hnsw-filtered", count, ef)
        scores, rows = scores[0], rows[0]
    keep = rows >= 0
    scores, rows = scores[keep], rows[keep]
    keep = (index.live if allowed is None else allowed)[rows]  # never a row left out
    scores, rows = scores[keep], rows[keep]
    if len(rows) < min(k, count):
        scores, rows = exact(vectors, query, k, np.flatnonzero(index.live if allowed is None else allowed))
        plan.strategy += "+exact"
    return scores, rows, plan


def query_vector(index: Any, query: Any, predictor: Any = None, revision: str | None = None) -> tuple[np.ndarray, str | None]:
    """The unit query vector and the id it came from (a product id in the index)."""
    from fashion.predict.predictor import l2_normalize

    if isinstance(query, str):
        return index.vector(query), query
    if revision is not None and revision != index.info.model_revision:
        raise ConfigError(f"the query vector is of model revision {revision} but the index is "
                          f"of revision {index.info.model_revision}; embed the query with the "
                          "index's model.")
    if isinstance(query, (Mapping,)) or hasattr(query, "images"):
        if predictor is None:
            raise ConfigError("searching by product needs predictor= (the index's model: "
                              f"{index.info.model or 'the bundle that embedded the vectors'}).")
        from fashion.search.vectors import model_revision

        space = index.info.space  # the product is embedded in the index's space
        got = model_revision(predictor.model, space)
        if got != index.info.model_revision:
            raise ConfigError(f"the model is of revision {got} but the index is of revision "
                              f"{index.info.model_revision}; load the index's model "
                              f"({index.info.model or 'the bundle that embedded the vectors'}).")
        return l2_normalize(predictor.embed([query], space=space))[0], None
    vector = np.asarray(query, np.float32).reshape(-1)
    if vector.shape[0] != index.info.dimension or not np.isfinite(vector).all():
        raise ConfigError(f"the query vector must be {index.info.dimension} finite numbers (the "
                          f"index's dimension), got shape {np.shape(query)}.")
    return l2_normalize(vector[None, :])[0], None


def search(index: Any, query: Any, k: int = 10, *, where: Any = None, change: Any = None,
           min_score: float | None = None, predictor: Any = None, revision: str | None = None,
           explain: dict[str, Any] | None = None) -> list[Hit]:
    """The ``k`` products most similar to ``query`` that meet ``where`` and ``change``.

    ``query``: a product id in the index (itself left out), a vector (``revision``: the model
    revision it came from, checked), or a product (``predictor``: the index's model, checked).
    ``where``/``change``: ``{"color": "red"}`` or ``["color=red"]``. ``min_score``: the score a
    filtered attribute needs (default: each attribute's abstention threshold). ``explain``: a
    dict that receives the plan.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number of at least 1, got {k!r}")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ConfigError(f"min_score must be between 0 and 1, got {min_score!r}")
    conditions = parse_conditions(where)
    changes = parse_conditions(change, "--change")
    for name, values in changes.items():
        conditions[name] = values  # the change replaces a condition on the same attribute
    vector, own = query_vector(index, query, predictor, revision)
    selection = index.selection(conditions, min_score)
    wanted = 4 * k if changes else k
    scores, rows, plan = planned(index, vector, wanted + (own is not None), selection)
    if own is not None:  # the product asked about is not its own neighbour
        keep = rows != index.position[own]
        scores, rows = scores[keep][:wanted], rows[keep][:wanted]
    hits = [Hit(index.ids[r], float(s), index.attributes.row(int(r)), image=index.images[r])
            for s, r in zip(scores, rows, strict=True)]
    if changes:
        for hit, row in zip(hits, rows, strict=True):
            mean = float(np.mean([index.attributes.scores[n][row] for n in changes]))
            hit.rank = (1.0 + hit.score) / 2.0 * mean
        hits.sort(key=lambda h: -(h.rank or 0.0))
    if explain is not None:
        explain.update(strategy=plan.strategy, candidates=plan.candidates, ef_search=plan.ef_search)
    return hits[:k]


__all__ = ["EF_CAP", "EXACT_ROWS", "EXACT_SELECTIVITY", "SELECTION_BYTES", "SELECTION_CACHE", "Hit",
           "Plan", "Selection", "exact", "planned", "search", "select_rows"]
