"""ONNX Runtime and OpenVINO: run an exported graph on batches prepared by the same Python code
as torch. Both take the same files (fp32, int8, the int8-static QDQ graph) and the same feeds."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fashion.errors import BundleError, ConfigError
from fashion.model.inputs import Batch
from fashion.model.network import FashionModel
from fashion.predict.export import graph_inputs, require, to_numpy

OPENVINO_EXTRA = "pip install 'fashion-sdk[openvino]'"


def open_runner(bundle: Any, runtime: str, precision: str, *, threads: int | None = None) -> Any:
    """The runner of the bundle's path ``runtime:precision`` (``onnxruntime`` or ``openvino``)."""
    from fashion.predict.artifacts import artifact_of, onnx_graph

    path, graph = onnx_graph(bundle.index, bundle.path, artifact_of(runtime, precision))
    if runtime == "openvino":
        return OpenVinoRunner(path, graph, bundle.model, bf16=precision == "bf16", threads=threads)
    return OnnxRunner(path, graph, bundle.model, threads=threads)


class OnnxRunner:
    """Logits per attribute for a prepared :class:`~fashion.model.network.Batch`, from an ONNX file.

    ``graph`` is the description :func:`~fashion.predict.export.export_onnx` returned (stored in
    the bundle); ``model`` is the loaded bundle model, used for its preprocessing only. The
    graph's inputs and outputs are checked against it when the session opens: an output whose
    width is not the attribute's label count (or an input the layout does not feed) is refused
    here, never discovered while decoding.
    """

    def __init__(self, path: str | Path, graph: Mapping[str, Any], model: FashionModel,
                 *, threads: int | None = None) -> None:
        self._describe(path, graph, model)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=_providers(ort, model.device))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(
                f"{self.path} is not a loadable ONNX model ({str(exc)[:200]}); export it again."
            ) from None
        self._check_signature(graph)

    def _describe(self, path: str | Path, graph: Mapping[str, Any], model: FashionModel) -> None:
        self.path = Path(path)
        self.model = model
        self.plan = [tuple(x) for x in graph["layout"]]
        self.outputs = list(graph["outputs"])
        self.attributes = [o.split(".", 1)[1] for o in self.outputs]
        if self.attributes != model.attributes:
            raise BundleError(
                f"{self.path} predicts {self.attributes} but the bundle's model has "
                f"{model.attributes}; export it again (`fashion export MODEL --format onnx`)."
            )
        shape = graph.get("image_shape")
        self.image_shape = tuple(shape) if shape else None
        self.widths = {a: len(model.spec.attributes[a].labels) for a in self.attributes}

    def _check_signature(self, graph: Mapping[str, Any]) -> None:
        inputs = sorted(i.name for i in self.session.get_inputs())
        self.check_signature(graph, inputs, {o.name: o.shape for o in self.session.get_outputs()})

    def check_signature(self, graph: Mapping[str, Any], inputs: list[str],
                        shapes: Mapping[str, Any]) -> None:
        """Refuse a graph whose inputs, layout or output widths do not fit the bundle's model."""
        problems = []
        planned = [name for name, _, _ in self.plan]
        if planned != list(self.model.input_dims):
            problems.append(f"its layout feeds {planned}, the model reads {list(self.model.input_dims)}")
        if inputs != sorted(graph["inputs"]):
            problems.append(f"it takes inputs {inputs}, the bundle records {sorted(graph['inputs'])}")
        for name, attribute in zip(self.outputs, self.attributes, strict=True):
            shape = shapes.get(name)
            want = self.widths[attribute]
            if shape is None:
                problems.append(f"it has no output {name}")
            elif len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != want):
                problems.append(f"output {name} has shape {list(shape)}, expected [products, {want}] "
                                f"({want} labels of {attribute!r})")
        if problems:
            raise BundleError(
                f"{self.path} does not fit the bundle's model: {'; '.join(problems)}. Export it "
                "again (`fashion export MODEL --format onnx`) or run with runtime torch."
            )

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return list(self.session.run(self.outputs, feeds))

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        feeds = to_numpy(graph_inputs(self.model, batch, self.plan, self.image_shape))  # type: ignore[arg-type]
        values = self.run(feeds)
        for attribute, value in zip(self.attributes, values, strict=True):
            if value.shape != (batch.size, self.widths[attribute]):  # a dynamic width in the graph
                raise BundleError(
                    f"{self.path} returned logits of shape {list(value.shape)} for {attribute!r}, "
                    f"expected [{batch.size}, {self.widths[attribute]}]; export it again "
                    "(`fashion export MODEL --format onnx`) or run with runtime torch."
                )
        return {a: torch.from_numpy(v) for a, v in zip(self.attributes, values, strict=True)}


def _providers(ort: Any, device: torch.device) -> list[str]:
    wanted = ["CUDAExecutionProvider"] if device.type == "cuda" else []
    if os.environ.get("FASHION_ORT_PROVIDERS"):
        wanted = os.environ["FASHION_ORT_PROVIDERS"].split(",")
    available = set(ort.get_available_providers())
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OpenVinoRunner(OnnxRunner):
    """The same graph compiled by OpenVINO for the CPU (``bf16``: its bf16 inference precision,
    where the CPU computes bf16 natively). A QDQ graph runs on OpenVINO's int8 kernels."""

    def __init__(self, path: str | Path, graph: Mapping[str, Any], model: FashionModel,
                 *, bf16: bool = False, threads: int | None = None) -> None:
        self._describe(path, graph, model)
        try:
            import openvino
        except ImportError:
            raise ConfigError(
                "runtime openvino needs the optional package 'openvino', which is not installed; "
                f"install the extra: {OPENVINO_EXTRA} (or run with runtime onnxruntime)."
            ) from None
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                  "PERFORMANCE_HINT": "LATENCY"}
        try:
            self.compiled = openvino.Core().compile_model(str(self.path), "CPU", config)
        except Exception as exc:  # openvino raises its own untyped errors
            raise BundleError(
                f"{self.path} could not be compiled by OpenVINO ({str(exc)[:200]}); export it "
                "again or run with runtime onnxruntime."
            ) from None
        self.request = self.compiled.create_infer_request()
        inputs = sorted(n for i in self.compiled.inputs for n in i.get_names() if n in graph["inputs"])
        shapes = {n: [d.get_length() if d.is_static else None for d in o.get_partial_shape()]
                  for o in self.compiled.outputs for n in o.get_names()}
        self.check_signature(graph, inputs, shapes)

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        result = self.request.infer(feeds)
        return [result[self.compiled.output(name)].copy() for name in self.outputs]
