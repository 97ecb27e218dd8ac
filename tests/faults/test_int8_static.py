"""`fashion optimize --precision int8-static` and the graph it writes: bad calibration data is
refused with the file named, a calibration the gate cannot validate leaves no int8-static path
behind, and a damaged int8-static graph or record is refused by name, never predicted with."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion import FashionError, Predictor
from fashion.cli import cli
from fashion.registry import save_bundle
from fashion.registry.bundle import read_index
from tests.faults import ledger
from tests.tiny_model import image, make_model

pytest.importorskip("onnxruntime")
AREA = "int8-static"


def _manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "images", "title"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def template(plugin: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with photos, calibration manifests and a bundle whose int8-static graph the gate
    validated (optimized once for the module; each test works on a copy)."""
    folder = tmp_path_factory.mktemp("int8-static")
    colors = ["red", "blue", (20, 20, 90), (200, 120, 40), (10, 160, 30), (240, 240, 240)]
    for i, color in enumerate(colors):
        image(color).save(folder / f"{i}.png")
    image((0, 0, 0)).save(folder / "black.png")
    model = make_model(0)
    predicted = model.predict([{"images": [folder / f"{i}.png"]} for i in range(len(colors))])
    with open(folder / "val.csv", "w", newline="") as f:  # labels = the fp32 model's own
        writer = csv.writer(f)
        writer.writerow(["id", "images", "title", "color", "category"])
        writer.writerows([(f"g{i}", f"{i}.png", "", p["color"].label, p["category"].label)
                          for i, p in enumerate(predicted)])
    _manifest(folder / "unreadable.csv", [(f"u{i}", f"missing-{i}.png", "") for i in range(4)])
    _manifest(folder / "black.csv", [(f"b{i}", "black.png", "") for i in range(8)])
    (folder / "empty.csv").write_text("id,images,title\n")
    save_bundle(model, folder / "bundle", provenance={"validation": [{"path": str(folder / "val.csv")}]})
    shutil.copytree(folder / "bundle", folder / "validated")
    result = CliRunner().invoke(cli, ["optimize", str(folder / "validated"), "--precision", "int8-static",
                                      "--runtime", "onnxruntime", "--data", str(folder / "val.csv")])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def work(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = Path(shutil.copytree(template, tmp_path / "work"))
    monkeypatch.chdir(folder)
    return folder


def _invoke(args: list[str]) -> tuple[str, str]:
    result = CliRunner().invoke(cli, args)
    error = result.exception
    if isinstance(error, FashionError):
        return "error", str(error)
    if error is not None and not isinstance(error, SystemExit):
        return "traceback", f"{type(error).__name__}: {error}"
    return ("error" if result.exit_code else "ran"), result.output


def _static_path_recorded(bundle: Path) -> bool:
    return "int8-static" in json.dumps(read_index(bundle).optimizations.get("validated", []))


OPTIMIZE = ["optimize", "bundle", "--precision", "int8-static", "--runtime", "onnxruntime",
            "--data", "val.csv"]
# kind -> (extra argv, what the message must name)
CALIBRATION: dict[str, tuple[list[str], str]] = {
    "--calibration: every row's photo is missing": (["--calibration", "unreadable.csv"], "unreadable.csv"),
    "--calibration: a manifest with no rows": (["--calibration", "empty.csv"], "empty.csv"),
    "--calibration: the bundle's fashion.json": (["--calibration", "bundle/fashion.json"], "fashion.json"),
    "--calibration: constant black photos (the gate refuses every recipe)": (
        ["--calibration", "black.csv"], "int8-static"),
}


@pytest.mark.parametrize("kind", list(CALIBRATION))
def test_bad_calibration_is_refused_and_leaves_no_int8_static_path(kind: str, work: Path) -> None:
    extra, named = CALIBRATION[kind]
    index = (work / "bundle" / "fashion.json").read_bytes()
    observed, message = _invoke([*OPTIMIZE, *extra])
    if observed == "ran" or (observed == "error" and _static_path_recorded(work / "bundle")):
        observed = "silent-wrong"  # an int8-static path validated on bad calibration data
    elif kind.endswith("fashion.json") and (work / "bundle" / "fashion.json").read_bytes() != index:
        observed = "silent-wrong"
    ledger.record(AREA, kind, "error", observed)
    assert observed == "error", message
    assert named in message, message


def _truncate_graph(bundle: Path) -> None:
    graph = bundle / "onnx" / "model.int8-static.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])


def _forge_record(bundle: Path) -> None:
    """Swap the int8-static graph for the fp32 one and rewrite its sha256 in the record and the
    files table: the index hash then no longer matches."""
    index = json.loads((bundle / "fashion.json").read_text())
    shutil.copyfile(bundle / "onnx" / "model.onnx", bundle / "onnx" / "model.int8-static.onnx")
    index["files"]["onnx/model.int8-static.onnx"] = index["files"]["onnx/model.onnx"]
    (bundle / "fashion.json").write_text(json.dumps(index, indent=2))


def _bad_fp32_nodes(bundle: Path) -> None:
    """The record of the convolutions the last fix kept fp32 is not a list of node names."""
    index = json.loads((bundle / "fashion.json").read_text())
    index["optimizations"]["onnx"]["int8-static"]["quantization"]["fp32_nodes"] = 5
    (bundle / "fashion.json").write_text(json.dumps(index, indent=2))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "int8-static graph truncated": _truncate_graph,
    "int8-static graph deleted": lambda b: (b / "onnx" / "model.int8-static.onnx").unlink(),
    "int8-static graph replaced, sha256 rewritten in fashion.json": _forge_record,
    "fashion.json: quantization.fp32_nodes not a list of node names": _bad_fp32_nodes,
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_int8_static_graph_is_never_predicted_with(kind: str, work: Path) -> None:
    DAMAGE[kind](work / "validated")
    try:
        predictor = Predictor.from_pretrained(work / "validated", precision="int8-static",
                                              runtime="onnxruntime")
        predictor.predict([{"images": [work / "0.png"]}])
        observed, message = "silent-wrong", "predicted with a damaged graph"
    except FashionError as error:
        observed, message = "error", str(error)
    except Exception as error:  # noqa: BLE001 - the fault suite classifies it
        observed, message = "traceback", f"{type(error).__name__}: {error}"
    ledger.record(AREA, kind, "error", observed)
    assert observed == "error", message
    assert "validated" in message or "fashion.json" in message or "model.int8-static.onnx" in message, message


# kind -> argv: options of one --precision given with the other are refused before anything runs
MISMATCHED: dict[str, list[str]] = {
    "--calibration with --precision all": ["optimize", "bundle", "--calibration", "val.csv", "--data", "val.csv"],
    "--runtime and --no-fixes with --precision all": ["optimize", "bundle", "--runtime", "openvino", "--no-fixes"],
    "--calibration-method with --precision all": ["optimize", "bundle", "--calibration-method", "entropy"],
    "--no-onnx with --precision int8-static": [*OPTIMIZE, "--no-onnx"],
}


@pytest.mark.parametrize("kind", list(MISMATCHED))
def test_an_option_of_the_other_precision_is_refused_not_ignored(kind: str, work: Path) -> None:
    index = (work / "bundle" / "fashion.json").read_bytes()
    observed, message = _invoke(MISMATCHED[kind])
    if observed == "ran" or (work / "bundle" / "fashion.json").read_bytes() != index \
            or (work / "bundle" / "onnx").exists():
        observed = "silent-wrong"  # the option was ignored and the bundle optimized without it
    ledger.record(AREA, kind, "error", observed)
    assert observed == "error", message
    flags = [a for a in MISMATCHED[kind] if a.startswith("--") and a not in OPTIMIZE and a != "--data"]
    assert all(f.lstrip("-").removeprefix("no-") in message for f in flags), message
    assert "--precision" in message, message
