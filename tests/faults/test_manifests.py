"""Bad manifests (CSV, JSONL, Parquet): every row is predicted or rejected with file:line and a
reason, none is lost, and a file that cannot be read at all is refused before the first row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.conftest import check_error, check_rows, run_manifest

HEADER = b"id,images,title\n"
GOOD1 = b"a,good.png,red dress\n"
GOOD2 = b"z,blue.png,blue shirt\n"

# kind -> (file bytes, expected state of every id, a word every reject reason contains)
CSV_CASES: dict[str, tuple[bytes, dict[str, str], str | None]] = {
    "unterminated quote keeps the rows after it": (
        HEADER + GOOD1 + b'b,"good.png,never closed\n' + b"c,good.png,third\n" + GOOD2,
        {"a": "predicted", "b": "rejected", "c": "predicted", "z": "predicted"}, "quote"),
    "unterminated quote closed by a later quote": (
        HEADER + GOOD1 + b'b,"good.png,open\n' + b'c,good.png,"fine"\n' + GOOD2,
        {"a": "predicted", "b": "rejected", "c": "predicted", "z": "predicted"}, "csv"),
    "unterminated quote on the last line": (
        HEADER + GOOD1 + b'b,good.png,"open', {"a": "predicted", "b": "rejected"}, "quote"),
    "extra cell": (HEADER + GOOD1 + b"b,good.png,red,extra\n" + GOOD2,
                   {"a": "predicted", "b": "rejected", "z": "predicted"}, "cells"),
    "many extra cells": (HEADER + b"b,good.png,a,b,c,d,e\n" + GOOD2,
                         {"b": "rejected", "z": "predicted"}, "cells"),
    "missing trailing cell": (HEADER + b"b,good.png\n" + GOOD2,
                              {"b": "predicted", "z": "predicted"}, None),
    "non-UTF-8 byte": (HEADER + GOOD1 + b"b,good.png,caf\xe9\n" + GOOD2,
                       {"a": "predicted", "b": "rejected", "z": "predicted"}, "UTF-8"),
    "whole file latin-1": (HEADER + b"b,good.png,caf\xe9\n" + b"c,good.png,cr\xe8me\n",
                           {"b": "rejected", "c": "rejected"}, "UTF-8"),
    "BOM": (b"\xef\xbb\xbf" + HEADER + GOOD1, {"a": "predicted"}, None),
    "CRLF line ends": (HEADER.replace(b"\n", b"\r\n") + GOOD1.replace(b"\n", b"\r\n"),
                       {"a": "predicted"}, None),
    "quoted newline": (HEADER + b'b,good.png,"two\nlines"\n' + GOOD2,
                       {"b": "predicted", "z": "predicted"}, None),
    "field over 128 KiB": (HEADER + b"b,good.png," + b"x" * 200_000 + b"\n" + GOOD2,
                           {"b": "predicted", "z": "predicted"}, None),
    "blank lines": (HEADER + b"\n" + GOOD1 + b"\n\n   \n" + GOOD2,
                    {"a": "predicted", "z": "predicted"}, None),
    "row with no image and no text": (HEADER + b"b,,\n" + GOOD2,
                                      {"b": "rejected", "z": "predicted"}, "no image and no text"),
    "whitespace-only title and no image": (HEADER + b"b,,   \n" + GOOD2,
                                           {"b": "rejected", "z": "predicted"}, "no image"),
    "missing image": (HEADER + b"b,gone.png,x\n" + GOOD2,
                      {"b": "rejected", "z": "predicted"}, "does not exist"),
    "image is a folder": (HEADER + b"b,.,x\n" + GOOD2, {"b": "rejected", "z": "predicted"},
                          "folder"),
    "image is a URL": (HEADER + b"b,https://example.com/a.png,x\n" + GOOD2,
                       {"b": "rejected", "z": "predicted"}, "URLs are not fetched"),
    "JSON list of images in a cell": (HEADER + b'b,"[""good.png"", ""blue.png""]",x\n' + GOOD2,
                                      {"b": "predicted", "z": "predicted"}, None),
    "broken JSON list in a cell": (HEADER + b'b,"[good.png",x\n' + GOOD2,
                                   {"b": "rejected", "z": "predicted"}, "does not exist"),
    "empty separators": (HEADER + b"b,good.png||blue.png|,x\n" + GOOD2,
                         {"b": "predicted", "z": "predicted"}, None),
    "quote inside an unquoted field": (HEADER + b'b,good.png,5" heel\n' + GOOD2,
                                       {"b": "predicted", "z": "predicted"}, None),
    "NUL byte in a cell": (HEADER + b"b,good.png,nul\x00here\n" + GOOD2,
                           {"b": "predicted", "z": "predicted"}, None),
    "header only": (HEADER, {}, None),
}

JSONL_CASES: dict[str, tuple[bytes, dict[str, str], str | None]] = {
    "malformed line": (b'{"id": "a", "title": "x"}\n{"id": "b", title\n{"id": "z", "title": "y"}\n',
                       {"a": "predicted", "z": "predicted"}, "JSON"),
    "JSON array line": (b'[1, 2]\n{"id": "z", "title": "y"}\n', {"z": "predicted"}, "array"),
    "JSON string line": (b'"text"\n{"id": "z", "title": "y"}\n', {"z": "predicted"}, "object"),
    "JSON number line": (b'42\n{"id": "z", "title": "y"}\n', {"z": "predicted"}, "object"),
    "JSON null line": (b'null\n{"id": "z", "title": "y"}\n', {"z": "predicted"}, "object"),
    "BOM at the start": (b'\xef\xbb\xbf{"id": "a", "title": "x"}\n', {"a": "predicted"}, None),
    "BOM in a later line": (b'{"id": "a", "title": "x"}\n\xef\xbb\xbf{"id": "z", "title": "y"}\n',
                            {"a": "predicted", "z": "predicted"}, None),
    "non-UTF-8 line": (b'{"id": "a", "title": "x"}\n{"id": "b", "title": "caf\xe9"}\n'
                       b'{"id": "z", "title": "y"}\n', {"a": "predicted", "z": "predicted"},
                       "UTF-8"),
    "deeply nested line": (b"[" * 100_000 + b"]" * 100_000 + b'\n{"id": "z", "title": "y"}\n',
                           {"z": "predicted"}, "JSON"),
    "title is a number": (b'{"id": "b", "title": 5}\n{"id": "z", "title": "y"}\n',
                          {"b": "rejected", "z": "predicted"}, "must be text"),
    "title is a list": (b'{"id": "b", "title": ["x"]}\n{"id": "z", "title": "y"}\n',
                        {"b": "rejected", "z": "predicted"}, "must be text"),
    "title is an object": (b'{"id": "b", "title": {"a": 1}}\n{"id": "z", "title": "y"}\n',
                           {"b": "rejected", "z": "predicted"}, "must be text"),
    "images is a number": (b'{"id": "b", "images": 7}\n{"id": "z", "title": "y"}\n',
                           {"b": "rejected", "z": "predicted"}, "images"),
    "images holds null": (b'{"id": "b", "images": [null]}\n{"id": "z", "title": "y"}\n',
                          {"b": "rejected", "z": "predicted"}, "images"),
    "images is an object": (b'{"id": "b", "images": {"a": 1}}\n{"id": "z", "title": "y"}\n',
                            {"b": "rejected", "z": "predicted"}, "images"),
    "NaN title and nothing else": (b'{"id": "b", "title": NaN}\n{"id": "z", "title": "y"}\n',
                                   {"b": "rejected", "z": "predicted"}, "no image"),
    "empty object": (b'{"id": "b"}\n{"id": "z", "title": "y"}\n',
                     {"b": "rejected", "z": "predicted"}, "no image"),
    "unknown extra keys": (b'{"id": "b", "title": "x", "colour": "red"}\n', {"b": "predicted"},
                           None),
    "numeric id": (b'{"id": 17, "title": "x"}\n', {"17": "predicted"}, None),
    "lone surrogate in the id": (b'{"id": "b\\ud800", "title": "x"}\n{"id": "z", "title": "y"}\n',
                                 {"b\ud800": "predicted", "z": "predicted"}, None),
    "CRLF line ends": (b'{"id": "a", "title": "x"}\r\n{"id": "z", "title": "y"}\r\n',
                       {"a": "predicted", "z": "predicted"}, None),
}


def _write(folder: Path, kind: str, suffix: str, data: bytes) -> Path:
    path = folder / (kind.replace(" ", "-").replace("/", "") + suffix)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", list(CSV_CASES))
def test_csv(kind: str, predictor, images: Path) -> None:
    data, expected, reason = CSV_CASES[kind]
    outcome = run_manifest(predictor, _write(images, kind, ".csv", data))
    check_rows("manifest-csv", kind, outcome, expected, reason)
    for reject in outcome.rejected.values():  # file:line names the physical line
        assert ".csv:" in reject["reason"] or "image" in reject["reason"]


def test_csv_reject_names_the_right_line(predictor, images: Path) -> None:
    data = HEADER + GOOD1 + b'b,"multi\nline",x\n' + b"c,good.png,caf\xe9\n" + GOOD2
    outcome = run_manifest(predictor, _write(images, "line-numbers", ".csv", data))
    check_rows("manifest-csv", "non-UTF-8 after a multi-line record", outcome,
               {"a": "predicted", "b": "rejected", "c": "rejected", "z": "predicted"})
    reasons = {r["id"]: r["reason"] for r in outcome.rejected.values()}
    assert "line-numbers.csv:5:" in reasons["c"], reasons  # physical line 5, data row 3


@pytest.mark.parametrize("kind", list(JSONL_CASES))
def test_jsonl(kind: str, predictor, images: Path) -> None:
    data, expected, reason = JSONL_CASES[kind]
    outcome = run_manifest(predictor, _write(images, kind, ".jsonl", data))
    unnamed = [r for r in outcome.rejected.values() if r["id"] is None]
    if outcome.kind == "ran":  # a line that is not an object has no id: name it by its row
        for r in unnamed:
            r["id"] = f"row{r['row']}"
        expected = {**expected, **{f"row{r['row']}": "rejected" for r in unnamed}}
    check_rows("manifest-jsonl", kind, outcome, expected, reason)


@pytest.mark.parametrize(
    ("kind", "data", "match"),
    [
        ("empty CSV", b"", "empty"),
        ("duplicate CSV column", b"id,title,title\na,x,y\n", "appears twice"),
        ("CSV columns match nothing", b"sku,colour\n1,red\n", "expected at least one of"),
        ("JSONL keys match nothing", b'{"sku": 1}\n', "expected at least one of"),
        ("CSV header not UTF-8", b"id,t\xefitle\na,x\n", "UTF-8"),
        ("0-byte Parquet", b"", "Parquet"),
        ("corrupt Parquet", b"PAR1" + b"\x00garbage" * 50 + b"PAR1", "Parquet"),
        ("text file named .parquet", b"id,title\na,x\n", "Parquet"),
        ("unsupported extension", b"id,title\na,x\n", "unsupported manifest format"),
    ],
)
def test_unreadable_files_are_refused_up_front(kind: str, data: bytes, match: str, predictor,
                                               images: Path) -> None:
    suffix = ".parquet" if "Parquet" in kind or "parquet" in kind else (
        ".jsonl" if "JSONL" in kind else ".txt" if "extension" in kind else ".csv")
    path = _write(images, kind, suffix, data)

    def call() -> None:
        outcome = run_manifest(predictor, path)
        if outcome.kind == "traceback":
            raise RuntimeError(outcome.message)
        if outcome.kind == "error":
            from fashion import DataError

            raise DataError(outcome.message)

    check_error("manifest-file", kind, call, match)


def _parquet(path: Path, table: dict[str, list[object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(table), path)
    return path


def test_parquet_rows(predictor, images: Path) -> None:
    path = _parquet(images / "mixed.parquet", {
        "id": ["a", "b", "c", "d"],
        "images": [["good.png"], None, ["good.png", "blue.png"], None],
        "title": ["red", None, None, "  "],
    })
    check_rows("manifest-parquet", "list column, nulls, blank text", run_manifest(predictor, path),
               {"a": "predicted", "b": "rejected", "c": "predicted", "d": "rejected"}, "no image")


def test_parquet_title_of_the_wrong_type(predictor, images: Path) -> None:
    path = _parquet(images / "ints.parquet", {"id": ["a", "b"], "title": [1, 2]})
    check_rows("manifest-parquet", "integer title column", run_manifest(predictor, path),
               {"a": "rejected", "b": "rejected"}, "must be text")


def test_parquet_truncated(predictor, images: Path) -> None:
    good = _parquet(images / "whole.parquet", {"id": ["a"], "title": ["x"]})
    path = images / "truncated.parquet"
    path.write_bytes(good.read_bytes()[:-20])
    outcome = run_manifest(predictor, path)
    check_error("manifest-file", "truncated Parquet",
                lambda: (_ for _ in ()).throw(__import__("fashion").DataError(outcome.message))
                if outcome.kind == "error" else outcome, "Parquet")
    assert outcome.kind == "error"


def test_record_over_the_size_limit(predictor, images: Path, monkeypatch) -> None:
    from fashion.data import manifest

    monkeypatch.setattr(manifest, "MAX_RECORD_BYTES", 1000)
    csv_path = _write(images, "huge-record", ".csv", HEADER + b'b,good.png,"' + b"x" * 5000
                      + b'"\n' + GOOD2)
    check_rows("manifest-csv", "record over the size limit", run_manifest(predictor, csv_path),
               {"b": "rejected", "z": "predicted"}, "larger than")
    jsonl = _write(images, "huge-line", ".jsonl", json.dumps({"id": "b", "title": "x" * 5000})
                   .encode() + b'\n{"id": "z", "title": "y"}\n')
    outcome = run_manifest(predictor, jsonl)
    for r in outcome.rejected.values():
        r["id"] = r["id"] or "b"
    check_rows("manifest-jsonl", "line over the size limit", outcome,
               {"b": "rejected", "z": "predicted"}, "larger than")
