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
    # a gap inside the sampling error of the products compared is not read as structured
    gap = {"color": {"int8_agreement": 0.57, "noise_agreement": 0.77}}
    assert reading(where, gap, products=20).startswith("fragile heads")
    assert reading(where, gap, products=400).startswith("structured error")
