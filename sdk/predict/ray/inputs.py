"""The inputs of a distributed prediction: manifests found, cut into parts, read as Arrow blocks.

:func:`expand_inputs` finds the CSV/JSONL/Parquet manifests of INPUT (a file, a folder or a glob);
:func:`plan_parts` cuts them into :class:`ManifestPart` s (one per CSV/JSONL file, row groups of about
``part_rows`` rows per Parquet file), the units of work and of output of
``fashion predict --engine ray``; :func:`read_part` reads one part in blocks, adding the internal
columns the writer needs, and :func:`manifest_datasource` hands the parts to Ray Data. Used by
:mod:`fashion.predict.ray.engine`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashion.data.manifest import MANIFEST_SUFFIXES
from fashion.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

# Columns the reader adds for the writer; ``_fashion_row`` becomes ``row`` in the output files.
SOURCE, ROW, PART, PART_ROWS = "_fashion_source", "_fashion_row", "_fashion_part", "_fashion_part_rows"
RECORD = "_fashion_record"  # a CSV/JSONL row as read (JSON: values, line, error): the product is built from it
INTERNAL = (SOURCE, ROW, PART, PART_ROWS, RECORD)


@dataclass(frozen=True)
class ManifestPart:
    """One unit of work and of output: a CSV/JSONL file, or some row groups of a Parquet file."""

    source: str
    name: str  # output file name, inside OUT
    first_row: int = 1
    rows: int | None = None  # known up front for Parquet
    row_groups: tuple[int, ...] = ()


def expand_inputs(input_path: str | Path) -> list[Path]:
    """The manifests of INPUT: a file, a folder (every manifest under it) or a glob pattern."""
    text = str(input_path)
    path = Path(text)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
    elif any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in MANIFEST_SUFFIXES)
    else:
        raise DataError(f"input {text} does not exist; give a manifest file, a folder or a glob.")
    if not files:
        raise DataError(
            f"input {text} holds no .parquet, .csv or .jsonl manifest; check the path or pattern."
        )
    for file in files:
        if file.suffix.lower() not in MANIFEST_SUFFIXES:
            raise DataError(f"{file}: unsupported manifest format; use .csv, .jsonl or .parquet.")
    return [f.resolve() for f in files]


def input_root(input_path: str | Path, files: Sequence[Path]) -> Path:
    """The folder part names are relative to: INPUT when it is a folder, else the deepest folder
    holding every file (a file's own folder, or the common folder of a glob's matches)."""
    path = Path(input_path)
    if path.is_dir():
        return path.resolve()
    return Path(os.path.commonpath([str(f.parent) for f in files]))


def part_stem(rel: Path) -> str:
    """The output name of one input file: its relative path flattened (readable, at most 120
    characters) and a hash of the whole relative path, so two inputs never share a name
    (``a__b.csv`` and ``a/b.csv``, or ``A.csv`` and ``a.csv`` on a case-insensitive disk) and
    the same input gets the same name on every run (resume)."""
    flat = "__".join(rel.parts)
    digest = hashlib.sha256(rel.as_posix().encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{flat[:120]}.{digest}"


def plan_parts(files: Sequence[Path], root: Path | None, part_rows: int) -> list[ManifestPart]:
    """Split the inputs into parts: Parquet files by row groups of about ``part_rows`` rows."""
    import pyarrow.parquet as pq

    parts: list[ManifestPart] = []
    for file in files:
        rel = file.relative_to(root) if root is not None and root in file.parents else Path(file.name)
        stem = part_stem(rel)
        if file.suffix.lower() != ".parquet":
            parts.append(ManifestPart(str(file), f"{stem}.00000.parquet"))
            continue
        meta = pq.ParquetFile(file).metadata
        groups: list[int] = []
        count, first, index = 0, 1, 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            count += meta.row_group(g).num_rows
            if count >= part_rows or g == meta.num_row_groups - 1:
                parts.append(ManifestPart(str(file), f"{stem}.{index:05d}.parquet", first, count, tuple(groups)))
                first, count, groups, index = first + count, 0, [], index + 1
        if meta.num_row_groups == 0:
            parts.append(ManifestPart(str(file), f"{stem}.00000.parquet", 1, 0, ()))
    names = [p.name.casefold() for p in parts]
    if len(set(names)) != len(names):  # two different relative paths with one hash prefix
        clash = sorted({p.name for p in parts if names.count(p.name.casefold()) > 1})
        raise DataError(f"inputs {clash} map to one output name; rename one of the files.")
    return parts


def _records_table(records: list[dict[str, Any]]) -> pa.Table:
    """Rows as a table; a JSONL column whose values disagree in type (or hold text that is not
    UTF-8) is kept as JSON text."""
    import pyarrow as pa

    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        values = [r.get(name) for r in records]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, UnicodeEncodeError):
            # a lone surrogate (a JSONL "\\ud800" escape) cannot be UTF-8: kept escaped
            columns[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=True)
                                      for v in values], type=pa.string())
    return pa.table(columns) if columns else pa.table({"id": pa.nulls(len(records))})


def read_part(part: ManifestPart, block_rows: int) -> Iterator[pa.Table]:
    """The rows of one part, in blocks, with the internal source/row/part columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fashion.data.manifest import iter_manifest

    if part.rows is not None:
        table = (pq.ParquetFile(part.source).read_row_groups(list(part.row_groups))
                 if part.row_groups else pa.table({}))
        numbers = pa.array(range(part.first_row, part.first_row + table.num_rows), type=pa.int64())
    else:  # each row keeps its number, line and read error (``fashion predict`` reports them)
        rows = list(iter_manifest(part.source))
        table = _records_table([row.values for row in rows]).append_column(RECORD, pa.array(
            [json.dumps({"values": row.values, "line": row.line, "error": row.error})
             for row in rows], type=pa.string()))
        numbers = pa.array([row.row for row in rows], type=pa.int64())
    total = table.num_rows
    table = (table.append_column(SOURCE, pa.array([part.source] * total, type=pa.string()))
             .append_column(ROW, numbers)
             .append_column(PART, pa.array([part.name] * total, type=pa.string()))
             .append_column(PART_ROWS, pa.array([total] * total, type=pa.int64())))
    for start in range(0, total, block_rows):
        yield table.slice(start, block_rows)


def manifest_datasource(parts: Sequence[ManifestPart], block_rows: int) -> Any:
    """A Ray Datasource with one read task per part."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class ManifestDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return sum(os.path.getsize(p.source) for p in parts) or None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            tasks = []
            for part in parts:
                meta = BlockMetadata(num_rows=part.rows, size_bytes=None, input_files=[part.source],
                                     exec_stats=None)
                tasks.append(ReadTask(lambda part=part: read_part(part, block_rows), meta))
            return tasks

    return ManifestDatasource()


__all__ = [
    "INTERNAL",
    "PART",
    "PART_ROWS",
    "RECORD",
    "ROW",
    "SOURCE",
    "ManifestPart",
    "expand_inputs",
    "input_root",
    "manifest_datasource",
    "part_stem",
    "plan_parts",
    "read_part",
]
