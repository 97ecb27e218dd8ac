"""The vectors file ``fashion embed`` writes and ``fashion index build`` reads (Parquet).

Columns: ``id``, ``row`` (the manifest row), ``image`` (the product's first image, a path or
URL, for thumbnails), ``vector`` (fixed-size float32 list, L2-normalized) and, per attribute, ``<attribute>_label`` and ``<attribute>_score``. The schema's metadata
(key ``fashion.vectors``) records the model revision that computed the vectors, its URI, the
dimension and, per attribute, the labels, whether it is multilabel and the bundle's abstention
threshold (the default ``--min-score`` of a filter on it).

The model revision is the content hash of the components that compute the vector (croppers,
backbones, fusion): a model whose heads were recalibrated or extended keeps it, a retrained
or swapped backbone changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from fashion._util.config import StrictModel
from fashion.errors import DataError

VECTORS_META = b"fashion.vectors"
VECTORS_FORMAT = 1


class AttributeInfo(StrictModel):
    labels: list[str]
    multilabel: bool = False
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)  # the bundle's abstention threshold


class VectorsInfo(StrictModel):
    """What a vectors file (and an index built from it) was computed with."""

    format: int = VECTORS_FORMAT
    model_revision: str
    model: str | None = None  # the model's URI or folder, for `fashion similar --image`
    dimension: int = Field(ge=1)
    attributes: dict[str, AttributeInfo] = Field(default_factory=dict)


def model_revision(model: Any) -> str:
    """The content hash of the components that compute the vector (see the module docstring)."""
    prints = model.component_fingerprints_of(
        [p for p in model.component_modules() if p.startswith(("croppers/", "backbones/", "fusion"))])
    return hashlib.sha256(json.dumps(prints, sort_keys=True).encode()).hexdigest()[:32]


def vectors_info(predictor: Any) -> VectorsInfo:
    """The :class:`VectorsInfo` of the vectors ``predictor`` computes."""
    model, bundle = predictor.model, predictor.bundle
    attributes = {}
    for name in model.attributes:
        spec = model.spec.attributes[name]
        task = model.task(name)
        attributes[name] = AttributeInfo(
            labels=list(task.labels), multilabel=bool(getattr(task, "multilabel", False)),
            min_score=spec.abstention.threshold if spec.abstention is not None else 0.0)
    uri = None
    if bundle is not None:
        uri = bundle.uri or (str(Path(bundle.path).resolve()) if bundle.path else None)
    return VectorsInfo(model_revision=model_revision(model), model=uri,
                       dimension=predictor.embedding_dim, attributes=attributes)


def label_column(attribute: str) -> str:
    return f"{attribute}_label"


def score_column(attribute: str) -> str:
    return f"{attribute}_score"


def schema(info: VectorsInfo) -> Any:
    """The Arrow schema of a vectors file, ``info`` in its metadata."""
    import pyarrow as pa

    fields = [pa.field("id", pa.string()), pa.field("row", pa.int64()),
              pa.field("image", pa.string()),
              pa.field("vector", pa.list_(pa.float32(), info.dimension))]
    for name, attribute in info.attributes.items():
        fields += [pa.field(label_column(name),
                            pa.list_(pa.string()) if attribute.multilabel else pa.string()),
                   pa.field(score_column(name), pa.float64())]
    return pa.schema(fields, metadata={VECTORS_META: info.model_dump_json().encode()})


def records_table(info: VectorsInfo, records: list[Mapping[str, Any]]) -> Any:
    """Rows ``{"id", "row", "vector", "attributes": {name: (label, score)}}`` (and ``image``)
    as a table."""
    import numpy as np
    import pyarrow as pa

    target = schema(info)
    flat = np.asarray([r["vector"] for r in records], dtype=np.float32).reshape(-1)
    columns: list[Any] = [pa.array([r["id"] for r in records], pa.string()),
                          pa.array([r["row"] for r in records], pa.int64()),
                          pa.array([r.get("image") for r in records], pa.string()),
                          pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()),
                                                            info.dimension)]
    for name in info.attributes:
        columns.append(pa.array([r["attributes"][name][0] for r in records],
                                target.field(label_column(name)).type))
        columns.append(pa.array([r["attributes"][name][1] for r in records], pa.float64()))
    return pa.Table.from_arrays(columns, schema=target)


def read_info(path: str | Path) -> VectorsInfo:
    """The :class:`VectorsInfo` of a vectors file; a clear error for any other Parquet file."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a file written by `fashion embed`.")
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
        raise DataError(f"{path} is not a readable Parquet file ({exc}); write it again with "
                        "`fashion embed`.") from None
    if VECTORS_META not in metadata:
        raise DataError(f"{path} has no {VECTORS_META.decode()} metadata, so it was not written by "
                        "`fashion embed`; embed the manifest with `fashion embed MODEL INPUT "
                        "--out vectors.parquet`.")
    try:
        return VectorsInfo.model_validate_json(metadata[VECTORS_META])
    except ValueError as exc:
        raise DataError(f"{path}: its {VECTORS_META.decode()} metadata is damaged ({exc}); write "
                        "the file again with `fashion embed`.") from None


def iter_tables(path: str | Path, *, batch_rows: int = 65536) -> Iterator[Any]:
    """The rows of a vectors file as Arrow tables of up to ``batch_rows`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
        for batch in handle.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path} cannot be read ({exc}); write it again with `fashion embed`.") \
            from None


def read_rows(path: str | Path) -> set[int]:
    """The manifest rows a vectors file holds (``fashion embed --resume``)."""
    rows: set[int] = set()
    for table in iter_tables(path):
        rows.update(table.column("row").to_pylist())
    return rows


__all__ = [
    "AttributeInfo",
    "VectorsInfo",
    "iter_tables",
    "label_column",
    "model_revision",
    "read_info",
    "read_rows",
    "records_table",
    "schema",
    "score_column",
    "vectors_info",
]
