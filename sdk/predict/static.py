"""Static int8 of the image backbones: post-training quantization of the bundle's ONNX graph.

Weights *and* activations of every image backbone's nodes become int8 (QDQ format: the graph
carries QuantizeLinear/DequantizeLinear pairs that ONNX Runtime and OpenVINO fuse into int8
convolutions), with per-channel int8 weights and activation ranges calibrated once on real
inputs: the calibration manifest's products (default: the bundle's validation manifests) go
through the model's own croppers and preprocessing (:meth:`FashionModel.prepare`) and the graph
feeds of :func:`fashion.predict.export.graph_inputs`, exactly what the graph takes when it
predicts. The text backbone, the fusion and the heads stay fp32.

The recipe follows ONNX Runtime's guidance for x86: ``quant_pre_process`` (shape inference and
graph optimization) first, unsigned int8 activations, signed int8 weights, and 7-bit weights
(``reduce_range``) on CPUs without VNNI, whose AVX2 int8 kernels can otherwise saturate.
:data:`FIXES` are the standard fixes tried, in order, when the accuracy gate refuses a graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fashion.errors import ConfigError
from fashion.model.network import FashionModel
from fashion.predict.export import graph_inputs, require, to_numpy

log = logging.getLogger(__name__)
METHODS = ("minmax", "percentile", "entropy")
MAX_PRODUCTS = 256
"""At most this many calibration products (a few hundred images are enough for the ranges)."""


@dataclass(frozen=True)
class StaticConfig:
    """One quantization recipe. ``exclude_edges``: the first convolution and the last block of
    each image backbone stay fp32 (left out by the quantizer); ``keep_fp32``: these nodes are
    quantized with the rest, then reverted to compute in fp32 on fp32 inputs
    (:func:`fashion.predict.sensitivity.revert`; the quantizer's own exclusion would keep their
    weights fp32 but still feed them int8 activations where other nodes read the same tensor)."""

    method: str = "minmax"
    per_channel: bool = True
    exclude_edges: bool = False
    keep_fp32: tuple[str, ...] = ()
    reduce_range: bool | None = None  # None: 7-bit weights where this CPU has no VNNI
    fix: str = "none"


def fixes(method: str) -> list[StaticConfig]:
    """The recipes tried in order: the asked one, then the standard fixes of a refusal, each on
    its own (first conv and last block in fp32, per-tensor weights, the other calibration
    methods)."""
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    base = StaticConfig(method=method)
    out = [base, replace(base, exclude_edges=True, fix="first conv and last block fp32"),
           replace(base, per_channel=False, fix="per-tensor weights")]
    return out + [replace(base, method=m, fix=f"{m} calibration") for m in METHODS if m != method]


class NothingToQuantize(ConfigError):
    """A recipe whose exclusions leave no convolution or matrix product of the image backbones."""


class CalibrationData:
    """ONNX Runtime's ``CalibrationDataReader`` over prepared products: each item is the graph's
    feeds for one batch, built by the real croppers and preprocessing. Rows that cannot be read
    are skipped (as ``fashion predict`` rejects them); an input no row has is refused."""

    def __init__(self, model: FashionModel, graph: dict[str, Any], sources: Sequence[str | Path],
                 *, products: int = MAX_PRODUCTS, batch_size: int = 16) -> None:
        from fashion.data.manifest import iter_manifest
        from fashion.predict.batch import prepare_rows

        if products < 1:
            raise ConfigError("--calibration-rows must be at least 1")
        plan = [tuple(x) for x in graph["layout"]]
        shape = tuple(graph["image_shape"]) if graph.get("image_shape") else None
        self.feeds: list[dict[str, Any]] = []
        self.data: list[dict[str, Any]] = []
        self.products = 0
        from fashion._util.files import sha256_file

        for source in map(Path, sources):
            rows: list[Any] = []
            used = 0
            for row in iter_manifest(source):
                if self.products + used + len(rows) >= products:
                    break
                rows.append(row)
                if len(rows) == batch_size:
                    used += self._add(model, prepare_rows(model, rows, source)[0], plan, shape)
                    rows = []
            if rows:
                used += self._add(model, prepare_rows(model, rows, source)[0], plan, shape)
            self.products += used
            self.data.append({"path": str(source), "sha256": sha256_file(source), "rows": used})
        images = sum(int(f[f"{n}.pool"].sum()) for f in self.feeds for n, m, _ in plan if m == "image")
        if not self.products or (shape is not None and images == 0):
            raise ConfigError(
                f"the calibration data {', '.join(map(str, sources))} has no readable product with "
                "an image; pass --calibration MANIFEST with images (a few hundred products)."
            )
        digest = hashlib.sha256()
        for feeds in self.feeds:
            for name in sorted(feeds):
                digest.update(name.encode())
                digest.update(feeds[name].tobytes())
        self.fingerprint = f"sha256:{digest.hexdigest()}"
        self._it: Iterator[dict[str, Any]] = iter(self.feeds)

    def _add(self, model: FashionModel, batch: Any, plan: Any, shape: Any) -> int:
        if batch is None:
            return 0
        self.feeds.append(to_numpy(graph_inputs(model, batch, plan, shape)))
        return int(batch.size)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only batches ``start_index:end_index`` next: the quantizer calibrates one batch
        at a time (``CalibStridedMinMax``), so its histograms never hold every activation of
        every calibration batch at once (ResNet50 at 224 px: about 100 MB per image)."""
        self._it = iter(self.feeds[start_index:end_index])

    def record(self) -> dict[str, Any]:
        return {"data": self.data, "products": self.products, "fingerprint": self.fingerprint}


SHAPE_OPS = ("Shape", "Size")
"""Nodes whose output describes a tensor's shape, not its values."""


def image_nodes(onnx_model: Any, backbones: Sequence[str]) -> list[str]:
    """The names of the image backbones' nodes that compute on image data (the exporter scopes
    them ``/<name>/``), in graph order.

    Left out: the arithmetic on tensor *shapes*, which a backbone with TensorFlow-style "same"
    padding (timm's ``tf_`` EfficientNets) exports as Shape -> Gather -> Cast -> Div -> Ceil ->
    Sub -> Mul -> Add -> Clip -> Concat -> Pad, in float. Quantized, those few integers (the
    padding of each strided convolution) are rounded to the int8 grid of their calibrated range:
    a padding of 1 became 0, the feature maps shrank from 28x28 to 27x27, and every later layer
    read shifted maps (EfficientNet-Lite0 kept 2.4 dB SQNR at its output). A node is on image
    data when one of its inputs is a graph input or another such node's output; a Shape or Size
    node ends that chain."""
    prefixes = tuple(f"/{b}/" for b in backbones)
    data = {i.name for i in onnx_model.graph.input}
    on_data = []
    for node in onnx_model.graph.node:  # ONNX keeps nodes in topological order
        if node.op_type in SHAPE_OPS or not any(i in data for i in node.input):
            continue
        data.update(node.output)
        if node.name.startswith(prefixes):
            on_data.append(node.name)
    return on_data


def edge_nodes(onnx_model: Any, backbone: str) -> list[str]:
    """The first convolution and the last block of a backbone: the nodes scoped under the module
    that holds its last convolution, going back past single convolutions at the top (a head
    convolution) to the first nested block."""
    convs = [n.name for n in onnx_model.graph.node
             if n.op_type == "Conv" and n.name.startswith(f"/{backbone}/")]
    if not convs:
        return []
    names = [n.name for n in onnx_model.graph.node if n.name.startswith(f"/{backbone}/")]
    excluded = [convs[0]]
    depth = len(backbone.split("/")) + 2  # "", backbone, top module
    for conv in reversed(convs):
        block = conv.rsplit("/", 2)[0] + "/"  # the module holding the conv's own module
        if block.count("/") <= depth:
            excluded.append(conv)
            continue
        excluded += [n for n in names if n.startswith(block)]
        break
    return sorted(set(excluded))


def calibrate(pre: Path, graph: Any, nodes: set[str], calibration: CalibrationData, method: str,
              tmp: Path) -> Any:
    """The activation ranges of the tensors the quantized nodes read and write, and of no other:
    ONNX Runtime's calibrators otherwise record every float tensor of the graph (the text
    encoder's too, whose attention masks hold infinities that break the histogram methods, and
    whose activations multiply the memory). One batch at a time, so the histograms never hold
    every activation of every calibration batch at once."""
    from onnxruntime.quantization.calibrate import (
        EntropyCalibrater,
        MinMaxCalibrater,
        PercentileCalibrater,
    )

    wanted = {t for n in graph.graph.node if n.name in nodes for t in (*n.input, *n.output) if t}
    augmented = str(tmp / "augmented.onnx")
    if method == "minmax":  # the settings quantize_static gives each method by default
        calibrator: Any = MinMaxCalibrater(str(pre), None, augmented)
    elif method == "entropy":
        calibrator = EntropyCalibrater(str(pre), None, augmented, num_bins=128, num_quantized_bins=128)
    else:
        calibrator = PercentileCalibrater(str(pre), None, augmented, symmetric=True, num_bins=2048,
                                          percentile=99.999)
    select = calibrator.select_tensors_to_calibrate

    def only_wanted(model: Any) -> tuple[set[str], dict[str, Any]]:
        tensors, infos = select(model)
        return tensors & wanted, infos

    calibrator.select_tensors_to_calibrate = only_wanted
    calibrator.augment_graph()
    calibrator.create_inference_session()
    # the histogram calibrators print their progress to stdout: kept out of the command's output
    # (and of a pipe reading it), logged at debug level instead
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        for start in range(len(calibration)):
            calibration.set_range(start, start + 1)
            calibrator.collect_data(calibration)
        calibration.rewind()
        ranges = calibrator.compute_data()
    if chatter.getvalue().strip():
        log.debug("ONNX Runtime's %s calibrator: %s", method, " | ".join(chatter.getvalue().split("\n")[:8]))
    return ranges


def save_ranges(ranges: Any, path: Path) -> None:
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(ranges, path)


def quantize(fp32: str | Path, out: str | Path, model: FashionModel, graph: dict[str, Any],
             calibration: CalibrationData, config: StaticConfig, *,
             cache: Path | None = None) -> dict[str, Any]:
    """Write the QDQ int8-static graph of ``fp32`` to ``out``; returns its quantization record.
    ``cache``: a folder where the recipes of one optimization share their work: the
    pre-processed fp32 graph (``pre.onnx``, whose node names the int8 graph keeps) and, per
    calibration method, the activation ranges of a recipe that excludes nothing (every later
    recipe of that method reads the ranges of the tensors it quantizes from them)."""
    ort = require("onnxruntime")
    onnx = require("onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fashion.model.precision import cpu_flags
    from fashion.predict.precision import VNNI, cpu_record

    backbones = [n.split(":")[0] for n, m, _ in graph["layout"] if m == "image"]
    if not backbones:
        raise ConfigError("int8-static quantizes image backbones; this model has none "
                          "(use --precision int8 for its Linear layers).")
    reduce_range = config.reduce_range if config.reduce_range is not None else not (cpu_flags() & VNNI)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="fashion-quant-") as tmp:
        pre = (cache or Path(tmp)) / "pre.onnx"
        if not pre.is_file():
            ort.set_default_logger_severity(3)  # its notes on subgraph names are not for users
            try:  # shape inference + graph optimization, as the quantizer asks
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            except Exception:  # noqa: BLE001 - a graph the optimizer cannot take is quantized as exported
                shutil.copyfile(fp32, pre)
            finally:
                ort.set_default_logger_severity(2)
        loaded = onnx.load(str(pre))
        nodes = image_nodes(loaded, backbones)
        excluded = sorted({e for b in backbones for e in edge_nodes(loaded, b)}) if config.exclude_edges else []
        quantized = [n for n in nodes if n not in set(excluded)]
        ops = {n.name: n.op_type for n in loaded.graph.node}
        weighted = [n for n in quantized if ops[n] in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
        weighted = [n for n in weighted if n not in set(config.keep_fp32)]
        if not weighted:
            raise NothingToQuantize(f"the recipe {config.fix!r} leaves no convolution of "
                                    f"{', '.join(backbones)} to quantize")
        ranges = (cache or Path(tmp)) / f"ranges-{config.method}.json"
        if not ranges.is_file() or cache is None:
            computed = Path(tmp) / "ranges.json"
            save_ranges(calibrate(pre, loaded, set(quantized), calibration, config.method, Path(tmp)), computed)
            if not excluded:  # every tensor a later recipe can quantize
                shutil.copyfile(computed, ranges)
            ranges = computed
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[config.method]
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # the quantizer logs its advice at warning level
        try:
            quantize_static(
                str(pre), str(out), calibration, quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel, reduce_range=reduce_range,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_quantize=quantized, nodes_to_exclude=excluded, calibrate_method=method,
                calibration_cache_path=str(ranges),
            )
        finally:
            logger.setLevel(level)
        if config.keep_fp32:
            from fashion.predict.sensitivity import revert

            onnx.save(revert(onnx.load(str(out)), loaded, config.keep_fp32), str(out))
    return {
        "scheme": "qdq", "method": config.method, "per_channel": config.per_channel,
        "reduce_range": bool(reduce_range), "activation_type": "uint8", "weight_type": "int8",
        "backbones": backbones, "quantized_nodes": len(weighted), "excluded": excluded,
        "fp32_nodes": list(config.keep_fp32),
        "fix": config.fix, "text": "fp32", "calibration": calibration.record(), "cpu": cpu_record(),
    }

