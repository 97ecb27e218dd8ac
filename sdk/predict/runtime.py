"""ONNX Runtime: run an exported graph on batches prepared by the same Python code as torch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fashion.errors import BundleError
from fashion.model.inputs import Batch
from fashion.model.network import FashionModel
from fashion.predict.export import graph_inputs, require, to_numpy


class OnnxRunner:
    """Logits per attribute for a prepared :class:`~fashion.model.network.Batch`, from an ONNX file.

    ``graph`` is the description :func:`~fashion.predict.export.export_onnx` returned (stored in
    the bundle); ``model`` is the loaded bundle model, used for its preprocessing only.
    """

    def __init__(self, path: str | Path, graph: Mapping[str, Any], model: FashionModel,
                 *, threads: int | None = None) -> None:
        ort = require("onnxruntime")
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

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        feeds = to_numpy(graph_inputs(self.model, batch, self.plan, self.image_shape))  # type: ignore[arg-type]
        values = self.session.run(self.outputs, feeds)
        return {a: torch.from_numpy(v) for a, v in zip(self.attributes, values, strict=True)}


def _providers(ort: Any, device: torch.device) -> list[str]:
    wanted = ["CUDAExecutionProvider"] if device.type == "cuda" else []
    if os.environ.get("FASHION_ORT_PROVIDERS"):
        wanted = os.environ["FASHION_ORT_PROVIDERS"].split(",")
    available = set(ort.get_available_providers())
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]
