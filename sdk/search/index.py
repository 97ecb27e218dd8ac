"""``fashion.search.Index``: product vectors in faiss, with their predicted attributes.

Below ``hnsw_threshold`` live rows the vectors sit in an exact inner-product index
(``IndexFlatIP``); at or above it in an ``IndexHNSWFlat`` (``M`` and ``efConstruction``
recorded; ``efSearch`` measured on the index's own products to reach a recall target, see
:mod:`fashion.search.tune`, unless given). Vectors are L2-normalized, so inner product is
cosine similarity.

An index folder holds ``index.json`` (the model revision, dimension, attributes, the HNSW
parameters, ids and the sha256 of every other file), ``vectors.faiss`` and ``rows.parquet``
(id, live flag, predicted labels and scores). :meth:`Index.load` checks the sha256s before
reading anything, so a damaged or edited file is refused by name. :meth:`Index.save` writes a
new folder beside the old one and swaps the two.

Removing a product marks its row dead (an HNSW graph cannot drop a node); searches never return
a dead row, and :meth:`Index.save` rebuilds the index once dead rows pass a quarter of all rows.
Adding an id already present replaces it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from fashion._util.config import StrictModel
from fashion._util.files import sha256_file
from fashion.errors import ConfigError, DataError
from fashion.search import backend
from fashion.search.filters import Attributes, Conditions
from fashion.search.plan import SELECTION_BYTES, SELECTION_CACHE, Selection, select_rows
from fashion.search.tune import MIN_QUERIES, TUNE_QUERIES, Tuning, tune_ef_search
from fashion.search.vectors import VectorsInfo, iter_tables, label_column, read_info, score_column

META, VECTORS, ROWS = "index.json", "vectors.faiss", "rows.parquet"
INDEX_FORMAT = 1
HNSW_THRESHOLD = 50_000  # live rows from which HNSW replaces exact search
EF_FALLBACK = 512  # efSearch of an HNSW index that was neither tuned nor given one
RETUNE_GROWTH = 1.25  # live rows grown by this factor since the last tuning: tune again

logger = logging.getLogger("fashion.search")


class HnswParams(StrictModel):
    m: int = Field(default=32, ge=4, le=256)
    ef_construction: int = Field(default=200, ge=8)
    ef_search: int | None = Field(default=None, ge=1)  # None: tuned to recall_target
    recall_target: float = Field(default=0.95, gt=0, lt=1)  # recall@10 the tuning must reach


class IndexMeta(StrictModel):
    format: int = INDEX_FORMAT
    vectors: VectorsInfo
    kind: str  # "flat" or "hnsw"
    hnsw: HnswParams = Field(default_factory=HnswParams)
    hnsw_threshold: int = Field(default=HNSW_THRESHOLD, ge=1)
    rows: int = Field(ge=0)
    live: int = Field(ge=0)
    tuning: Tuning | None = None  # how efSearch was chosen (None: given, or an exact index)
    files: dict[str, str]  # name -> sha256


class Index:
    """Product vectors and predicted attributes, searchable with filters (:mod:`.plan`)."""

    def __init__(self, info: VectorsInfo, *, hnsw: HnswParams | None = None,
                 hnsw_threshold: int = HNSW_THRESHOLD) -> None:
        self.info, self.hnsw = info, hnsw or HnswParams()
        if hnsw_threshold < 1:
            raise ConfigError(f"hnsw_threshold must be at least 1, got {hnsw_threshold}")
        self.hnsw_threshold = hnsw_threshold
        self.faiss: Any = backend.flat_index(info.dimension)
        self.ids: list[str] = []
        self.images: list[str | None] = []  # each row's first image (path or URL), for thumbnails
        self.live = np.zeros(0, bool)
        self.attributes = Attributes.empty(info)
        self.position: dict[str, int] = {}  # live id -> row
        self.tuning: Tuning | None = None
        self._selections: OrderedDict[tuple[Any, ...], Selection] = OrderedDict()
        self._lock = threading.Lock()  # the selections of a served index, from many threads
        self._version = 0  # bumped by every change: cached selections are of one version

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        return "hnsw" if backend.is_hnsw(self.faiss) else "flat"

    def __len__(self) -> int:
        return len(self.position)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self.position

    @property
    def ef_search(self) -> int:
        """HNSW's ``efSearch`` without a filter: as given, else as tuned, else 512."""
        if self.hnsw.ef_search is not None:
            return self.hnsw.ef_search
        return self.tuning.ef_search if self.tuning is not None else EF_FALLBACK

    @property
    def vectors(self) -> np.ndarray:
        """Every row's vector (dead rows too), a read-only view of faiss's storage."""
        return backend.matrix(self.faiss)

    def selection(self, conditions: Conditions, min_score: float | None = None) -> Selection:
        """The live rows that meet ``conditions`` (:class:`fashion.search.plan.Selection`), kept
        for the next queries with the same filter until the index changes (the last
        ``SELECTION_CACHE`` filters, at most ``SELECTION_BYTES`` of contiguous vectors)."""
        key = (self._version, json.dumps(conditions, sort_keys=True), min_score)
        with self._lock:
            found = self._selections.get(key)
            if found is not None:
                self._selections.move_to_end(key)
                return found
        chosen = select_rows(self, self.attributes.mask(conditions, min_score))
        if chosen.rows is not None and len(chosen.rows) * self.info.dimension * 4 <= SELECTION_BYTES:
            chosen.matrix = np.take(self.vectors, chosen.rows, axis=0)
        with self._lock:
            if key[0] != self._version:  # the index changed meanwhile: do not keep it
                return chosen
            self._selections[key] = chosen
            while len(self._selections) > SELECTION_CACHE or (
                    len(self._selections) > 1
                    and sum(c.nbytes for c in self._selections.values()) > SELECTION_BYTES):
                self._selections.popitem(last=False)
        return chosen

    def _changed(self) -> None:
        with self._lock:
            self._version += 1
            self._selections.clear()

    def vector(self, product_id: str) -> np.ndarray:
        if product_id not in self.position:
            raise ConfigError(f"no product {product_id!r} in the index ({len(self)} products); "
                              "give an id the vectors file holds.")
        return np.array(self.vectors[self.position[product_id]])

    # ------------------------------------------------------------------ build / add / remove

    @classmethod
    def build(cls, sources: Sequence[str | Path], *, hnsw: HnswParams | None = None,
              hnsw_threshold: int = HNSW_THRESHOLD) -> Index:
        """An index of one or more vectors files (``fashion embed``) of one model revision."""
        if not sources:
            raise ConfigError("give at least one vectors file (written by `fashion embed`).")
        index = cls(read_info(sources[0]), hnsw=hnsw, hnsw_threshold=hnsw_threshold)
        index.add(sources, replace=False)
        return index

    def add(self, sources: Iterable[str | Path], *, replace: bool = True) -> int:
        """Add the rows of vectors files; an id already present is replaced (``replace=False``:
        refused). Returns the number of rows added."""
        added = 0
        for source in sources:
            self.check_info(read_info(source), str(source))
            seen: set[str] = set()
            for table in iter_tables(source):
                ids = table.column("id").to_pylist()
                rows = table.column("row").to_pylist()
                for product_id, row in zip(ids, rows, strict=True):
                    if product_id is None or product_id == "":
                        raise DataError(f"{source}: manifest row {row} has no id; give every "
                                        "product an id to index it.")
                    if product_id in seen or (not replace and product_id in self.position):
                        raise DataError(f"{source}: id {product_id!r} appears twice (again at "
                                        f"manifest row {row}); ids must be unique.")
                    seen.add(product_id)
                flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                vectors = np.asarray(flat, np.float32).reshape(-1, self.info.dimension)
                bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
                if len(bad):
                    raise DataError(f"{source}: manifest row {rows[bad[0]]} has a vector with NaN "
                                    "or inf; embed it again (the model may be damaged).")
                columns = {name: self.attributes.encode(
                    name, table.column(label_column(name)).to_pylist(),
                    table.column(score_column(name)).to_pylist()) for name in self.info.attributes}
                images = (table.column("image").to_pylist() if "image" in table.column_names
                          else [None] * len(ids))
                self._append(ids, vectors, columns, images)
                added += len(ids)
        self._grow()
        return added

    def add_arrays(self, ids: Sequence[str], vectors: Any, labels: dict[str, list[Any]],
                   scores: dict[str, list[float]], images: Sequence[str | None] | None = None) -> int:
        """Add products from memory: ids, an ``(n, D)`` array (normalized here), and per
        attribute of the index the predicted labels and scores (an id already present is
        replaced). Returns the number added."""
        ids = [str(i) for i in ids]
        array = np.asarray(vectors, np.float32).reshape(len(ids), -1)
        if array.shape[1] != self.info.dimension or not np.isfinite(array).all():
            raise DataError(f"vectors must be {len(ids)} x {self.info.dimension} finite numbers, "
                            f"got shape {array.shape}.")
        if len(set(ids)) != len(ids) or set(labels) != set(self.info.attributes):
            raise DataError("ids must be unique and labels/scores given for every attribute of "
                            f"the index ({', '.join(self.info.attributes)}).")
        columns = {n: self.attributes.encode(n, list(labels[n]), list(scores[n])) for n in labels}
        self._append(ids, array, columns, list(images) if images is not None else [None] * len(ids))
        self._grow()
        return len(ids)

    def check_info(self, info: VectorsInfo, what: str) -> None:
        """Refuse vectors of another space, model revision, dimension or attribute set."""
        if info.space != self.info.space:
            raise ConfigError(
                f"{what} holds vectors in the space {info.space.describe()} but the index's are "
                f"in {self.info.space.describe()}; embed with the same --emphasize and "
                "--emphasis, or build a new index.")
        if info.model_revision != self.info.model_revision:
            raise ConfigError(
                f"{what} holds vectors of model revision {info.model_revision} but the index is "
                f"of revision {self.info.model_revision}; embed with the index's model "
                f"({self.info.model or 'the same bundle'}) or build a new index.")
        if info.dimension != self.info.dimension or info.attributes != self.info.attributes:
            raise ConfigError(f"{what}: its dimension or attributes differ from the index's; "
                              "build a new index from vectors of one model.")

    def _append(self, ids: list[str], vectors: np.ndarray, columns: dict[str, Any],
                images: list[str | None]) -> None:
        from fashion.predict.predictor import l2_normalize

        for product_id in ids:
            old = self.position.pop(product_id, None)
            if old is not None:
                self.live[old] = False
        self._changed()
        start = len(self.ids)
        unit = np.ascontiguousarray(l2_normalize(vectors))
        if (self.kind == "hnsw" and self.hnsw.ef_search is None and len(ids) >= MIN_QUERIES
                and len(self) > 0 and (self.tuning is None
                                       or len(self) + len(ids) >= RETUNE_GROWTH * self.tuning.rows)):
            sample = np.random.default_rng(len(self)).choice(len(ids), min(TUNE_QUERIES, len(ids)),
                                                             replace=False)
            self._tune(unit[np.sort(sample)], self.vectors, self.live)  # before they join the graph
        self.faiss.add(unit)
        self.ids.extend(ids)
        self.images.extend(images)
        self.live = np.concatenate([self.live, np.ones(len(ids), bool)])
        self.attributes.append(columns)
        self.position.update({pid: start + i for i, pid in enumerate(ids)})

    def remove(self, product_ids: Iterable[str]) -> int:
        """Mark products removed; returns how many were present (unknown ids are skipped)."""
        removed = 0
        for product_id in product_ids:
            row = self.position.pop(product_id, None)
            if row is not None:
                self.live[row] = False
                removed += 1
        if removed:
            self._changed()
        return removed

    def _grow(self) -> None:
        """Switch from exact to HNSW once the live rows reach the threshold."""
        if self.kind == "flat" and len(self) >= self.hnsw_threshold:
            self.compact(force=True)

    def _tune(self, queries: np.ndarray, vectors: np.ndarray, live: np.ndarray) -> None:
        """Measure efSearch of the graph (its ``vectors`` and ``live`` rows) with ``queries``,
        unit vectors of products not in it; log the pick, warn when the target is missed."""
        t = tune_ef_search(self.faiss, vectors, live, queries, target=self.hnsw.recall_target)
        self.tuning = t
        logger.info("HNSW efSearch %d: recall@%d %.3f (lower bound %.3f) for %d new products "
                    "among %d", t.ef_search, t.k, t.recall, t.lower, t.queries, t.rows)
        if not t.reached:
            logger.warning(
                "HNSW reaches recall@%d %.3f at efSearch %d, below the target %.2f: these vectors "
                "are hard for a graph index; raise --m / --ef-construction, or keep exact search "
                "(--hnsw-threshold above the catalog's size).", t.k, t.recall, t.ef_search, t.target)

    def compact(self, *, force: bool = False) -> None:
        """Rebuild without dead rows (when they pass a quarter of the rows, or ``force``)."""
        dead = len(self.ids) - len(self)
        if not force and dead * 4 <= len(self.ids):
            return
        self._changed()
        keep = np.flatnonzero(self.live)
        graph = len(keep) >= self.hnsw_threshold
        held = TUNE_QUERIES if graph and self.hnsw.ef_search is None and len(keep) > 4 * TUNE_QUERIES else 0
        if held:  # products held out of the new graph to tune it, then added last
            out = np.zeros(len(keep), bool)
            out[np.random.default_rng(len(keep)).choice(len(keep), held, replace=False)] = True
            keep = np.concatenate([keep[~out], keep[out]])
        vectors = np.array(self.vectors[keep])
        self.tuning = None
        if graph:
            self.faiss = backend.hnsw_index(self.info.dimension, self.hnsw.m, self.hnsw.ef_construction)
            self.faiss.add(vectors[:len(keep) - held])
            if held:
                inside = vectors[:len(keep) - held]
                self._tune(vectors[len(keep) - held:], inside, np.ones(len(inside), bool))
                self.faiss.add(vectors[len(keep) - held:])
        else:
            self.faiss = backend.flat_index(self.info.dimension)
            self.faiss.add(vectors)
        self.ids = [self.ids[i] for i in keep]
        self.images = [self.images[i] for i in keep]
        self.live = np.ones(len(keep), bool)
        self.attributes = self.attributes.take(keep)
        self.position = {pid: i for i, pid in enumerate(self.ids)}

    # ------------------------------------------------------------------ save / load

    def save(self, folder: str | Path) -> Path:
        """Write the index folder (a new folder swapped in for an existing one)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.compact()
        folder = Path(folder)
        if folder.exists() and not (folder / META).is_file() and any(folder.iterdir()):
            raise ConfigError(f"{folder} exists and is not an index folder; give a new folder.")
        staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        backend.faiss().write_index(self.faiss, str(staging / VECTORS))
        columns: dict[str, Any] = {"id": pa.array(self.ids, pa.string()),
                                   "image": pa.array(self.images, pa.string()),
                                   "live": pa.array(self.live, pa.bool_())}
        for name in self.info.attributes:
            codes = self.attributes.codes[name]
            columns[f"{name}_code"] = (pa.array(list(codes), pa.list_(pa.bool_()))
                                       if codes.ndim == 2 else pa.array(codes, pa.int32()))
            columns[score_column(name)] = pa.array(self.attributes.scores[name], pa.float32())
        pq.write_table(pa.table(columns), staging / ROWS)
        meta = IndexMeta(vectors=self.info, kind=self.kind, hnsw=self.hnsw,
                         hnsw_threshold=self.hnsw_threshold, rows=len(self.ids), live=len(self),
                         tuning=self.tuning,
                         files={n: sha256_file(staging / n) for n in (VECTORS, ROWS)})
        (staging / META).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        """Read an index folder; a missing, damaged or edited file is refused by name."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.is_file():
            raise DataError(f"{folder} is not an index folder (no {META}); build one with "
                            "`fashion index build VECTORS... --out INDEX`.")
        try:
            meta = IndexMeta.model_validate_json(meta_path.read_bytes())
        except ValueError as exc:
            raise DataError(f"{meta_path} is damaged ({str(exc).splitlines()[0]}); build the "
                            "index again.") from None
        for name in (VECTORS, ROWS):
            path = folder / name
            if not path.is_file() or sha256_file(path) != meta.files.get(name):
                raise DataError(f"{path} is missing or does not match the sha256 in {META}; the "
                                "index is damaged. Build it again with `fashion index build`.")
        index = cls(meta.vectors, hnsw=meta.hnsw, hnsw_threshold=meta.hnsw_threshold)
        index.faiss = backend.faiss().read_index(str(folder / VECTORS))
        index.tuning = meta.tuning
        table = pq.read_table(folder / ROWS)
        index.ids = table.column("id").to_pylist()
        index.images = table.column("image").to_pylist()
        index.live = np.asarray(table.column("live").to_numpy(zero_copy_only=False), bool)
        for name in meta.vectors.attributes:
            codes = table.column(f"{name}_code").to_pylist()
            index.attributes.codes[name] = np.asarray(codes, bool if meta.vectors.attributes[name]
                                                      .multilabel else np.int32)
            index.attributes.scores[name] = table.column(score_column(name)).to_numpy().astype(np.float32)
        if not (index.faiss.ntotal == len(index.ids) == meta.rows) or index.faiss.d != meta.vectors.dimension:
            raise DataError(f"{folder}: {VECTORS} and {ROWS} disagree with {META}; build the index again.")
        index.position = {pid: i for i, pid in enumerate(index.ids) if index.live[i]}
        return index

    def describe(self) -> dict[str, Any]:
        out = {"products": len(self), "rows": len(self.ids), "kind": self.kind,
               "dimension": self.info.dimension, "model_revision": self.info.model_revision,
               "space": self.info.space.describe()}
        if self.kind == "hnsw":
            out["hnsw"] = self.hnsw.model_dump() | {"ef_search_used": self.ef_search}
            if self.tuning is not None:
                out["tuning"] = self.tuning.model_dump()
        return out

    def __repr__(self) -> str:
        return f"Index({json.dumps(self.describe())})"

    def search(self, query: Any, k: int = 10, **options: Any) -> list[Any]:
        """See :func:`fashion.search.plan.search` (``query``: a vector, a product id, or a
        product with ``predictor=``)."""
        from fashion.search.plan import search

        return search(self, query, k, **options)


__all__ = ["HNSW_THRESHOLD", "HnswParams", "Index", "IndexMeta"]
