"""Bad labeled data through `fashion audit`: every row is audited or reported as skipped with
its file:line, none is lost, odd text (huge, markup, mojibake, no words) is read, and bad flags
or too few rows give a clear message instead of a traceback or a silent empty report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.cli import cli
from fashion.errors import FashionError
from fashion.registry import save_bundle
from tests.faults import ledger
from tests.tiny_model import make_model

HEADER = b"id,images,title,color\n"
GOOD = b"".join(
    f"g{i},{'good.png' if i % 2 else 'blue.png'},{'red' if i % 2 else 'blue'} item {i},{'red' if i % 2 else 'blue'}\n".encode()
    for i in range(20)
)
# kind -> (the extra row, "audited" (kept) or "skipped", a text the output must contain)
ROWS: dict[str, tuple[bytes, str, str | None]] = {
    "missing photo": (b"b,gone.png,red thing,red\n", "skipped", "gone.png"),
    "non-UTF-8 byte in the title": (b"b,good.png,caf\xe9,red\n", "skipped", "UTF-8"),
    "no image and no text": (b"b,,,red\n", "skipped", ":22"),
    "title over 128 KiB": (b"b,good.png," + b"red " * 50_000 + b",red\n", "audited", None),
    "title with no words": (b"b,good.png,!!! ... ???,red\n", "audited", None),
    "markup and mojibake": ("b,good.png,<b>Cr\u00c3\u00a8me</b>&nbsp;dress,red\n".encode(), "audited", None),
    "emoji and control characters": ("b,good.png,red \U0001f457 dress\u0007\u200f,red\n".encode(), "audited", None),
    "label no taxonomy knows": (b"b,good.png,red dress,vermilion-ish\n", "skipped", "vermilion-ish"),
    "empty label cell": (b"b,good.png,red dress,\n", "skipped", ":22"),
}
SUMMARY = re.compile(r"in (\d+) rows(?: \((\d+) rows skipped)?")


@pytest.fixture(scope="module")
def bundle(plugin: None, images: Path) -> Path:
    return save_bundle(make_model(0), images / "bundle")


def _audit(bundle: Path, manifest: Path, *flags: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli, ["audit", str(manifest), "--model", str(bundle), "--attribute", "color",
                                      "--out", str(manifest.with_suffix(".suspects.csv")), *flags])
    error = result.exception if result.exit_code and not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output, error


@pytest.mark.parametrize("kind", list(ROWS))
def test_rows(kind: str, bundle: Path, images: Path) -> None:
    row, expected, says = ROWS[kind]
    manifest = images / f"audit-{abs(hash(kind))}.csv"
    manifest.write_bytes(HEADER + GOOD + row)
    code, output, error = _audit(bundle, manifest)
    if error is not None or code != 0:
        ledger.record("audit", kind, expected, "traceback" if error is not None else "error")
        raise AssertionError(output) from error
    found = SUMMARY.search(output)
    assert found, output
    audited, skipped = int(found.group(1)), int(found.group(2) or 0)
    lost = 21 - audited - skipped
    observed = "lost-rows" if lost else ("audited" if skipped == 0 else "skipped")
    if says is not None and says not in output:
        observed = "silent-wrong"  # the row's problem is not named
    ledger.record("audit", kind, "predicted" if expected == "audited" else "rejected",
                  {"audited": "predicted", "skipped": "rejected"}.get(observed, observed), lost)
    assert observed == expected, output


@pytest.mark.parametrize(
    ("kind", "flags", "match"),
    [("--folds 1", ["--folds", "1"], "at least 2"),
     ("more folds than rows allow", ["--folds", "15"], "color not audited")],
)
def test_flags(kind: str, flags: list[str], match: str, bundle: Path, images: Path,
               caplog: pytest.LogCaptureFixture) -> None:
    manifest = images / "audit-flags.csv"
    manifest.write_bytes(HEADER + GOOD)
    code, output, error = _audit(bundle, manifest, *flags)
    said = output + caplog.text + (str(error) if isinstance(error, FashionError) else "")
    if error is not None and not isinstance(error, FashionError):  # `fashion` prints FashionErrors
        observed = "traceback"
    else:
        observed = "error" if match in said else "silent-wrong"
    ledger.record("audit", kind, "error", observed)
    assert observed == "error", said
