"""Property tests (Hypothesis): generated manifests and image bytes keep the invariants — every
row is predicted or rejected exactly once, nothing raises anything but a fashion error."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashion import DataError
from fashion.data.images import load_image
from fashion.data.manifest import iter_manifest
from fashion.model.inputs import row_to_product
from tests.faults import ledger

CELL = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows=st.lists(st.tuples(CELL, CELL), min_size=0, max_size=12))
def test_written_csv_reads_back_exactly(rows: list[tuple[str, str]], tmp_path_factory) -> None:
    """Whatever text csv.writer quotes (commas, quotes, newlines), every row comes back."""
    path = tmp_path_factory.mktemp("p") / "m.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "title"])
        for i, (_, title) in enumerate(rows):
            writer.writerow([f"r{i}", title])
    back = list(iter_manifest(path))
    ok = [r.values.get("title") for r in back] == [t for _, t in rows] and all(
        r.error is None for r in back)
    ledger.record("property", "csv.writer round trip", "predicted", "predicted" if ok else "silent-wrong")
    assert ok, (rows, back)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_any_bytes_as_a_manifest_account_for_every_row(data: bytes, tmp_path_factory) -> None:
    """Byte soup as CSV and JSONL: rows come out numbered 1..n, each readable or rejected."""
    folder = tmp_path_factory.mktemp("soup")
    for suffix in (".csv", ".jsonl"):
        path = folder / f"m{suffix}"
        path.write_bytes(b"id,title\n" + data if suffix == ".csv" else data)
        try:
            rows = list(iter_manifest(path))
        except DataError:
            continue
        assert [r.row for r in rows] == list(range(1, len(rows) + 1))
        for row in rows:
            try:
                row_to_product(row, path)
            except DataError:
                pass
    ledger.record("property", "byte soup manifests", "rejected", "rejected")


@SETTINGS
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                                                              b"GIF89a", b"II*\x00", b"RIFF"]))
def test_any_bytes_as_an_image_decode_or_raise_a_data_error(data: bytes, prefix: bytes) -> None:
    try:
        image = load_image(prefix + data, where="product p")
    except DataError as exc:
        assert str(exc).startswith("product p")
    else:
        assert image.mode == "RGB"
    ledger.record("property", "byte soup images", "rejected", "rejected")


@SETTINGS
@given(width=st.integers(1, 40), height=st.integers(1, 40),
       mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"]))
def test_any_mode_and_size_loads_as_rgb(width: int, height: int, mode: str) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    fmt = "TIFF" if mode in ("I", "F", "CMYK") else "PNG"
    Image.new(mode, (width, height)).save(buffer, format=fmt)
    image = load_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (width, height)
    ledger.record("property", "image modes and sizes", "predicted", "predicted")


