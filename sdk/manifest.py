"""Dataset and prediction manifests: CSV, JSONL or Parquet, read as a stream of rows.

A manifest row describes one product: ``id``, ``images`` (one or more paths relative to the
manifest file; ``|``-separated in CSV/Parquet, a list or a ``|``-separated string in JSONL),
``title``, ``description``, ``brand``, and any attribute columns. Rows are numbered from 1
(the first data row), so an error can name ``file:row``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError
from .model import TEXT_FIELDS, Product

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
IMAGE_SEPARATOR = "|"


@dataclass(frozen=True)
class ManifestRow:
    """One data row: ``row`` is 1-based, ``values`` maps column names to raw values."""

    row: int
    values: dict[str, Any]


def manifest_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: unsupported manifest format {suffix or '(no extension)'}; "
            "use .csv, .jsonl or .parquet."
        )
    return FORMATS[suffix]


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; check the path.")


def iter_manifest(path: str | Path, *, batch_rows: int = 1024) -> Iterator[ManifestRow]:
    """Yield rows one at a time without loading the whole file (Parquet in record batches)."""
    path = Path(path)
    kind = manifest_format(path)
    _check_exists(path)
    if kind == "csv":
        with path.open(newline="", encoding="utf-8-sig", errors="strict") as f:
            reader = csv.DictReader(f)
            try:
                for number, record in enumerate(reader, start=1):
                    if None in record:
                        raise DataError(
                            f"{path}:{number}: the row has more cells than the header has columns."
                        )
                    yield ManifestRow(number, {k: v for k, v in record.items()})
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}: not valid UTF-8 near data row {reader.line_num}: {exc}. "
                    "Save the file as UTF-8."
                ) from None
            except csv.Error as exc:
                raise DataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    elif kind == "jsonl":
        with path.open(encoding="utf-8") as f:
            number = 0
            for line in f:
                if not line.strip():
                    continue
                number += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{number}: each line must be a JSON object.")
                yield ManifestRow(number, record)
    else:
        import pyarrow.parquet as pq

        number = 0
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=batch_rows):
            for record in batch.to_pylist():
                number += 1
                yield ManifestRow(number, record)


def manifest_columns(path: str | Path) -> list[str]:
    """The column names of a manifest (the union of keys of the first rows for JSONL)."""
    path = Path(path)
    kind = manifest_format(path)
    _check_exists(path)
    if kind == "csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    columns: dict[str, None] = {}
    for i, row in enumerate(iter_manifest(path)):
        columns.update(dict.fromkeys(row.values))
        if i >= 100:
            break
    return list(columns)


def _text(value: Any, path: Path, row: int, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from Parquet/pandas
        return None
    if not isinstance(value, str):
        raise DataError(f"{path}:{row}: field '{field}' must be text, got {type(value).__name__}")
    return value if value.strip() else None


def image_paths(values: dict[str, Any], manifest_path: str | Path, row: int) -> list[Path]:
    """The row's image paths, resolved relative to the manifest's folder."""
    manifest_path = Path(manifest_path)
    raw = values.get("images", values.get("image"))
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        parts = [p.strip() for p in raw.split(IMAGE_SEPARATOR)]
    elif isinstance(raw, (list, tuple)):
        parts = [str(p).strip() for p in raw]
    else:
        raise DataError(
            f"{manifest_path}:{row}: field 'images' must be a '|'-separated string or a list."
        )
    base = manifest_path.parent
    return [(base / p) if not Path(p).is_absolute() else Path(p) for p in parts if p]


def row_to_product(row: ManifestRow, manifest_path: str | Path) -> Product:
    """Turn a manifest row into a :class:`fashion.Product` (images are resolved, not opened)."""
    path = Path(manifest_path)
    values = row.values
    fields = {name: _text(values.get(name), path, row.row, name) for name in TEXT_FIELDS}
    raw_id = values.get("id")
    return Product(
        id=None if raw_id in (None, "") else str(raw_id),
        images=[str(p) for p in image_paths(values, path, row.row)],
        **fields,
    )


__all__ = [
    "ManifestRow",
    "image_paths",
    "iter_manifest",
    "manifest_columns",
    "manifest_format",
    "row_to_product",
]
