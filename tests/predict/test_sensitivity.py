"""Where an int8 graph loses: the error at the image backbone's output and the heads' sensitivity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fashion.predict.optimize import ensure_fp32
from fashion.predict.sensitivity import (
    _session,
    _with_noise,
    backbone_outputs,
    explain,
    reading,
    sqnr_db,
)
from fashion.predict.static import CalibrationData
from fashion.registry import save_bundle
from fashion.registry.bundle import load_bundle
from tests.predict.test_optimize import _labeled

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture
def graphs(tiny_model, tmp_path):
    data = _labeled(tmp_path, tiny_model)
    folder = save_bundle(tiny_model, tmp_path / "bundle")
    graph = ensure_fp32(folder)
    model = load_bundle(folder).model
    feeds = CalibrationData(model, graph, [data], batch_size=3).feeds
    multilabel = {a: bool(model.task(a).multilabel) for a in model.attributes}
    return folder / graph["file"], graph, feeds, multilabel, tmp_path


def test_the_backbone_output_is_the_tensor_the_fusion_reads(graphs):
    fp32, graph, *_ = graphs
    model = onnx.load(str(fp32))
    tensors = backbone_outputs(model, ["image"])
    assert set(tensors) == {"image"}
    owner = {o: n.name for n in model.graph.node for o in n.output}
    readers = [n.name for n in model.graph.node if tensors["image"] in n.input]
    assert owner[tensors["image"]].startswith("/image/")
    assert readers and not any(r.startswith("/image/") for r in readers)


def test_an_identical_graph_keeps_every_prediction(graphs):
    fp32, graph, feeds, multilabel, _ = graphs
    record = explain(fp32, fp32, graph, feeds, multilabel)
    assert record["products"] == 6
    assert record["backbones"]["image"]["sqnr_db"] is None  # no error at all
    assert {h["int8_agreement"] for h in record["heads"].values()} == {1.0}
    assert {h["noise_agreement"] for h in record["heads"].values()} == {1.0}  # zero error, zero noise
    assert record["reading"].startswith("int8 kept every prediction")


def test_the_noise_is_added_where_the_backbone_hands_on(graphs):
    fp32, graph, feeds, *_ = graphs
    model = onnx.load(str(fp32))
    tensors = backbone_outputs(model, ["image"])
    logits = [o for o in graph["outputs"]]
    plain = _session(onnx.load(str(fp32)), []).run(logits, feeds[0])
    noisy = _session(_with_noise(model, tensors), [tensors["image"]])
    width = noisy.run([tensors["image"]], {**feeds[0], "noise.image": np.zeros((1, 1), np.float32)})[0].shape
    zero = noisy.run(logits, {**feeds[0], "noise.image": np.zeros(width, np.float32)})
    loud = noisy.run(logits, {**feeds[0], "noise.image": np.full(width, 50.0, np.float32)})
    assert all(np.array_equal(a, b) for a, b in zip(plain, zero, strict=True))
    assert any(not np.allclose(a, b) for a, b in zip(plain, loud, strict=True))


def test_a_graph_with_a_large_error_is_diagnosed_with_its_sqnr(graphs):
    """An "int8" graph whose backbone output carries a fixed error of 10x its spread: the SQNR
    is far below 0 dB and random noise of that power flips predictions too."""
    fp32, graph, feeds, multilabel, tmp_path = graphs
    model = onnx.load(str(fp32))
    tensors = backbone_outputs(model, ["image"])
    probe = _session(onnx.load(str(fp32)), [tensors["image"]])
    values = np.concatenate([probe.run([tensors["image"]], f)[0] for f in feeds])
    spread = float(values.reshape(len(values), -1).std(axis=0).mean())
    broken = onnx.load(str(fp32))  # the backbone's own output carries the error
    clean = f"{tensors['image']}.clean"
    producer = next(n for n in broken.graph.node if tensors["image"] in n.output)
    producer.output[list(producer.output).index(tensors["image"])] = clean
    rng = np.random.default_rng(1)
    error = (rng.standard_normal((1, *values.shape[1:])) * 10 * spread).astype(np.float32)
    broken.graph.initializer.append(onnx.numpy_helper.from_array(error, "error"))
    broken.graph.node.append(onnx.helper.make_node("Add", [clean, "error"], [tensors["image"]]))
    path = tmp_path / "broken.onnx"
    onnx.save(broken, str(path))
    record = explain(fp32, path, graph, feeds, multilabel)
    flat = values.reshape(len(values), -1)
    expected = 10 * np.log10(((flat - flat.mean(axis=0)) ** 2).mean() / (error.astype(np.float64) ** 2).mean())
    assert record["backbones"]["image"]["sqnr_db"] == pytest.approx(expected, abs=0.1)
    assert expected < -10
    assert min(h["int8_agreement"] for h in record["heads"].values()) < 1.0
    assert min(h["noise_agreement"] for h in record["heads"].values()) < 1.0
    assert not record["reading"].startswith("int8 kept")


def test_sqnr_is_measured_on_what_sets_products_apart():
    shared = np.full((4, 3), 100.0)
    spread = np.array([[1.0], [-1.0], [1.0], [-1.0]]) * np.ones((1, 3))
    reference = shared + spread
    assert sqnr_db(reference, reference + 0.1) == pytest.approx(20.0)  # signal 1, error 0.01
    assert sqnr_db(reference, reference) == math.inf


def test_the_reading_names_the_fragile_part():
    where = {"image": {"sqnr_db": 27.3}}
    fragile = reading(where, {"color": {"int8_agreement": 0.57, "noise_agreement": 0.6},
                              "category": {"int8_agreement": 0.9, "noise_agreement": 0.9}})
    assert fragile.startswith("fragile heads") and "color" in fragile and "27.3 dB" in fragile
    structured = reading(where, {"color": {"int8_agreement": 0.57, "noise_agreement": 0.95}})
    assert structured.startswith("structured error") and "95%" in structured
    assert reading(where, {"color": {"int8_agreement": 1.0, "noise_agreement": 1.0}}).startswith("int8 kept")
    # an error about as large as the signal, whatever random noise of that power does
    large = reading({"image": {"sqnr_db": -2.2}}, {"color": {"int8_agreement": 0.75, "noise_agreement": 0.8}})
    assert large.startswith("large error") and "-2.2 dB" in large and "most sensitive" in large
    # a gap inside the sampling error of the products compared is not read as structured
    gap = {"color": {"int8_agreement": 0.57, "noise_agreement": 0.77}}
    assert reading(where, gap, products=20).startswith("fragile heads")
    assert reading(where, gap, products=400).startswith("structured error")


def _conv_stack(tmp_path, activation="Relu"):
    """A three-convolution image backbone ``/image/...`` (Conv -> Relu, or Conv -> Clip to [0, 6]
    with its bounds from Constant nodes as the exporter writes ReLU6, thrice, then global
    pooling) with one head, its fp32 graph quantized by ONNX Runtime (QDQ, per-channel int8
    weights, uint8 activations calibrated on random images)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(0)
    nodes, inits, channels, x = [], [], 3, "pixels"
    for i in range(3):
        w = rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.full(8, 0.1, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"/image/conv{i}/Conv",
                                      pads=[1] * 4))
        if activation == "Relu":
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"/image/relu{i}/Relu"))
        else:
            nodes += [helper.make_node("Constant", [], [f"lo{i}"], name=f"/image/act{i}/Constant",
                                       value=numpy_helper.from_array(np.array(0.0, np.float32))),
                      helper.make_node("Constant", [], [f"hi{i}"], name=f"/image/act{i}/Constant_1",
                                       value=numpy_helper.from_array(np.array(6.0, np.float32))),
                      helper.make_node("Clip", [f"c{i}", f"lo{i}", f"hi{i}"], [f"r{i}"], name=f"/image/act{i}/Clip")]
        x, channels = f"r{i}", 8
    inits += [numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "head_w")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"], name="/image/pool/GlobalAveragePool"),
              helper.make_node("Flatten", ["pooled"], ["features"], name="/image/flatten/Flatten"),
              helper.make_node("MatMul", ["features", "head_w"], ["logits.color"], name="/head/MatMul")]
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits.color", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(model, str(fp32))
    feeds = [{"pixels": rng.random((8, 3, 16, 16)).astype(np.float32)} for _ in range(3)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=[n.name for n in nodes if n.name.startswith("/image/")])
    return fp32, int8, feeds, {"outputs": ["logits.color"]}


def _run(model, feeds):
    return np.concatenate([_session(model, []).run(["logits.color"], f)[0] for f in feeds])


@pytest.mark.parametrize("activation", ["Relu", "Clip"])
def test_a_reverted_node_reads_its_fp32_inputs_and_the_graph_still_runs(tmp_path, activation):
    from fashion.predict.sensitivity import revert

    fp32, int8, feeds, _ = _conv_stack(tmp_path, activation)
    reference, quantized = onnx.load(str(fp32)), onnx.load(str(int8))
    convs = [n.name for n in reference.graph.node if n.op_type == "Conv"]
    int8_inputs = {n.name: list(n.input) for n in quantized.graph.node if n.name in convs}
    assert all(inputs != list(next(n for n in reference.graph.node if n.name == c).input)
               for c, inputs in int8_inputs.items())  # the quantizer rewired every convolution
    both = revert(quantized, reference, convs[1:])
    onnx.checker.check_model(both)
    nodes = {n.name: n for n in both.graph.node}
    fp32_inputs = {n.name: list(n.input) for n in reference.graph.node}
    for conv in convs[1:]:  # weights, bias and activation are the fp32 graph's (renamed where taken)
        assert [t.removesuffix(".fp32") for t in nodes[conv].input] == fp32_inputs[conv]
    assert list(nodes[convs[0]].input) == int8_inputs[convs[0]]  # not asked: still int8
    # the quantizer folds each activation into the QuantizeLinear after it (the convolution
    # writes the activation's output name): a reverted convolution gets it back in front of it,
    # a Clip with its bounds
    assert not any(n.op_type == activation for n in quantized.graph.node)
    put_back = [n for n in both.graph.node if n.op_type == activation]
    assert sorted(n.output[0] for n in put_back) == ["r0.fp32", "r1.fp32"]
    assert [nodes[c].input[0] for c in convs[1:]] == ["r0.fp32", "r1.fp32"]
    expected = _run(reference, feeds)
    error = {name: float(((_run(m, feeds) - expected) ** 2).mean())
             for name, m in {"int8": quantized, "two reverted": both,
                             "all reverted": revert(quantized, reference, convs)}.items()}
    assert error["all reverted"] < 0.5 * error["int8"] and error["two reverted"] < 0.5 * error["int8"]
    with pytest.raises(ValueError, match="not a node of both graphs"):
        revert(quantized, reference, ["/image/nowhere/Conv"])


def test_ranking_finds_the_convolution_int8_breaks(tmp_path):
    """One convolution's int8 weights are negated in the quantized graph: reverting it alone
    brings the logits back closest to fp32, so it ranks first, far ahead of the others."""
    from fashion.predict.sensitivity import rank_nodes

    fp32, int8, feeds, graph = _conv_stack(tmp_path)
    quantized = onnx.load(str(int8))
    conv = next(n for n in quantized.graph.node if n.name == "/image/conv1/Conv")
    weight = next(n for n in quantized.graph.node if n.output[0] == conv.input[1]).input[0]
    tensor = next(i for i in quantized.graph.initializer if i.name == weight)
    values = onnx.numpy_helper.to_array(tensor)
    tensor.CopyFrom(onnx.numpy_helper.from_array((-values.astype(np.int16)).clip(-127, 127).astype(values.dtype), weight))
    broken = tmp_path / "broken.onnx"
    onnx.save(quantized, str(broken))
    convs = [f"/image/conv{i}/Conv" for i in range(3)]
    ranked = rank_nodes(fp32, broken, graph, feeds, convs)
    assert [n for n, _ in ranked][0] == "/image/conv1/Conv"
    assert ranked[0][1] < 0.1 * ranked[1][1]
    plain = dict(rank_nodes(fp32, int8, graph, feeds, convs))
    assert all(v < ranked[1][1] for v in plain.values())  # the unbroken graph is far closer everywhere
