"""Static int8 (QDQ) of the image backbones: calibration, the gate's verdict, records, fallbacks."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fashion import BundleError, ConfigError, Predictor
from fashion.cli import optimize as optimize_cli
from fashion.cli.predict import predict_command
from fashion.errors import GateError
from fashion.predict import precision as precision_module
from fashion.predict.artifacts import onnx_file, update_bundle
from fashion.predict.export import graph_inputs, to_numpy
from fashion.predict.optimize import ensure_fp32, optimize_static
from fashion.predict.static import CalibrationData
from fashion.registry import save_bundle
from fashion.registry.bundle import load_bundle, read_index
from tests.predict.test_optimize import _labeled, manifest_with_bad_rows  # noqa: F401
from tests.tiny_model import image

pytest.importorskip("onnxruntime")
AVX2_ONLY = frozenset({"avx2", "fma"})


def _constant(tmp_path: Path, n: int = 8) -> Path:
    """A calibration manifest whose images are all black (a deliberately broken calibration)."""
    folder = tmp_path / "black"
    folder.mkdir()
    image((0, 0, 0)).save(folder / "black.png")
    path = tmp_path / "black.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "images", "title"])
        writer.writerows([(f"b{i}", "black/black.png", "") for i in range(n)])
    return path


@pytest.fixture
def validated(tiny_model, tmp_path):
    """A bundle whose int8-static graph the gate validated, calibrated on the bundle's own
    validation manifest (named in its provenance)."""
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle", provenance={"validation": [{"path": str(data)}]})
    result = optimize_static(bundle, runtime="onnxruntime", log=lambda _: None)
    return bundle, data, result


def test_calibration_reads_the_validation_data_through_the_real_preprocessing(
        validated, manifest_with_bad_rows):  # noqa: F811
    bundle, data, result = validated
    loaded = load_bundle(bundle)
    graph = loaded.index.optimizations["onnx"]["fp32"]
    calibration = CalibrationData(loaded.model, graph, [data], batch_size=4)
    assert calibration.products == 6 and len(calibration.feeds) == 2
    skipping = CalibrationData(loaded.model, graph, [manifest_with_bad_rows], products=6)
    assert skipping.products == 4  # of rows 1-6, the unreadable and the missing image are skipped
    assert skipping.data[0]["rows"] == 4 and skipping.fingerprint != calibration.fingerprint
    from fashion.data.manifest import iter_manifest
    from fashion.predict.batch import prepare_rows

    rows = list(iter_manifest(data))
    batch, numbers, rejects = prepare_rows(loaded.model, rows[:4], data)
    expected = to_numpy(graph_inputs(loaded.model, batch, [tuple(x) for x in graph["layout"]],
                                     tuple(graph["image_shape"])))
    assert set(calibration.feeds[0]) == set(expected)
    for name, value in expected.items():  # the croppers' and normalization's very pixels
        assert (calibration.feeds[0][name] == value).all(), name
    assert expected["image:full.pixels"].std() > 0.1  # real, varied images

    record = read_index(bundle).optimizations
    quantization = record["onnx"]["int8-static"]["quantization"]
    assert quantization["calibration"]["data"][0]["path"] == str(data)  # the default: validation data
    assert quantization["calibration"]["fingerprint"] == result.calibration["fingerprint"]
    assert quantization["quantized_nodes"] > 0 and quantization["text"] == "fp32"
    path = record["gate"]["paths"]["onnxruntime:int8-static"]
    assert record["gate"]["validated"] == ["onnxruntime:int8-static"]
    assert path["calibration"] == result.calibration["fingerprint"] and path["fix"] == "none"
    assert path["cpu"]["flags"] == precision_module.cpu_record()["flags"] and path["products_per_s"] > 0
    torch_logits = Predictor(loaded, precision="fp32").logits(loaded.model.prepare([{"images": [image("red")]}]))
    int8 = Predictor(loaded, precision="int8-static", runtime="onnxruntime")
    got = int8.logits(loaded.model.prepare([{"images": [image("red")]}]))
    for attribute, x in torch_logits.items():
        assert (got[attribute] - x).abs().max() < 0.5  # quantized, not broken


def test_a_constant_image_calibration_loses_accuracy_and_the_gate_refuses_it(tiny_model, tmp_path):
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    ensure_fp32(bundle)
    black = _constant(tmp_path)
    result = CliRunner().invoke(optimize_cli.optimize_command, [
        str(bundle), "--precision", "int8-static", "--calibration", str(black), "--data", str(data),
        "--runtime", "onnxruntime"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, GateError) and "with every recipe" in str(result.exception)
    gate = read_index(bundle).optimizations["gate"]
    path = gate["paths"]["onnxruntime:int8-static"]
    assert gate["refused"] == ["onnxruntime:int8-static"] and not path["passed"]
    assert min(path["f1_delta_points"].values()) < -0.5  # the loss is in the verdict
    assert min(path["agreement"].values()) < 1.0
    assert "int8-static" not in read_index(bundle).optimizations["onnx"]
    assert not (bundle / onnx_file("int8-static")).exists()
    assert set(path["attempts"]) == {"none", "per-tensor weights", "percentile calibration",
                                     "entropy calibration"}  # every standard fix was tried
    assert all(worst < -0.5 for worst in path["attempts"].values())
    # the histogram calibrators' progress prints stay out of the command's output
    assert "Collecting tensor data" not in result.output and "Number of tensors" not in result.output
    # where the asked recipe lost is recorded and said (fashion.predict.sensitivity)
    diagnosis = path["diagnosis"]
    assert diagnosis["products"] > 0 and diagnosis["backbones"]["image"]["sqnr_db"] is not None
    assert min(h["int8_agreement"] for h in diagnosis["heads"].values()) < 1.0
    assert "diagnosis:" in result.output and diagnosis["reading"] in str(result.exception)
    # the tiny backbone's only convolution is its first: keeping it fp32 leaves nothing int8
    assert "'first conv and last block fp32' skipped" in " ".join(result.output.split())
    assert "'most sensitive convolutions fp32' skipped" in " ".join(result.output.split())

    # without the fixes only the asked recipe is gated, and its refusal is final
    ensure_fp32(bundle)
    result = CliRunner().invoke(optimize_cli.optimize_command, [
        str(bundle), "--precision", "int8-static", "--calibration", str(black), "--data", str(data),
        "--runtime", "onnxruntime", "--no-fixes"])
    assert result.exit_code == 1 and "with every recipe (none: refused)" in " ".join(str(result.exception).split())
    path = read_index(bundle).optimizations["gate"]["paths"]["onnxruntime:int8-static"]
    assert set(path["attempts"]) == {"none"} and not path["passed"]


def test_an_int8_static_graph_with_a_wrong_hash_is_refused(validated):
    bundle, _, _ = validated
    with open(bundle / onnx_file("int8-static"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="model.int8-static.onnx does not match its sha256"):
        Predictor.from_pretrained(bundle, precision="int8-static", runtime="onnxruntime")


def test_a_bundle_validated_on_another_cpu_warns_and_falls_back(tiny_model, tmp_path, monkeypatch):
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    optimize_static(bundle, calibration=[data], data=[data], runtime="onnxruntime",
                    reduce_range=False, log=lambda _: None)  # full-range weights, as on a VNNI CPU
    auto = Predictor.from_pretrained(bundle, precision="auto")
    assert (auto.runtime, auto.precision_used) == ("onnxruntime", "int8-static")  # validated here

    gate = read_index(bundle).optimizations["gate"]
    gate["paths"]["onnxruntime:int8-static"]["cpu"] = {"model": "a VNNI CPU", "flags": ["avx2", "avx512_vnni"]}
    update_bundle(bundle, gate=gate)  # the recorded flags, through the writer that checks them
    # now on an AVX2-only CPU (which has no native bf16 either)
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX2_ONLY)
    monkeypatch.setattr(precision_module, "cpu_bf16_native", lambda: False)
    with pytest.warns(RuntimeWarning, match="validated on a CPU with VNNI"):
        fallback = Predictor.from_pretrained(bundle, precision="auto")
    assert (fallback.runtime, fallback.precision_used) == ("torch", "fp32")
    assert "fell back" in fallback.describe()

    with warnings.catch_warnings():  # an explicit request runs what was asked
        warnings.simplefilter("error")
        assert Predictor.from_pretrained(bundle, precision="int8-static").runtime == "onnxruntime"

    monkeypatch.setattr(precision_module, "installed", lambda runtime: runtime != "onnxruntime")
    with pytest.warns(RuntimeWarning, match=r"onnxruntime is not installed \(pip install 'fashion-sdk\[onnx\]'\)"):
        assert Predictor.from_pretrained(bundle, precision="auto").precision_used == "fp32"


def test_auto_picks_the_fastest_validated_runtime_and_openvino_names_its_extra(validated, monkeypatch):
    pytest.importorskip("openvino")
    bundle, data, _ = validated
    result = optimize_static(bundle, data=[data], log=lambda _: None)  # both runtimes
    speeds = result.speeds
    assert set(speeds) == {"onnxruntime:int8-static", "openvino:int8-static"}
    fastest = max(speeds, key=speeds.__getitem__)
    auto = Predictor.from_pretrained(bundle, precision="auto")
    assert f"{auto.runtime}:{auto.precision_used}" == fastest == f"{result.runtime}:int8-static"
    batch = auto.model.prepare([{"images": [image("blue")], "title": "blue shirt"}])
    ort = Predictor.from_pretrained(bundle, precision="int8-static", runtime="onnxruntime").logits(batch)
    vino = Predictor.from_pretrained(bundle, precision="int8-static", runtime="openvino").logits(batch)
    for attribute, x in ort.items():
        torch.testing.assert_close(vino[attribute], x, atol=0.05, rtol=0.05)

    monkeypatch.setattr(precision_module, "installed", lambda runtime: runtime != "openvino")
    with pytest.warns(RuntimeWarning, match=r"openvino is not installed .*fashion-sdk\[openvino\]"):
        assert Predictor.from_pretrained(bundle, precision="auto").runtime == "onnxruntime"
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)
    with pytest.raises(ConfigError, match=r"fashion-sdk\[openvino\]"):
        Predictor.from_pretrained(bundle, precision="int8-static", runtime="openvino")


def test_fashion_predict_runs_int8_static_with_rejects_unchanged(validated, tmp_path,
                                                                 manifest_with_bad_rows):  # noqa: F811
    bundle, _, _ = validated
    runner = CliRunner()
    outputs = {}
    for name, options in (("fp32", ["--precision", "fp32"]), ("static", ["--precision", "int8-static"])):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(predict_command, [str(bundle), str(manifest_with_bad_rows), "--out", str(out),
                                                 "--batch-size", "2", *options])
        assert result.exit_code == 0, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1] == "7 rows in = 5 predicted + 2 rejected"
        if name == "static":
            assert lines[-2].startswith("precision int8-static, runtime onnxruntime")
        outputs[name] = ([json.loads(x) for x in out.read_text().splitlines()],
                         out.with_name(f"{name}.rejects.jsonl").read_text())
    assert [p["row"] for p in outputs["static"][0]] == [p["row"] for p in outputs["fp32"][0]]
    assert outputs["static"][1] == outputs["fp32"][1]  # the same rejects, the same reasons


def test_fashion_serve_runs_the_validated_int8_static_path(validated, tmp_path):
    """``fashion serve --precision auto`` (runtime auto, the default) serves the graph the gate
    validated, and answers as a local int8-static Predictor does."""
    pytest.importorskip("fastapi")
    from tests.serve.conftest import Server, b64, photo
    from tests.tiny_model import assert_close_predictions

    bundle, _, _ = validated
    products = [{"id": "p1", "title": "red summer dress", "images": [photo("red")]},
                {"id": "p2", "images": [photo("blue", (64, 128), "JPEG"), photo("red", (80, 80))]},
                {"id": "p3", "title": "wide leg trousers"}]
    server = Server(bundle, tmp_path / "serve.log", "--precision", "auto")
    try:
        info = server.request("GET", "/v1/model").json()
        assert (info["runtime"], info["precision"]) == ("onnxruntime", "int8-static")
        reply = server.request("POST", "/v1/predict", {
            "products": [{**p, "images": [b64(i) for i in p.get("images", [])]} for p in products]})
        assert reply.status == 200, reply.body
    finally:
        server.stop()
    local = Predictor.from_pretrained(bundle, precision="int8-static", runtime="onnxruntime")
    assert_close_predictions(reply.json()["predictions"], [r.to_dict() for r in local.predict(products)])


def test_a_diagnosis_that_fails_does_not_stop_the_verdict(tiny_model, tmp_path, monkeypatch):
    from fashion.predict import optimize as optimize_module

    def broken(*args, **kwargs):
        raise RuntimeError("the diagnosis broke")

    monkeypatch.setattr(optimize_module, "diagnose", broken)
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    lines: list[str] = []
    with pytest.raises(GateError, match="Diagnosis of the asked recipe: none"):
        optimize_static(bundle, calibration=[_constant(tmp_path)], data=[data], runtime="onnxruntime",
                        fixes_on_refusal=False, log=lines.append)
    assert "diagnosis skipped: the diagnosis broke" in lines
    path = read_index(bundle).optimizations["gate"]["paths"]["onnxruntime:int8-static"]
    assert not path["passed"] and path.get("diagnosis") is None
    assert "int8-static" not in read_index(bundle).optimizations["onnx"]


def _image_only(tmp_path: Path, model) -> Path:
    """A labeled manifest of eight one-colour photos without text, labeled with the fp32 model's
    own predictions."""
    folder = tmp_path / "photos"
    folder.mkdir()
    colors = ["red", "blue", (20, 20, 90), (200, 120, 40), (10, 160, 30), (240, 240, 240),
              (90, 10, 90), (128, 128, 128)]
    for i, color in enumerate(colors):
        image(color).save(folder / f"{i}.png")
    predicted = model.predict([{"images": [folder / f"{i}.png"]} for i in range(len(colors))])
    path = tmp_path / "photos.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "images", "color", "category"])
        writer.writerows([(f"p{i}", f"photos/{i}.png", p["color"].label, p["category"].label)
                          for i, p in enumerate(predicted)])
    return path


def _outlier_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A four-convolution backbone whose second convolution writes one channel thousands of
    times larger than the others, which the third reads with zero weights: fp32 ignores it, but
    the uint8 range of that tensor is set by it, so int8 rounds the other channels away."""
    import copy

    from tests.tiny_model import make_model
    from tests.tiny_plugin import TINY_SPEC

    spec = copy.deepcopy(TINY_SPEC)
    spec["backbones"]["image"]["options"] = {"layers": 4}
    model = make_model(0, spec)
    net = model.backbones["image"].net
    with torch.no_grad():
        net[2].bias[0] = 5000.0  # the second convolution's outlier channel
        net[4].weight[:, 0] = 0.0  # which the third convolution does not read
        net[6].weight *= 300.0  # photos of different colours get different categories
    data = _image_only(tmp_path, model)
    return save_bundle(model, tmp_path / "bundle"), data


def test_the_last_fix_keeps_the_convolution_int8_breaks_fp32(tiny, tmp_path):
    """No standard fix helps the outlier backbone (the edges, per-tensor weights and the
    calibration methods all keep that range); the ranking finds the third convolution, and
    keeping it fp32 passes the gate."""
    import importlib.util

    bundle, data = _outlier_bundle(tmp_path)
    lines: list[str] = []
    result = optimize_static(bundle, calibration=[data], data=[data], log=lines.append)  # every runtime here
    fixes = [fix for fix, _ in result.attempts]
    assert fixes[-1] == "1 most sensitive convolutions fp32", lines
    assert all(not report.validated for _, report in result.attempts[:-1])
    assert fixes[:-1] == ["none", "per-tensor weights", "percentile calibration", "entropy calibration"]
    runtimes = [r for r in ("onnxruntime", "openvino") if importlib.util.find_spec(r)]
    assert result.report.validated == [f"{r}:int8-static" for r in runtimes]  # the reverted graph runs on each
    record = read_index(bundle).optimizations["onnx"]["int8-static"]["quantization"]
    assert record["excluded"] == [] and record["fp32_nodes"] == ["/image/net/net.4/Conv"]
    assert record["fix"] == fixes[-1] and record["quantized_nodes"] == 3
    assert any(line.startswith("ranked 4 quantized convolutions") for line in lines)
    gate = read_index(bundle).optimizations["gate"]["paths"]["onnxruntime:int8-static"]
    assert gate["passed"] and gate["fix"] == fixes[-1] and gate["attempts"]["none"] < -0.5


def test_a_last_fix_that_fails_leaves_the_verdict_of_the_recipes_gated(tiny, tmp_path, monkeypatch):
    from fashion.predict import sensitivity

    def broken(*args, **kwargs):
        raise RuntimeError("ranking broke")

    monkeypatch.setattr(sensitivity, "rank_nodes", broken)
    bundle, data = _outlier_bundle(tmp_path)
    lines: list[str] = []
    with pytest.raises(GateError, match="entropy calibration: refused\\)"):
        optimize_static(bundle, calibration=[data], data=[data], runtime="onnxruntime", log=lines.append)
    assert "recipe 'most sensitive convolutions fp32' skipped: ranking broke" in lines
    gate = read_index(bundle).optimizations["gate"]
    assert gate["refused"] == ["onnxruntime:int8-static"]  # recorded, and the graph removed
    assert "int8-static" not in read_index(bundle).optimizations["onnx"]


def test_shape_arithmetic_is_never_quantized(tiny, tmp_path):
    """A backbone with TensorFlow "same" padding exports the padding of its strided convolution
    as float arithmetic on the input's shape. Quantized, those integers were rounded to the int8
    grid (a padding of 1 became 0 and the feature maps shrank): int8-static leaves them float, so
    every feature map keeps the fp32 graph's shape and values."""
    import copy

    import onnx
    import onnxruntime as ort

    from tests.tiny_model import make_model
    from tests.tiny_plugin import TINY_SPEC

    spec = copy.deepcopy(TINY_SPEC)
    spec["backbones"]["image"]["options"] = {"same": True, "layers": 2}
    model = make_model(0, spec)
    data = _image_only(tmp_path, model)
    bundle = save_bundle(model, tmp_path / "bundle")
    optimize_static(bundle, calibration=[data], data=[data], runtime="onnxruntime", max_loss=100.0,
                    fixes_on_refusal=False, log=lambda _: None)
    graphs = {p: onnx.load(str(bundle / onnx_file(p))) for p in ("fp32", "int8-static")}
    shape_ops = [n for n in graphs["fp32"].graph.node if n.op_type == "Shape" and n.name.startswith("/image/")]
    assert shape_ops, "the tiny backbone no longer exports its padding as shape arithmetic"
    fp32 = graphs["fp32"].graph
    derived = {o for n in shape_ops for o in n.output}
    constant = {t.name for t in fp32.initializer} | {o for n in fp32.node if n.op_type == "Constant" for o in n.output}
    for node in fp32.node:  # the tensors computed from the input's shape alone
        if any(i in derived for i in node.input) and all(not i or i in derived | constant for i in node.input):
            derived.update(node.output)
    quantized = {n.input[0] for n in graphs["int8-static"].graph.node if n.op_type == "QuantizeLinear"}
    assert "image:full.pixels" in quantized and not quantized & derived, quantized & derived

    conv = next(n for n in graphs["int8-static"].graph.node if n.op_type == "Conv")
    feeds = CalibrationData(load_bundle(bundle).model, read_index(bundle).optimizations["onnx"]["fp32"],
                            [data]).feeds[0]
    outputs = {}
    for precision, graph in graphs.items():  # the first convolution's feature map, both graphs
        name = conv.output[0] + ("_DequantizeLinear_Output" if precision == "int8-static" else "")
        if precision == "fp32":
            name = next(n.output[0] for n in graph.graph.node if n.name == conv.name)
        graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs[precision] = session.run([name], feeds)[0]
    assert outputs["int8-static"].shape == outputs["fp32"].shape
    fp32 = outputs["fp32"].clip(min=0)  # the int8 graph folds the ReLU into the convolution
    assert abs(outputs["int8-static"] - fp32).mean() < 0.05 * abs(fp32).mean() + 1e-6
