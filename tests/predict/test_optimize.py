"""fashion.predict: ONNX export and runtime, int8, the accuracy gate, artifacts in bundles."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fashion import BundleError, ConfigError, Predictor
from fashion.cli import optimize as optimize_cli
from fashion.cli.predict import predict_command
from fashion.cli.registry import show_command
from fashion.errors import GateError
from fashion.predict import precision as precision_module
from fashion.predict.artifacts import onnx_file, update_bundle
from fashion.predict.gate import run_gate
from fashion.predict.prefetch import prefetch
from fashion.registry import save_bundle
from fashion.registry.bundle import load_bundle, read_index
from tests.tiny_model import as_plain, assert_close_predictions, image, products

pytest.importorskip("onnxruntime")


def _labeled(tmp_path: Path, model) -> Path:
    """A labeled manifest whose labels are the fp32 model's own predictions (reference F1 = 1),
    with one unreadable image row (the gate skips it)."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    colors = ["red", "blue", (20, 20, 90), (200, 120, 40), (10, 160, 30), (240, 240, 240)]
    titles = ["red dress", "blue shirt", "navy trousers", "orange summer dress", "green pants", ""]
    rows = []
    for i, (color, title) in enumerate(zip(colors, titles, strict=True)):
        image(color).save(folder / f"{i}.png")
        rows.append({"id": f"g{i}", "images": f"images/{i}.png", "title": title})
    predicted = model.predict([{"images": [folder / f"{i}.png"], "title": r["title"] or None}
                               for i, r in enumerate(rows)])
    path = tmp_path / "val.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "images", "title", "color", "category"])
        writer.writeheader()
        for row, p in zip(rows, predicted, strict=True):
            writer.writerow({**row, "color": p["color"].label, "category": p["category"].label})
    return path


def _export(bundle: Path, precision: str = "fp32") -> None:
    optimize_cli._export(bundle, [precision])


def _corrupt(path: Path) -> None:
    """Negate every weight of the heads in an exported ONNX file (a broken optimization)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    for i, init in enumerate(graph.graph.initializer):
        if init.name.startswith("model.heads") or "heads" in init.name:
            graph.graph.initializer[i].CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(graph, str(path))


def test_onnx_outputs_equal_torch_outputs(tiny_model, tmp_path):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    _export(bundle, "fp32")
    _export(bundle, "int8")
    index = read_index(bundle)
    assert set(index.optimizations["onnx"]) == {"fp32", "int8"}
    assert onnx_file("fp32") in index.files and onnx_file("int8") in index.files
    torch_predictor = Predictor.from_pretrained(bundle)
    onnx_predictor = Predictor.from_pretrained(bundle, runtime="onnxruntime")
    assert onnx_predictor.precision_used == "fp32"
    for batch_size in (1, 2, 5):  # text only, image only, nothing at all, several images
        batch = tiny_model.prepare(products()[:batch_size])
        expected = torch_predictor.logits(batch)
        got = onnx_predictor.logits(batch)
        for attribute, x in expected.items():
            torch.testing.assert_close(got[attribute], x, atol=1e-5, rtol=1e-4)
    assert_close_predictions(as_plain(onnx_predictor.predict(products(), batch_size=2)),
                             as_plain(torch_predictor.predict(products())), tol=1e-5)
    int8 = Predictor.from_pretrained(bundle, runtime="onnxruntime", precision="int8")
    batch = tiny_model.prepare(products())
    for attribute, x in torch_predictor.logits(batch).items():
        assert (int8.logits(batch)[attribute] - x).abs().max() < 0.5  # quantized, not broken


def test_gate_accepts_a_correct_export_and_refuses_a_corrupted_one(tiny_model, tmp_path, monkeypatch):
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    runner = CliRunner()
    result = runner.invoke(optimize_cli.export_command, [str(bundle), "--data", str(data)])
    assert result.exit_code == 0, result.output
    gate = read_index(bundle).optimizations["gate"]
    assert gate["validated"] == ["onnxruntime:fp32"] and gate["refused"] == []
    assert gate["paths"]["onnxruntime:fp32"]["agreement"] == {"color": 1.0, "category": 1.0}
    assert gate["data"][0]["path"] == str(data) and gate["rows"] == 6
    shown = runner.invoke(show_command, [str(bundle)])
    assert "validated: onnxruntime:fp32" in shown.output, shown.output

    # a broken optimization: the exported weights are corrupted before the gate runs
    real_export = optimize_cli._export

    def corrupted_export(folder: Path, precisions: list[str]) -> None:
        real_export(folder, precisions)
        for p in precisions:
            _corrupt(folder / onnx_file(p))
        update_bundle(folder, onnx=read_index(folder).optimizations["onnx"])

    monkeypatch.setattr(optimize_cli, "_export", corrupted_export)
    result = runner.invoke(optimize_cli.export_command, [str(bundle), "--data", str(data)])
    assert result.exit_code == 1
    assert isinstance(result.exception, GateError)
    assert "refused onnxruntime:fp32" in str(result.exception)
    assert "accuracy gate vs torch:fp32" in result.output and "LOSS" in result.output
    index = read_index(bundle)
    assert index.optimizations["gate"]["refused"] == ["onnxruntime:fp32"]
    assert "fp32" not in index.optimizations.get("onnx", {})  # the refused file left the bundle
    assert not (bundle / onnx_file("fp32")).exists() and onnx_file("fp32") not in index.files
    load_bundle(bundle)  # still a valid bundle
    with pytest.raises(BundleError, match="has no fp32 ONNX model"):
        Predictor.from_pretrained(bundle, runtime="onnxruntime", precision="fp32")


def test_gate_scores_torch_paths_and_auto_prefers_a_validated_one(tiny_model, tmp_path, monkeypatch):
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    report = run_gate(load_bundle(bundle), ["torch:int8", "torch:bf16"], data=[data], max_loss=100)
    assert report.passed and [p.key for p in report.paths] == ["torch:int8", "torch:bf16"]
    assert report.reference == {"color": 1.0, "category": 1.0}
    strict = run_gate(load_bundle(bundle), ["torch:int8"], data=[data], max_loss=0.0)
    assert strict.passed == all(d >= 0 for d in strict.paths[0].delta.values())
    with pytest.raises(ConfigError, match="pass --data"):
        run_gate(load_bundle(bundle), ["torch:int8"])

    monkeypatch.setattr(precision_module, "cpu_bf16_native", lambda: False)
    assert Predictor.from_pretrained(bundle, precision="auto").precision_used == "fp32"
    monkeypatch.setattr(precision_module, "cpu_bf16_native", lambda: True)
    assert Predictor.from_pretrained(bundle, precision="auto").precision_used == "bf16"
    update_bundle(bundle, gate=report.verdict())
    auto = Predictor.from_pretrained(bundle, precision="auto")
    assert auto.precision_used == "int8" and "precision int8 (asked: auto)" in auto.describe()
    with pytest.raises(ConfigError, match="not available with runtime onnxruntime"):
        Predictor.from_pretrained(bundle, precision="bf16", runtime="onnxruntime")


def test_onnx_artifact_round_trips_through_registries_and_a_wrong_hash_is_refused(
        tiny_model, tmp_path, hub):
    from fashion.registry.hub import HubRegistry
    from fashion.registry.local import LocalRegistry

    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    _export(bundle, "fp32")
    expected = as_plain(Predictor.from_pretrained(bundle).predict(products()))
    LocalRegistry().publish(bundle, "shoes", tag="v1")
    local = Predictor.from_pretrained("local://shoes@v1", runtime="onnxruntime")
    assert_close_predictions(as_plain(local.predict(products())), expected)
    HubRegistry().publish(bundle, "team/shoes", tag="v1")
    remote = Predictor.from_pretrained("hf://team/shoes@v1", runtime="onnxruntime")
    assert (remote.bundle.path / onnx_file("fp32")).is_file()
    assert_close_predictions(as_plain(remote.predict(products())), expected)

    with open(bundle / onnx_file("fp32"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="onnx/model.onnx does not match its sha256"):
        Predictor.from_pretrained(bundle, runtime="onnxruntime")
    with pytest.raises(BundleError, match="onnx/model.onnx does not match its sha256"):
        LocalRegistry().publish(bundle, "shoes")


@pytest.fixture
def manifest_with_bad_rows(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    image("red").save(folder / "red.png")
    image("blue").save(folder / "blue.png")
    (folder / "corrupt.png").write_bytes(b"not a png")
    rows = [("r1", "images/red.png", "red dress"), ("r2", "images/corrupt.png", "broken"),
            ("r3", "images/blue.png", "blue shirt"), ("r4", "images/gone.png", "lost"),
            ("r5", "", "plain trousers"), ("r6", "images/blue.png|images/red.png", ""),
            ("r7", "images/red.png", "red pants")]
    path = tmp_path / "catalog.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "images", "title"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("options", [["--precision", "int8"], ["--runtime", "onnxruntime"],
                                     ["--runtime", "onnxruntime", "--precision", "int8"]])
def test_int8_and_onnxruntime_under_fashion_predict_with_rejects_and_resume(
        tiny_model, tmp_path, manifest_with_bad_rows, options):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    _export(bundle, "fp32")
    _export(bundle, "int8")
    runner = CliRunner()

    def run(out: Path, *extra: str):
        return runner.invoke(predict_command, [str(bundle), str(manifest_with_bad_rows), "--out",
                                               str(out), "--batch-size", "2", *options, *extra])

    full = tmp_path / "full.jsonl"
    result = run(full)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "7 rows in = 5 predicted + 2 rejected"
    precision = "int8" if "int8" in options else "fp32"
    runtime = "onnxruntime" if "onnxruntime" in options else "torch"
    assert lines[-2].startswith(f"precision {precision}, runtime {runtime}")
    predicted = [json.loads(x) for x in full.read_text().splitlines()]
    assert [p["row"] for p in predicted] == [1, 3, 5, 6, 7]
    rejects = [json.loads(x) for x in full.with_name("full.rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects] == [2, 4]

    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(full.read_text().splitlines()[:2]) + "\n{\"row\": 5, \"trunc")
    result = run(partial, "--resume")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == \
        "7 rows in = 5 predicted + 2 rejected (2 from the earlier run)"
    assert_close_predictions([json.loads(x) for x in partial.read_text().splitlines()], predicted)


def test_without_onnxruntime_the_error_names_the_extra(tiny_model, tmp_path, monkeypatch):
    import builtins
    import importlib

    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def refused(name: str) -> bool:
        return name.split(".")[0] in ("onnx", "onnxruntime")

    def no_onnx(name, *args, **kwargs):
        if refused(name):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    def no_onnx_module(name, package=None):
        if refused(name):
            raise ImportError(name)
        return real_import_module(name, package)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.setattr(importlib, "import_module", no_onnx_module)
    with pytest.raises(ConfigError, match=r"fashion-sdk\[onnx\]"):
        _export(bundle, "fp32")


def test_prefetch_keeps_order_and_raises_in_place():
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        yield 2
        raise ValueError("row 3")

    seen = []
    with pytest.raises(ValueError, match="row 3"):
        for x in prefetch(broken()):
            seen.append(x)
    assert seen == [1, 2]
    early = prefetch(iter(range(1000)), depth=1)
    assert next(early) == 0
    early.close()  # stops the producer thread


def test_int8_and_precision_errors(tiny_model):
    int8 = Predictor(tiny_model, precision="int8")
    assert int8.precision_used == "int8"
    assert any("quantized" in type(m).__module__ for m in int8._forward.modules())
    assert not any("quantized" in type(m).__module__ for m in tiny_model.modules())  # a copy
    assert_close_predictions(as_plain(int8.predict(products())),
                             as_plain(Predictor(tiny_model).predict(products())), tol=0.1)
    with pytest.raises(ConfigError, match="runs a bundle's exported ONNX model"):
        Predictor(tiny_model, runtime="onnxruntime")
    with pytest.raises(ConfigError, match="unknown runtime"):
        Predictor(tiny_model, runtime="tensorrt")  # type: ignore[arg-type]


def test_the_most_sensitive_convolutions_are_kept_fp32_in_steps_until_the_gate_passes_or_stalls():
    """The last int8-static fix's schedule: the first k of the ranking for k = 1, 2, 3, 4, 6, 8,
    ... below the cap and the cap; it stops at a validated graph, or after three steps in a row
    that do not improve the worst delta."""
    from dataclasses import dataclass

    from fashion.predict.optimize import PATIENCE, revert_in_order
    from fashion.predict.static import StaticConfig

    @dataclass
    class Report:
        delta: float
        validated: bool = False

        @property
        def paths(self):
            return [type("Path", (), {"delta": {"color": self.delta}})()]

    ranked = [f"conv{i}" for i in range(40)]

    def run(deltas, cap=10):
        seen, lines = [], []

        def attempt(config):
            seen.append(config.keep_fp32)
            delta = deltas[len(seen) - 1]
            return Report(delta, validated=delta >= -0.5)

        revert_in_order(StaticConfig(), ranked, cap, attempt, Report(-3.0), log=lines.append)
        return [len(k) for k in seen], seen, lines

    counts, seen, lines = run([-2.5, -1.0, -0.2, -9.0])
    assert counts == [1, 2, 3] and seen[-1] == ("conv0", "conv1", "conv2") and not lines  # validated at 3
    counts, _, lines = run([-3.0, -3.5, -3.0, -1.0])
    assert counts == [1, 2, 3] == list(range(1, PATIENCE + 1))  # no gain on -3.0 three times: stop
    assert "stopped after 3 convolutions fp32" in lines[0] and "-3.00 points at best" in lines[0]
    counts, _, lines = run([-2.9, -2.8, -2.7, -2.6, -2.5, -2.4, -2.3], cap=10)
    assert counts == [1, 2, 3, 4, 6, 8, 10] and not lines  # each step gains: up to the cap
