"""ONNX export of backbones -> fusion -> heads, and the feeds both runtimes share.

The graph takes, per fusion input, the backbone's payload (``pixels`` for an image input, the
tokenizer's tensors for a text input) and a ``pool`` matrix ``(products, payload rows)`` that
averages a product's images (the same masked mean :meth:`FashionModel.encode` computes); it
returns one logits tensor per attribute. Every leading axis is dynamic. Cropping, normalization,
tokenization and label decoding stay in Python (:meth:`FashionModel.prepare` / ``decode``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fashion.errors import ConfigError
from fashion.model.inputs import Batch
from fashion.model.network import FashionModel

ONNX_EXTRA = "pip install 'fashion-sdk[onnx]'"
OPSET = 17


def require(module: str) -> Any:
    """Import ``onnx``/``onnxruntime``, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"ONNX export and the onnxruntime runtime need the optional package {module!r}, "
            f"which is not installed; install the extra: {ONNX_EXTRA}"
        ) from None


def layout(model: FashionModel, batch: Batch) -> list[tuple[str, str, list[str]]]:
    """``(fusion input, modality, payload keys)`` in graph order; text keys from ``batch``."""
    out = []
    for name in model.input_dims:
        backbone = model.backbones[name.split(":")[0]]
        if backbone.modality == "image":
            out.append((name, "image", ["pixels"]))
        else:
            payload = batch.inputs[name][0]
            if payload is None:
                payload = backbone.preprocess([{"title": "-"}])
            out.append((name, "text", sorted(payload)))
    return out


def pool_matrix(owner: Tensor, size: int, rows: int) -> Tensor:
    """``(size, rows)``: row b averages the payload rows owned by product b (zeros: none)."""
    pool = torch.zeros(size, rows)
    if owner.numel():
        pool[owner, torch.arange(owner.numel())] = 1.0
        pool = pool / pool.sum(dim=1, keepdim=True).clamp(min=1.0)
    return pool


def graph_inputs(model: FashionModel, batch: Batch,
                 plan: list[tuple[str, str, list[str]]],
                 image_shape: tuple[int, ...] | None = None) -> dict[str, Tensor]:
    """The graph's named inputs for a prepared batch. An input no product has gets one
    placeholder row with an all-zero pool column (its features are zero and masked out)."""
    feeds: dict[str, Tensor] = {}
    for name, modality, keys in plan:
        payload, owner = batch.inputs[name]
        backbone = model.backbones[name.split(":")[0]]
        if payload is None or owner.numel() == 0:
            if modality == "image":
                shape = image_shape or (3, 224, 224)
                payload = torch.zeros(1, *shape[-3:])
            else:
                payload = backbone.preprocess([{"title": "-"}])
            owner, rows, empty = torch.zeros(0, dtype=torch.long), 1, True
        else:
            rows, empty = owner.numel(), False
        if modality == "image":
            feeds[f"{name}.pixels"] = payload.float().contiguous()
        else:
            for key in keys:
                feeds[f"{name}.{key}"] = payload[key]
        feeds[f"{name}.pool"] = torch.zeros(batch.size, rows) if empty else pool_matrix(owner, batch.size, rows)
    return feeds


class OnnxGraph(nn.Module):
    """The exported module: payloads + pool matrices -> logits per attribute."""

    def __init__(self, model: FashionModel, plan: list[tuple[str, str, list[str]]]) -> None:
        super().__init__()
        self.model = model
        self.plan = plan

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        it = iter(tensors)
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name, modality, keys in self.plan:
            backbone = self.model.backbones[name.split(":")[0]]
            payload: Any = next(it) if modality == "image" else {k: next(it) for k in keys}
            pool = next(it)
            values = backbone(payload).float()
            features[name] = pool @ values
            masks[name] = pool.sum(dim=1) > 0
        logits = self.model.head_logits(features, masks)
        return tuple(logits[a].float() for a in self.model.attributes)


def example_batch(model: FashionModel) -> Batch:
    """Two products, one with two images, both with text: every axis gets a distinct size."""
    from PIL import Image

    images = [Image.new("RGB", (96, 80), (200, 60, 40)), Image.new("RGB", (64, 64), (30, 90, 200))]
    return model.prepare([
        {"id": "a", "images": images, "title": "red cotton summer dress", "brand": "Acme"},
        {"id": "b", "images": images[:1], "title": "blue shirt"},
    ])


def export_onnx(model: FashionModel, path: str | Path, *, precision: str = "fp32") -> dict[str, Any]:
    """Write ``model`` as ONNX to ``path`` (``precision="int8"``: Linear/MatMul weights int8,
    dynamic activations, via ONNX Runtime's quantizer). Returns the graph description stored
    in the bundle (inputs, outputs, opset, image shape)."""
    if precision not in ("fp32", "int8"):
        raise ConfigError(f"ONNX export supports --precision fp32 or int8, not {precision!r}")
    require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    batch = example_batch(model)
    plan = layout(model, batch)
    image_shape = next((tuple(batch.inputs[n][0].shape[1:]) for n, m, _ in plan if m == "image"), None)
    feeds = graph_inputs(model, batch, plan, image_shape)
    names = list(feeds)
    outputs = [f"logits.{a}" for a in model.attributes]
    dynamic: dict[str, dict[int, str]] = {}
    for name, tensor in feeds.items():
        if name.endswith(".pool"):
            dynamic[name] = {0: "products", 1: f"{name}.rows"}
        elif name.endswith(".pixels"):
            dynamic[name] = {0: f"{name}.rows"}
        else:  # token tensors: every axis varies with the batch
            dynamic[name] = {i: f"{name}.{i}" for i in range(tensor.dim())}
    dynamic.update({o: {0: "products"} for o in outputs})
    target = path if precision == "fp32" else path.with_name(path.stem + ".fp32-tmp.onnx")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            OnnxGraph(model, plan).eval(), tuple(feeds.values()), str(target), dynamo=False,
            input_names=names, output_names=outputs, dynamic_axes=dynamic,
            opset_version=OPSET, do_constant_folding=True,
        )
    if precision == "int8":
        require("onnxruntime")
        from onnxruntime.quantization import QuantType, quantize_dynamic

        try:
            quantize_dynamic(str(target), str(path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"],
                             extra_options={"MatMulConstBOnly": True})
        finally:
            target.unlink(missing_ok=True)
    return {
        "precision": precision,
        "opset": OPSET,
        "inputs": names,
        "outputs": outputs,
        "layout": [[n, m, k] for n, m, k in plan],
        "image_shape": list(image_shape) if image_shape else None,
    }


def to_numpy(feeds: Mapping[str, Tensor]) -> dict[str, Any]:
    return {k: v.detach().cpu().numpy() for k, v in feeds.items()}
