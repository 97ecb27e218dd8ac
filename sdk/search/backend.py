"""faiss, the optional vector library under :mod:`fashion.search` (``fashion-sdk[search]``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fashion.errors import MissingExtraError


def faiss() -> Any:
    """The ``faiss`` module; a clear error naming the extra when it is not installed. Its
    OpenMP threads follow ``FASHION_SEARCH_THREADS`` when set (else faiss's default)."""
    try:
        import faiss as module
    except ImportError:
        raise MissingExtraError(
            "similarity search needs faiss-cpu; install it with pip install 'fashion-sdk[search]'."
        ) from None
    threads = os.environ.get("FASHION_SEARCH_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        module.omp_set_num_threads(int(threads))
    return module


def flat_index(dimension: int) -> Any:
    return faiss().IndexFlatIP(dimension)


def hnsw_index(dimension: int, m: int, ef_construction: int) -> Any:
    lib = faiss()
    index = lib.IndexHNSWFlat(dimension, m, lib.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    return index


def matrix(index: Any) -> np.ndarray:
    """The vectors an IndexFlatIP or IndexHNSWFlat holds, as a read-only (n, d) view (no copy)."""
    lib = faiss()
    flat = index if isinstance(index, lib.IndexFlat) else lib.downcast_index(index.storage)
    n, d = flat.ntotal, flat.d
    if n == 0:
        return np.zeros((0, d), np.float32)
    view = lib.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)
    view.flags.writeable = False
    return view  # type: ignore[no-any-return]


def is_hnsw(index: Any) -> bool:
    return isinstance(index, faiss().IndexHNSWFlat)


def hnsw_search(index: Any, queries: np.ndarray, k: int, *, ef_search: int,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HNSW search, restricted to the rows where ``allowed`` is True (an IDSelectorBitmap)."""
    lib = faiss()
    params = lib.SearchParametersHNSW()
    params.efSearch = int(ef_search)
    bits = None
    if allowed is not None:
        bits = np.packbits(allowed, bitorder="little")
        params.sel = lib.IDSelectorBitmap(len(allowed), lib.swig_ptr(bits))
    scores, rows = index.search(np.ascontiguousarray(queries, np.float32), k, params=params)
    del bits  # kept alive until the search is over
    return scores, rows


__all__ = ["faiss", "flat_index", "hnsw_index", "hnsw_search", "is_hnsw", "matrix"]
