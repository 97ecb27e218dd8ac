"""The vectors file ``fashion embed`` writes and ``fashion index build`` reads (Parquet).

Columns: ``id``, ``row`` (the manifest row), ``image`` (the product's first image, a path or
URL, for thumbnails), ``vector`` (fixed-size float32 list, L2-normalized) and, per attribute,
``<attribute>_label`` and ``<attribute>_score``. The schema's metadata (key ``fashion.vectors``,
:class:`~fashion.predict.vectors.VectorsInfo`) records the model revision that computed the
vectors, its URI, the dimension and the attributes.

``fashion index build`` also reads the ``--out`` folder of ``fashion predict --engine ray
--embeddings`` (or one of its part files): each part records the same metadata, and its
predicted rows are read as vector rows (the ``embedding`` column L2-normalized here, the first
image kept when it is a URL or an absolute path, the rejected rows, which have no vector,
skipped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fashion.errors import ConfigError, DataError
from fashion.predict.vectors import (
    EMBEDDING,
    VECTORS_META,
    AttributeInfo,
    VectorsInfo,
    label_column,
    model_revision,
    score_column,
    vectors_info,
)

WRITERS = "`fashion embed` or `fashion predict --engine ray --embeddings`"


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


def vector_files(path: str | Path) -> list[Path]:
    """The Parquet files ``path`` names: itself, or the part files of a folder (the ``--out``
    of ``fashion predict --engine ray --embeddings``)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise DataError(f"{path} is a folder without .parquet files; give a vectors file or the "
                        f"--out folder of {WRITERS}.")
    return files


def _file_info(path: Path) -> VectorsInfo | None:
    """The metadata of one file; None for an empty part of a Ray output (a part without rows)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path} does not exist; give a file written by {WRITERS}.")
    try:
        meta = pq.read_metadata(path)
        metadata = meta.metadata or {}
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
        raise DataError(f"{path} is not a readable Parquet file ({exc}); write it again with "
                        f"{WRITERS}.") from None
    if VECTORS_META not in metadata:
        if meta.num_rows == 0:
            return None  # a Ray part of an input without rows
        raise DataError(f"{path} has no {VECTORS_META.decode()} metadata, so it was not written "
                        "by `fashion embed` (nor by `fashion predict --engine ray --embeddings`); "
                        "embed the manifest with `fashion embed MODEL INPUT --out "
                        "vectors.parquet`, or predict again with --embeddings --overwrite.")
    try:
        return VectorsInfo.model_validate_json(metadata[VECTORS_META])
    except ValueError as exc:
        raise DataError(f"{path}: its {VECTORS_META.decode()} metadata is damaged ({exc}); write "
                        f"the file again with {WRITERS}.") from None


def read_info(path: str | Path) -> VectorsInfo:
    """The :class:`VectorsInfo` of a vectors file or a Ray output folder (every part of one
    model revision); a clear error for any other Parquet file."""
    path = Path(path)
    found: tuple[Path, VectorsInfo] | None = None
    for file in vector_files(path):
        info = _file_info(file)
        if info is None:
            continue
        if found is None:
            found = (file, info)
        elif (info.model_revision, info.dimension, info.attributes) != (
                found[1].model_revision, found[1].dimension, found[1].attributes):
            raise ConfigError(
                f"{path}: {file.name} holds vectors of model revision {info.model_revision} but "
                f"{found[0].name} of revision {found[1].model_revision} (or other attributes); "
                "the parts of one folder must come from one model: predict again with "
                "--overwrite, or index the parts separately.")
    if found is None:
        raise DataError(f"{path} holds no rows; predict a manifest with rows into it first.")
    return found[1]


def iter_tables(path: str | Path, *, batch_rows: int = 65536) -> Iterator[Any]:
    """The rows of a vectors file (or a Ray output folder or part) as vectors tables of up to
    ``batch_rows`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for file in vector_files(path):
        try:
            handle = pq.ParquetFile(file)
            names = handle.schema_arrow.names
            info = None if "vector" in names else _file_info(file)
            if info is None and "vector" not in names:
                continue  # a part without rows
            for batch in handle.iter_batches(batch_size=batch_rows):
                table = pa.Table.from_batches([batch])
                yield table if info is None else _from_predictions(table, info, file)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{file} cannot be read ({exc}); write it again with {WRITERS}.") \
                from None


def _first_image(value: Any) -> str | None:
    """The first image of a Ray output row (a list, a ``|``-separated or JSON string) when it
    can be reached from anywhere: a URL or an absolute path (relative paths were relative to
    the input manifest, which the output does not record)."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    items = value.split("|") if isinstance(value, str) else list(value or [])
    first = next((str(v).strip() for v in items if isinstance(v, str) and v.strip()), None)
    return first if first and ("://" in first or Path(first).is_absolute()) else None


def _from_predictions(table: Any, info: VectorsInfo, path: Path) -> Any:
    """The predicted rows of a ``fashion predict --engine ray --embeddings`` part as a vectors
    table (rejected rows have no vector and are left out)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from fashion.predict.predictor import l2_normalize

    needed = ["id", "row", EMBEDDING] + [c for a in info.attributes
                                         for c in (label_column(a), score_column(a))]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r}; "
                        + ("give the manifest an id column and predict again."
                           if missing[0] == "id" else "predict again with --embeddings --overwrite."))
    table = table.filter(pc.is_valid(table.column(EMBEDDING)))
    lengths = pc.list_value_length(table.column(EMBEDDING)).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != info.dimension).any():
        bad = int(np.flatnonzero(lengths != info.dimension)[0])
        raise DataError(f"{path}: manifest row {table.column('row')[bad].as_py()} has a vector of "
                        f"{lengths[bad]} numbers, not {info.dimension}; predict again with "
                        "--embeddings --overwrite.")
    flat = table.column(EMBEDDING).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = l2_normalize(np.asarray(flat, np.float32).reshape(-1, info.dimension))
    target = schema(info)
    images = (table.column("images").to_pylist() if "images" in table.column_names
              else [None] * table.num_rows)
    columns: list[Any] = [
        pc.cast(table.column("id"), pa.string()), pc.cast(table.column("row"), pa.int64()),
        pa.array([_first_image(v) for v in images], pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()),
                                          info.dimension)]
    for name in info.attributes:
        columns.append(pc.cast(table.column(label_column(name)),
                               target.field(label_column(name)).type))
        columns.append(pc.cast(table.column(score_column(name)), pa.float64()))
    return pa.Table.from_arrays(columns, schema=target)


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
    "vector_files",
    "vectors_info",
]
