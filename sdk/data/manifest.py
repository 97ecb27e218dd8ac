"""Dataset and prediction manifests: CSV, JSONL or Parquet, read as a stream of rows.

A manifest row describes one product: ``id``, ``images`` (one or more paths relative to the
manifest file; ``|``-separated in CSV/Parquet, a list or a ``|``-separated string in JSONL),
``title``, ``description``, ``brand``, and any attribute columns. Rows are numbered from 1
(the first data row), so an error can name ``file:row``.

One reader serves training, evaluation and ``fashion predict``, and it never lets one bad record
stop the file or swallow its neighbours: a record it cannot read (an unterminated CSV quote, a
row with more cells than the header, a byte that is not UTF-8, a malformed JSON line, a JSON
array, a record over :data:`MAX_RECORD_BYTES`) comes out as a :class:`ManifestRow` whose
``error`` says ``file:line: reason``; :func:`row_to_product` raises it as a :class:`DataError`,
which callers turn into a rejected row. A file that cannot be read at all (not Parquet, no
header, duplicate columns) raises :class:`DataError` before the first row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashion.errors import DataError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
MANIFEST_SUFFIXES = tuple(FORMATS)
"""The file suffixes a manifest may have."""
IMAGE_SEPARATOR = "|"
IMAGE_COLUMNS = ("images", "image")
#: The columns a product is read from; a manifest needs at least one of them.
TEXT_FIELDS = ("title", "description", "brand")
"""The text columns of a manifest, and the text fields of a product."""
INPUT_COLUMNS = (*IMAGE_COLUMNS, *TEXT_FIELDS)
#: A record (a CSV record, a JSONL line) larger than this is rejected; CSV fields may be this big
#: (the csv module's own limit, 128 KiB, would stop the whole file at one long description).
MAX_RECORD_BYTES = 32 << 20
_BOM = "\ufeff"

csv.field_size_limit(MAX_RECORD_BYTES)


@dataclass(frozen=True)
class ManifestRow:
    """One data row: ``row`` is 1-based, ``values`` maps column names to raw values.

    ``line`` is the 1-based line of the file where the record starts (CSV/JSONL); ``error`` is
    set (``file:line: reason``) when the record could not be read, and ``values`` then holds
    nothing, or what could be salvaged (an ``id``).
    """

    row: int
    values: dict[str, Any]
    line: int | None = None
    error: str | None = None


def manifest_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: unsupported manifest format {suffix or '(no extension)'}; "
            "use .csv, .jsonl or .parquet."
        )
    return FORMATS[suffix]


def _check_exists(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"manifest {path} is a folder; pass a .csv, .jsonl or .parquet file.")
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; check the path.")


# ---------------------------------------------------------------------------------------- CSV


def _decode_line(raw: bytes, first: bool) -> str:
    text = raw.decode("utf-8")  # strict: raises UnicodeDecodeError
    return text[1:] if first and text.startswith(_BOM) else text


_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)


def _scan(line: str, state: int = _START) -> int:
    """The CSV quoting state after ``line``, from ``state``; ``_QUOTED`` at the end means the
    record goes on to the next line. Linear: quoted text is skipped with ``str.find``.

    Only a quote at the start of a field opens a quoted field (``5" heel`` is plain text).
    """
    i, n = 0, len(line)
    while i < n:
        if state == _QUOTED:
            j = line.find('"', i)
            if j < 0:
                return _QUOTED
            state, i = _QUOTE_IN_QUOTED, j + 1
            continue
        c = line[i]
        if state == _QUOTE_IN_QUOTED:
            state = _QUOTED if c == '"' else _START if c in ",\r\n" else _UNQUOTED
        elif state == _START:
            state = _QUOTED if c == '"' else _START if c in ",\r\n" else _UNQUOTED
        else:  # unquoted: on to the next delimiter
            ends = [k for k in (line.find(",", i), line.find("\n", i)) if k >= 0]
            if not ends:
                return _UNQUOTED
            state, i = _START, min(ends) + 1
            continue
        i += 1
    return state


def _csv_header(path: Path) -> tuple[list[str], int]:
    """The header's cells and the number of lines it spans; refuses a file without one."""
    with path.open("rb") as f:
        lines: list[str] = []
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(_decode_line(raw, number == 1))
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{number}: the header is not valid UTF-8 ({exc.reason} at byte "
                    f"{exc.start}); save the file as UTF-8."
                ) from None
            text = "".join(lines)
            if not text.strip():
                lines.clear()
                continue
            if _scan(text) != _QUOTED:
                break
            if len(text) > MAX_RECORD_BYTES:
                break
        text = "".join(lines)
    if not text.strip():
        raise DataError(f"{path} is empty: a CSV manifest needs a header row (e.g. id,images,title).")
    try:
        header = next(csv.reader(io.StringIO(text), strict=True))
    except (csv.Error, StopIteration) as exc:
        raise DataError(f"{path}: the header row is malformed CSV ({exc}); fix the first line.") from None
    header = [h.strip() for h in header]
    _check_header(path, header)
    return header, len(lines)


def _check_header(path: Path, columns: list[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataError(
                f"{path}: the column {column!r} appears twice in the header; rename one of them."
            )
        seen.add(column)


def _iter_csv(path: Path) -> Iterator[ManifestRow]:
    """Records of a CSV file, each parsed on its own (strict quoting).

    A quoted field may span lines: lines are gathered until the quotes balance. When the gathered
    record does not parse, has a wrong number of cells although it spans lines, or the file ends
    inside a quote, only the record's first line is rejected and reading starts again on the
    next line, so an unterminated quote cannot swallow the rows after it.
    """
    header, header_lines = _csv_header(path)
    number = 0

    id_column = header.index("id") if "id" in header else None

    def reject(line: int, raw: bytes, reason: str) -> ManifestRow:
        nonlocal number
        number += 1
        values: dict[str, Any] = {}
        if id_column is not None:  # salvage the id, so the reject names the product
            try:
                first = raw.decode("utf-8", "replace").strip("\r\n").replace("\r", " ")
                cells = next(csv.reader([first]), [])
            except csv.Error:
                cells = []
            if len(cells) > id_column and cells[id_column].strip():
                values["id"] = cells[id_column].strip()[:200]
        return ManifestRow(number, values, line, f"{path}:{line}: {reason}")

    with path.open("rb") as f:
        source = enumerate(f, start=1)
        pending: list[tuple[int, bytes]] = []  # lines read ahead, to parse again after a reject

        def next_line() -> tuple[int, bytes] | None:
            if pending:
                return pending.pop(0)
            return next(source, None)

        for _ in range(header_lines):
            next_line()
        while True:
            item = next_line()
            if item is None:
                return
            start, raw = item
            try:
                text = _decode_line(raw, start == 1)
            except UnicodeDecodeError as exc:
                yield reject(start, raw, f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the "
                                    "line); save the file as UTF-8")
                continue
            if not text.strip():
                continue  # a blank line is not a row
            taken = [(start, raw)]
            size = len(raw)
            failure: str | None = None
            state = _scan(text)
            while state == _QUOTED:  # inside a quoted field: the record goes on
                more = next_line()
                if more is None:
                    failure = "a quoted field is never closed (unterminated '\"')"
                    break
                size += len(more[1])
                taken.append(more)
                if size > MAX_RECORD_BYTES:
                    failure = (f"the record is larger than {MAX_RECORD_BYTES >> 20} MiB "
                               "(an unterminated '\"'?)")
                    break
                try:
                    line = _decode_line(more[1], False)
                    text += line
                    state = _scan(line, state)
                except UnicodeDecodeError as exc:
                    failure = f"not valid UTF-8 on line {more[0]} ({exc.reason})"
                    break
            if failure is None and size > MAX_RECORD_BYTES:
                failure = f"the record is larger than {MAX_RECORD_BYTES >> 20} MiB"
            cells: list[str] = []
            if failure is None:
                try:
                    rows = list(csv.reader(io.StringIO(text), strict=True))
                    cells = rows[0] if len(rows) == 1 else []
                    if len(rows) != 1:
                        failure = "malformed CSV: the record does not parse as one row"
                except csv.Error as exc:
                    failure = f"malformed CSV: {exc}"
            if failure is None and len(cells) > len(header):
                failure = (f"the row has {len(cells)} cells but the header has {len(header)} "
                           "columns (an unquoted ',' in a field?)")
            if failure is None and len(taken) > 1 and len(cells) != len(header):
                failure = (f"a quoted field spans lines {start}-{taken[-1][0]} and the record has "
                           f"{len(cells)} of {len(header)} cells (an unterminated '\"'?)")
            if failure is not None:
                pending[:0] = taken[1:]  # read the lines after the first one again
                yield reject(start, raw, failure)
                continue
            number += 1
            values: dict[str, Any] = dict.fromkeys(header)
            values.update(zip(header, cells, strict=False))
            yield ManifestRow(number, values, start)


# -------------------------------------------------------------------------------------- JSONL


def _iter_jsonl(path: Path) -> Iterator[ManifestRow]:
    number = 0
    with path.open("rb") as f:
        for line, raw in enumerate(f, start=1):
            if len(raw) > MAX_RECORD_BYTES:
                number += 1
                yield ManifestRow(number, {}, line, f"{path}:{line}: the line is larger than "
                                                    f"{MAX_RECORD_BYTES >> 20} MiB")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                number += 1
                yield ManifestRow(number, {}, line, f"{path}:{line}: not valid UTF-8 ({exc.reason} "
                                                    f"at byte {exc.start}); save the file as UTF-8")
                continue
            text = text.lstrip(_BOM)
            if not text.strip():
                continue
            number += 1
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield ManifestRow(number, {}, line, f"{path}:{line}: not valid JSON: {exc}")
                continue
            except RecursionError:
                yield ManifestRow(number, {}, line, f"{path}:{line}: the JSON is nested too deeply")
                continue
            if not isinstance(record, dict):
                yield ManifestRow(number, {}, line, f"{path}:{line}: each line must be a JSON "
                                                    f"object, got a JSON {_json_kind(record)}")
                continue
            yield ManifestRow(number, record, line)


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# ------------------------------------------------------------------------------------ Parquet


def _parquet_file(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        size = path.stat().st_size
        raise DataError(
            f"{path} is not a readable Parquet file ({'0 bytes' if size == 0 else exc}); "
            "write it again or export the manifest as CSV/JSONL."
        ) from None


def _iter_parquet(path: Path, batch_rows: int) -> Iterator[ManifestRow]:
    import pyarrow as pa

    parquet = _parquet_file(path)
    _check_header(path, list(parquet.schema_arrow.names))
    number = 0
    batches = parquet.iter_batches(batch_size=batch_rows)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(
                f"{path}: the Parquet data after row {number} cannot be read ({exc}); the file "
                "is damaged. Write it again."
            ) from None
        if batch is None:
            return
        for record in batch.to_pylist():
            number += 1
            yield ManifestRow(number, record)


# ------------------------------------------------------------------------------------- public


def iter_manifest(path: str | Path, *, batch_rows: int = 1024) -> Iterator[ManifestRow]:
    """Yield rows one at a time without loading the whole file (Parquet in record batches).

    Records that cannot be read come out as rows with ``error`` set (see the module docstring).
    """
    path = Path(path)
    kind = manifest_format(path)
    _check_exists(path)
    if kind == "csv":
        return _iter_csv(path)
    if kind == "jsonl":
        return _iter_jsonl(path)
    return _iter_parquet(path, batch_rows)


def manifest_columns(path: str | Path) -> list[str]:
    """The column names of a manifest (the union of keys of the first rows for JSONL)."""
    path = Path(path)
    kind = manifest_format(path)
    _check_exists(path)
    if kind == "csv":
        return _csv_header(path)[0]
    if kind == "parquet":
        return list(_parquet_file(path).schema_arrow.names)
    columns: dict[str, None] = {}
    read = 0
    for row in _iter_jsonl(path):
        columns.update(dict.fromkeys(row.values))
        read += row.error is None
        if read > 100:
            break
    return list(columns)


def check_input_columns(path: str | Path) -> list[str]:
    """Refuse a manifest with none of the columns a product is read from; return its columns."""
    columns = manifest_columns(path)
    if not any(c in columns for c in INPUT_COLUMNS):
        raise DataError(
            f"{path}: none of its columns is a product input, so every row would be predicted "
            f"from nothing. Expected at least one of {', '.join(INPUT_COLUMNS)}; found "
            f"{', '.join(repr(c) for c in columns) or 'no columns'}. Rename the columns."
        )
    return columns


def count_rows(path: str | Path) -> int:
    """How many rows :func:`iter_manifest` yields (unreadable records included)."""
    return sum(1 for _ in iter_manifest(path))


__all__ = [
    "INPUT_COLUMNS",
    "MANIFEST_SUFFIXES",
    "MAX_RECORD_BYTES",
    "TEXT_FIELDS",
    "ManifestRow",
    "check_input_columns",
    "count_rows",
    "iter_manifest",
    "manifest_columns",
    "manifest_format",
]
