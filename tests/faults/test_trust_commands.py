"""The commands that write beside what they read (`fashion audit`, `review`, `calibrate`,
`export`, `optimize`, `add-attribute`, `evaluate`, `predict`, `compose`, `pull`): an output that
is an input, lies inside one (a bundle) or holds one is refused before anything is read, and every input stays byte for byte; a bundle `--out` is always
a new folder. `fashion review` and `fashion calibrate` keep predict's row contract: rows in =
used + rejected, each rejected row named by file:line and reason, and a row with no image and no
text is rejected, never queued with what the model's priors say. (Bad labeled rows through
`fashion audit` are the "audit" family, tests/faults/test_audit.py.)"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.cli import cli
from fashion.errors import FashionError
from fashion.registry import save_bundle
from tests.faults import ledger
from tests.tiny_model import make_model

AREA = "trust-commands"
HEADER = b"id,images,title,color\n"
GOOD = b"".join(
    f"g{i},{'good.png' if i % 2 else 'blue.png'},{'red' if i % 2 else 'blue'} item {i},{'red' if i % 2 else 'blue'}\n".encode()
    for i in range(20)
)


@pytest.fixture(scope="module")
def template(plugin: None, images: Path) -> Path:
    """A workspace to copy: photos, data.csv (20 rows labeled with color), pattern.csv (the same
    rows labeled with a new attribute), a bundle and m-trust (a copy of it)."""
    folder = images.parent / "trust-template"
    if not folder.is_dir():
        folder.mkdir()
        for name in ("good.png", "blue.png"):
            shutil.copyfile(images / name, folder / name)
        (folder / "data.csv").write_bytes(HEADER + GOOD)
        (folder / "pattern.csv").write_bytes(HEADER.replace(b"color", b"pattern") + GOOD.replace(
            b",red\n", b",solid\n").replace(b",blue\n", b",striped\n"))
        save_bundle(make_model(0), folder / "bundle")
        shutil.copytree(folder / "bundle", folder / "m-trust")
    return folder


@pytest.fixture
def work(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the template (the current folder), with links to data.csv and a
    folder that is not empty."""
    folder = Path(shutil.copytree(template, tmp_path / "work"))
    (folder / "link.csv").symlink_to(folder / "data.csv")
    os.link(folder / "data.csv", folder / "hard.csv")
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("keep me")
    (folder / "bundle-link").symlink_to(folder / "bundle")
    monkeypatch.chdir(folder)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links as their target), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _invoke(args: list[str]) -> tuple[str, str]:
    """Run a command; ``("error", message)``, ``("traceback", text)`` or ``("ran", output)``."""
    result = CliRunner().invoke(cli, args)
    error = result.exception
    if isinstance(error, FashionError):  # `fashion` prints these as one line
        return "error", str(error)
    if error is not None and not isinstance(error, SystemExit):
        return "traceback", f"{type(error).__name__}: {error}"
    return ("error" if result.exit_code else "ran"), result.output


AUDIT = ["audit", "data.csv", "--model", "bundle", "--attribute", "color"]
CALIBRATE = ["calibrate", "bundle", "--data", "data.csv"]
ADD = ["add-attribute", "pattern", "--data", "pattern.csv", "--base", "bundle", "--gate-data", "data.csv",
       "--epochs", "1"]
# kind -> (argv, what the message says, what must stay unchanged: a file or folder)
PATHS: dict[str, tuple[list[str], str, str]] = {
    "audit --out DATA": ([*AUDIT, "--out", "data.csv"], "is the input data.csv", "data.csv"),
    "audit --out ./DATA": ([*AUDIT, "--out", "./data.csv"], "is the input", "data.csv"),
    "audit --out a symlink to DATA": ([*AUDIT, "--out", "link.csv"], "is the input", "data.csv"),
    "audit --out a hard link to DATA": ([*AUDIT, "--out", "hard.csv"], "is the input", "data.csv"),
    "audit --out a file inside MODEL": ([*AUDIT, "--out", "bundle/fashion.json"],
                                        "inside the input folder", "bundle"),
    "audit --out inside MODEL through a link": ([*AUDIT, "--out", "bundle-link/suspects.csv"],
                                                "inside the input folder", "bundle"),
    "audit --out the second DATA": (["audit", "data.csv", "link.csv", "--model", "bundle", "--out",
                                     "link.csv"], "is the input", "data.csv"),
    "review --out INPUT": (["review", "bundle", "data.csv", "--out", "data.csv", "--budget", "3"],
                           "is the input data.csv", "data.csv"),
    "review --out ../INPUT": (["review", "bundle", "data.csv", "--out", "../work/data.csv",
                               "--budget", "3"], "is the input", "data.csv"),
    "review --out a file inside MODEL": (["review", "bundle", "data.csv", "--out", "bundle/q.csv",
                                          "--budget", "3"], "inside the input folder", "bundle"),
    "calibrate --out MODEL": ([*CALIBRATE, "--out", "bundle"], "is the input folder bundle", "bundle"),
    "calibrate --out ./MODEL/": ([*CALIBRATE, "--out", "./bundle/"], "is the input folder", "bundle"),
    "calibrate --out a link to MODEL": ([*CALIBRATE, "--out", "bundle-link"], "is the input folder",
                                        "bundle"),
    "calibrate --out inside MODEL": ([*CALIBRATE, "--out", "bundle/calibrated"],
                                     "inside the input folder", "bundle"),
    "calibrate --out a folder holding MODEL": ([*CALIBRATE, "--out", "."], "contains the input", "bundle"),
    "calibrate --out an existing bundle": ([*CALIBRATE, "--out", "m-trust"], "already exists", "m-trust"),
    "calibrate --out an existing folder": ([*CALIBRATE, "--out", "notes"], "already exists", "notes"),
    "calibrate --out DATA (a file)": ([*CALIBRATE, "--out", "data.csv"], "is a file", "data.csv"),
    "calibrate: the plots folder of --out is MODEL": (
        ["calibrate", "m-trust", "--data", "data.csv", "--out", "m"], "is the input folder m-trust",
        "m-trust"),
    "export --data the bundle's fashion.json": (
        ["export", "bundle", "--data", "bundle/fashion.json"], "is the input", "bundle"),
    "export --data a link to the bundle's fashion.json": (
        ["export", "bundle-link", "--data", "bundle/fashion.json"], "is the input", "bundle"),
    "optimize --data the bundle's fashion.json": (
        ["optimize", "bundle", "--no-onnx", "--data", "bundle/fashion.json"], "is the input", "bundle"),
    "add-attribute --out BASE": ([*ADD, "--out", "bundle"], "is the input folder bundle", "bundle"),
    "add-attribute --out a folder holding --data": ([*ADD, "--out", "."], "contains the input",
                                                    "pattern.csv"),
    "add-attribute --out an existing folder": ([*ADD, "--out", "notes"], "already exists", "notes"),
    "evaluate --out MODEL": (["evaluate", "bundle", "data.csv", "--out", "bundle"], "is the input folder",
                             "bundle"),
    "evaluate --out inside MODEL": (["evaluate", "bundle", "data.csv", "--out", "bundle/report"],
                                    "inside the input folder", "bundle"),
    "predict --out a file inside MODEL": (["predict", "bundle", "data.csv", "--out", "bundle/p.jsonl"],
                                          "inside the model bundle", "bundle"),
    "predict --rejects a file inside MODEL through a link": (
        ["predict", "bundle", "data.csv", "--out", "p.jsonl", "--rejects", "bundle-link/r.jsonl"],
        "inside the model bundle", "bundle"),
    "compose --out BASE": (["compose", "bundle", "m-trust", "--out", "bundle"], "is the BASE bundle",
                           "bundle"),
    "compose --out a HEAD bundle": (["compose", "bundle", "m-trust", "--out", "m-trust"],
                                    "is the HEAD m-trust", "m-trust"),
    "compose --out an existing folder": (["compose", "bundle", "m-trust", "--out", "notes"],
                                         "already exists", "notes"),
    "compose --out a folder holding BASE": (["compose", "bundle", "m-trust", "--out", "."],
                                            "contains the BASE", "bundle"),
}


def _check_refused(kind: str, call: Callable[[], tuple[str, str]], match: str, work: Path,
                   kept: str) -> None:
    """Record and assert a refusal: a clear error naming ``match``, nothing written anywhere."""
    before = _snapshot(work)
    observed, message = call()
    after = _snapshot(work)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    lost = int(any(k == kept or k.startswith(kept + "/") for k in changed))
    if observed == "traceback":
        pass
    elif lost:
        observed = "lost-rows" if kept.endswith(".csv") else "silent-wrong"
    elif observed != "error" or changed:
        observed = "silent-wrong"  # ran, or wrote something before it stopped
    ledger.record(AREA, kind, "error", observed, lost=lost)
    assert observed == "error", (kind, message, changed)
    assert match.lower() in message.lower(), (kind, message)  # the message says why


@pytest.mark.parametrize("kind", list(PATHS))
def test_output_is_an_input(kind: str, work: Path) -> None:
    args, match, kept = PATHS[kind]
    _check_refused(kind, lambda: _invoke(args), match, work, kept)


def test_calibrate_out_inside_a_registry_revision(work: Path, fashion_home: Path) -> None:
    """A model URI resolves to a revision folder of the registry: --out inside it is refused
    too (checked once the URI is resolved, before any data is read)."""
    from fashion.registry.bundle import load_bundle
    from fashion.registry.local import LocalRegistry

    LocalRegistry().publish(work / "bundle", "shoes")
    revision = load_bundle("local://shoes").path
    before = _snapshot(fashion_home)
    observed, message = _invoke(["calibrate", "local://shoes", "--data", "data.csv",
                                 "--out", str(revision / "calibrated")])
    lost = int(_snapshot(fashion_home) != before)
    if observed == "ran" or (observed == "error" and lost):
        observed = "silent-wrong"
    ledger.record(AREA, "calibrate local://NAME --out inside its revision", "error", observed, lost)
    assert observed == "error", message
    assert "inside the input folder" in message, message


@pytest.mark.parametrize("where", ["the revision itself", "inside the revision"])
def test_pull_out_into_its_own_revision(where: str, work: Path, fashion_home: Path) -> None:
    """`fashion pull local://NAME --out DIR` copies a revision out; DIR is never the revision."""
    from fashion.registry.bundle import load_bundle
    from fashion.registry.local import LocalRegistry

    LocalRegistry().publish(work / "bundle", "shoes")
    revision = load_bundle("local://shoes").path
    out = revision if where == "the revision itself" else revision / "copy"
    before = _snapshot(fashion_home)
    observed, message = _invoke(["pull", "local://shoes", "--out", str(out)])
    lost = int(_snapshot(fashion_home) != before)
    if observed == "ran" or (observed == "error" and lost):
        observed = "silent-wrong"
    ledger.record(AREA, f"pull --out {where}", "error", observed, lost)
    assert observed == "error", message
    assert "the pulled bundle" in message, message


# kind -> (the 21st row, "used"/"rejected", a text the report must contain)
ROWS: dict[str, tuple[bytes, str, str]] = {
    "no image and no text": (b"b,,,red\n", "rejected", "and no text"),
    "missing photo": (b"b,gone.png,red thing,red\n", "rejected", "gone.png"),
    "photo that is not an image": (b"b,notes/todo.txt,red thing,red\n", "rejected", "todo.txt"),
    "photo path is a folder": (b"b,notes,red thing,red\n", "rejected", "notes"),
    "non-UTF-8 byte in the title": (b"b,good.png,caf\xe9,red\n", "rejected", "UTF-8"),
    "text only, no photo": (b"b,,red thing,red\n", "used", ""),
}
REVIEW = re.compile(r"(\d+) rows in = (\d+) ranked \+ (\d+) rejected")
CALIBRATED = re.compile(r"(\d+) rows in = (\d+) used \+ (\d+) skipped")


def _row_outcome(output: str, found: re.Match[str] | None, says: str) -> tuple[str, int]:
    """Classify one row kind: rows in = used + rejected; the bad row named with file:line."""
    if not found:
        return "silent-wrong", 0
    rows_in, used, rejected = (int(g) for g in found.groups())
    lost = 21 - used - rejected + (rows_in != 21)
    if lost:
        return "lost-rows", lost
    observed = "rejected" if rejected == 1 else "predicted"
    if observed == "rejected" and ("data.csv:22" not in output or says not in output):
        observed = "silent-wrong"  # the row's place or problem is not named
    return observed, 0


@pytest.mark.parametrize("kind", list(ROWS))
def test_review_rows(kind: str, work: Path) -> None:
    row, expected, says = ROWS[kind]
    (work / "data.csv").write_bytes(HEADER + GOOD + row)
    observed, output = _invoke(["review", "bundle", "data.csv", "--out", "queue.csv", "--budget", "30"])
    lost = 0
    if observed == "ran":
        observed, lost = _row_outcome(output, REVIEW.search(output), says)
        queued = {r["id"] for r in csv.DictReader((work / "queue.csv").open(encoding="utf-8"))}
        if expected == "rejected" and "b" in queued:
            observed = "silent-wrong"  # a rejected row is queued all the same
    want = "rejected" if expected == "rejected" else "predicted"
    ledger.record(AREA, f"review: {kind}", want, observed, lost)
    assert observed == want, output


@pytest.mark.parametrize("kind", ["no image and no text", "missing photo", "non-UTF-8 byte in the title"])
def test_calibrate_rows(kind: str, work: Path) -> None:
    row, expected, says = ROWS[kind]
    (work / "data.csv").write_bytes(HEADER + GOOD + row)
    observed, output = _invoke([*CALIBRATE, "--out", "calibrated"])
    lost = 0
    if observed == "ran":
        observed, lost = _row_outcome(output, CALIBRATED.search(output), says)
    ledger.record(AREA, f"calibrate: {kind}", "rejected", observed, lost)
    assert observed == "rejected", output


def test_calibrate_into_an_empty_folder_runs(work: Path) -> None:
    """An empty folder holds nothing to lose: a calibrated bundle may go there; MODEL stays."""
    (work / "empty").mkdir()
    before = _snapshot(work / "bundle")
    observed, output = _invoke([*CALIBRATE, "--out", "empty"])
    ok = observed == "ran" and (work / "empty" / "fashion.json").is_file()
    unchanged = _snapshot(work / "bundle") == before
    ledger.record(AREA, "calibrate --out an empty folder", "predicted",
                  "predicted" if ok and unchanged else observed if not ok else "silent-wrong")
    assert ok and unchanged, output
