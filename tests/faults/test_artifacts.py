"""A bundle's optional artifacts and its index: tampered ``optimizations`` records, ONNX files that
do not fit the model, an edited fashion.json, `fashion show` of a damaged revision and a publish
interrupted before its tags. Each ends in a clear error naming the bundle file (or, for a
damaged record in an old bundle without an index hash, runs without the artifact and warns);
never a traceback, never a prediction from a damaged artifact or swapped labels."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fashion import Predictor
from fashion.registry import save_bundle
from fashion.registry.bundle import DamagedArtifactWarning, load_bundle
from fashion.registry.bundle_format import index_digest
from fashion.registry.local import LocalRegistry
from tests.faults import ledger
from tests.faults.conftest import check_error
from tests.tiny_model import make_model, products
from tests.tiny_plugin import TINY_SPEC

pytest.importorskip("onnxruntime")
AREA = "artifacts"
ONNX = "onnx/model.onnx"


def _verdict() -> dict[str, Any]:
    """A gate verdict as `fashion optimize` records it: onnxruntime:fp32 and torch:int8
    validated, torch:bf16 refused."""
    from fashion.predict.gate import GateReport, PathScore

    deltas = {"onnxruntime:fp32": 0.0, "torch:int8": -0.1, "torch:bf16": -3.0}
    scores = [PathScore(k, {"color": 1.0}, {"color": 1.0}, {"color": d}, passed=d >= -0.5)
              for k, d in deltas.items()]
    return GateReport({"color": 1.0}, scores, max_loss=0.5, data=[], rows=6).verdict()


def _export(folder: Path, model: Any = None, gate: dict[str, Any] | None = None) -> None:
    from fashion.predict.artifacts import update_bundle
    from fashion.predict.export import export_onnx

    model = model if model is not None else load_bundle(folder).model
    graph = {"file": ONNX, **export_onnx(model, folder / ONNX)}
    update_bundle(folder, onnx={"fp32": graph}, gate=gate)


@pytest.fixture(scope="module")
def exported(plugin: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_bundle(make_model(0), tmp_path_factory.mktemp("artifacts") / "bundle")
    _export(folder, gate=_verdict())
    return folder


def _copy(bundle: Path, to: Path) -> Path:
    return Path(shutil.copytree(bundle, to))


def _edit(folder: Path, change: Callable[[dict[str, Any]], None], *, old_format: bool = False) -> None:
    """Edit fashion.json. ``old_format``: as a format-3 bundle (no index hash), so that only the
    strict record check stands between the edit and a prediction."""
    path = folder / "fashion.json"
    data = json.loads(path.read_text())
    change(data)
    if old_format:
        data["format_version"] = 3
        data.pop("index_sha256", None)
    path.write_text(json.dumps(data, indent=2))


def _onnx_predictor(folder: Path) -> Predictor:
    return Predictor.from_pretrained(folder, runtime="onnxruntime", device="cpu")


def _opt(data: dict[str, Any]) -> dict[str, Any]:
    return data["optimizations"]


RECORDS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "onnx record missing a key": (lambda d: _opt(d)["onnx"]["fp32"].pop("outputs"), "onnx.fp32.outputs"),
    "onnx records a list, not a mapping": (
        lambda d: _opt(d).update(onnx=list(_opt(d)["onnx"].values())), "onnx"),
    "gate record a list, not a mapping": (lambda d: _opt(d).update(gate=[_opt(d)["gate"]]), "gate"),
    "optimizations a list": (lambda d: d.update(optimizations=[d["optimizations"]]), "optimizations"),
    "onnx opset a string": (lambda d: _opt(d)["onnx"]["fp32"].update(opset="17"), "onnx.fp32.opset"),
    "gate validated a string": (lambda d: _opt(d)["gate"].update(validated="onnxruntime:fp32"),
                                "gate.validated"),
    "unknown runtime in the gate": (
        lambda d: _opt(d)["gate"].update(validated=[*_opt(d)["gate"]["validated"], "tensorrt:fp16"]),
        "gate.validated"),
    "gate verdict altered (refused path listed validated)": (
        lambda d: _opt(d)["gate"].update(validated=sorted([*_opt(d)["gate"]["validated"], "torch:bf16"]),
                                         refused=[]), "validated"),
    "gate verdict altered (path marked passed)": (
        lambda d: _opt(d)["gate"]["paths"]["torch:bf16"].update(passed=True), "torch:bf16"),
    "onnx record points at another file": (
        lambda d: _opt(d)["onnx"]["fp32"].update(file="heads/color.safetensors"), "onnx.fp32"),
    "onnx outputs reordered": (
        lambda d: _opt(d)["onnx"]["fp32"]["outputs"].reverse(), "onnx.fp32.outputs"),
    "onnx record with an unknown key": (
        lambda d: _opt(d)["onnx"]["fp32"].update(providers=["TensorRT"]), "providers"),
}


@pytest.mark.parametrize("kind", list(RECORDS))
def test_tampered_optimizations_record_in_an_old_bundle(kind: str, exported: Path, tmp_path: Path) -> None:
    change, field = RECORDS[kind]
    folder = _copy(exported, tmp_path / "b")
    _edit(folder, change, old_format=True)

    def onnx_run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedArtifactWarning)
            _onnx_predictor(folder)

    check_error(AREA, f"{kind}: runtime onnxruntime", onnx_run, "optimizations record")
    try:
        onnx_run()
    except Exception as exc:  # noqa: BLE001 - the message is checked
        message = str(exc)
    assert str(folder / "fashion.json") in message and field in message, message
    assert "fashion optimize" in message, message


def test_damaged_record_is_never_used_by_precision_auto(exported: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged record in an old bundle: the model loads without it (warning), and auto does
    not pick the int8 path the damaged verdict validated."""
    from fashion.predict import precision as precision_module

    monkeypatch.setattr(precision_module, "cpu_bf16_native", lambda: False)
    intact = Predictor.from_pretrained(exported, precision="auto", device="cpu")
    assert intact.precision_used == "int8"  # the intact verdict is used
    folder = _copy(exported, tmp_path / "b")
    _edit(folder, lambda d: _opt(d)["onnx"]["fp32"].pop("layout"), old_format=True)
    with pytest.warns(DamagedArtifactWarning, match="the optimizations record is damaged"):
        auto = Predictor.from_pretrained(folder, precision="auto", device="cpu")
    used = auto.precision_used
    ok = used == "fp32" and len(auto.predict(products())) == len(products())
    ledger.record(AREA, "damaged record: precision auto runs fp32 without it, warns", "predicted",
                  "predicted" if ok else "silent-wrong")
    assert ok, used
    shown = CliRunner().invoke(_show(), [str(folder)])
    assert shown.exit_code == 0 and "is damaged" in shown.output, shown.output
    check_error(AREA, "damaged record: publish refused", lambda: LocalRegistry().publish(folder, "x"),
                "refusing to publish")


def _show() -> Any:
    from fashion.cli.registry import show_command

    return show_command


def _swap_labels(data: dict[str, Any]) -> None:
    for where in (data["spec"]["attributes"]["color"], data["attributes"]["color"]):
        where["labels"].reverse()


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "edited labels in fashion.json": _swap_labels,
    "edited spec (fusion options)": lambda d: d["spec"]["fusion"]["options"].update(extra=1),
    "attributes reordered in fashion.json": lambda d: d.update(
        attributes=dict(reversed(list(d["attributes"].items())))),
    "gate verdict altered in a hashed bundle": lambda d: _opt(d)["gate"].update(
        validated=sorted([*_opt(d)["gate"]["validated"], "torch:bf16"]), refused=[]),
    "index hash removed": lambda d: d.pop("index_sha256"),
    "index hash forged (not hex)": lambda d: d.update(index_sha256="x" * 64),
}


@pytest.mark.parametrize("kind", list(EDITS))
def test_edited_index_of_a_folder_bundle_is_refused(kind: str, exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path / "b")
    _edit(folder, EDITS[kind])
    check_error(AREA, f"{kind}: load", lambda: load_bundle(folder), "index_sha256")
    check_error(AREA, f"{kind}: show", lambda: _raise(CliRunner().invoke(_show(), [str(folder)])),
                "index_sha256")


def test_reformatted_index_still_loads(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path / "b")
    path = folder / "fashion.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # whitespace only
    ok = load_bundle(folder).index.optimizations["gate"]["validated"] == _verdict()["validated"]
    ledger.record(AREA, "fashion.json re-indented", "predicted", "predicted" if ok else "silent-wrong")
    assert ok


def _raise(result: Any) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code:
        raise SystemExit(result.exit_code)


def _wider_model() -> Any:
    spec = json.loads(json.dumps(TINY_SPEC))
    spec["attributes"]["color"]["labels"] = ["red", "blue", "green"]
    return make_model(0, spec)


def test_onnx_files_that_do_not_fit(exported: Path, tmp_path: Path) -> None:
    wider = _copy(exported, tmp_path / "wider")
    _export(wider, model=_wider_model())  # listed and hashed, but 3 color logits for 2 labels
    check_error(AREA, "onnx output width differs from the label count", lambda: _onnx_predictor(wider),
                "output logits.color has shape")

    truncated = _copy(exported, tmp_path / "truncated")
    data = (truncated / ONNX).read_bytes()
    (truncated / ONNX).write_bytes(data[: len(data) // 3])
    check_error(AREA, "truncated onnx file", lambda: _onnx_predictor(truncated),
                "onnx/model.onnx does not match its sha256")

    def relisted(d: dict[str, Any]) -> None:  # the truncated file listed with its new hash
        from fashion._util.files import sha256_file

        d["files"][ONNX] = {"sha256": sha256_file(truncated / ONNX), "size": (truncated / ONNX).stat().st_size}
        d["index_sha256"] = index_digest(d)

    _edit(truncated, relisted)
    check_error(AREA, "truncated onnx file, re-listed", lambda: _onnx_predictor(truncated),
                "is not a loadable ONNX model")

    missing = _copy(exported, tmp_path / "missing")
    (missing / ONNX).unlink()
    check_error(AREA, "onnx file missing", lambda: _onnx_predictor(missing), "onnx/model.onnx is missing")


def test_damaged_revision_is_shown_as_damaged(exported: Path) -> None:
    registry = LocalRegistry()
    registry.publish(exported, "team/shown")
    weights = next(registry.fetch("team/shown").rglob("*.safetensors"))
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = CliRunner().invoke(_show(), ["local://team/shown"])
    check_error(AREA, "damaged revision shown", lambda: _raise(result), "fashion doctor --repair")
    assert "integrity: DAMAGED" in result.output and "color" in result.output, result.output
    assert weights.name in str(result.exception), result.exception


def test_publish_interrupted_before_its_tags(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish of a new name killed between the revision's rename and its tags (the state a
    kill -9 at the fault point ``push.renamed`` leaves): the next read finishes it."""
    import fashion.registry.local as local

    class Killed(BaseException):
        pass

    def kill(name: str) -> None:
        if name == "push.renamed":
            raise Killed

    registry = LocalRegistry()
    with monkeypatch.context() as patch:
        patch.setattr(local, "fault_point", kill)
        with pytest.raises(Killed):
            registry.publish(exported, "team/new")
    assert registry._read_tags("team/new") == {}
    loaded = check_error(AREA, "publish interrupted before its tags: next read", lambda: load_bundle(
        "local://team/new"), "", expected="predicted")
    assert loaded is not None and "latest" in registry.list_revisions("team/new")[0].tags

    with monkeypatch.context() as patch:  # the same, and its journal lost as well
        patch.setattr(local, "fault_point", kill)
        with pytest.raises(Killed):
            registry.publish(exported, "team/lost")
    for journal in (registry.root / "models").glob("*/.pending-*.json"):
        journal.unlink()
    check_error(AREA, "publish interrupted, journal lost: next read",
                lambda: load_bundle("local://team/lost"), "fashion doctor --repair")
    registry.doctor(repair=True)
    assert load_bundle("local://team/lost") is not None
