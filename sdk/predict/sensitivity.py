"""Why an int8 graph lost accuracy: how large its error is where each image backbone hands its
features on, and how much the model's heads amplify an error of that size.

The accuracy gate says *that* a quantized graph changes predictions; this says *where*. On the
calibration products it runs the fp32 graph, the int8 graph, and the fp32 graph once more with
isotropic Gaussian noise added to each image backbone's output, at the power of the int8 graph's
error there (seeded). Two numbers per attribute then read the refusal:

- ``int8_agreement``: the fraction of products whose predicted labels the int8 graph keeps;
- ``noise_agreement``: the fraction kept under *random* noise of the same power.

When random noise of the int8 error's size changes about as many predictions, the quantization
is doing what int8 does (its error at the backbone output, ``sqnr_db``, is typical) and the heads
are the fragile part: their decisions sit so close to the boundaries that any approximation of
that size moves them. No recipe of the quantizer changes that; a model trained to wider margins
(more epochs or data, real pretrained weights), or a wider precision (bf16), does. When random
noise keeps clearly more predictions than the int8 graph, the error is structured (a clipped
range, a saturated layer) and the quantizer's recipe is at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashion.predict.export import require

STRUCTURED_MARGIN = 0.05
"""``noise_agreement`` above ``int8_agreement`` by more than this, and by more than two standard
errors of the difference on the products compared, reads as a structured error."""
LOW_SQNR_DB = 10.0
"""Below this SQNR at a backbone output the int8 error is about as large as the features'
spread over products (ResNet50's graphs here keep 16-33 dB; EfficientNet-Lite0's 6.5 dB):
whatever the heads' margins, the error itself is the problem."""
SAMPLES = 64
"""Calibration products the diagnosis runs (three forward passes each)."""


def backbone_outputs(onnx_model: Any, backbones: Sequence[str]) -> dict[str, str]:
    """Per image backbone, the tensor it hands on: written by one of its nodes (the exporter
    scopes them ``/<name>/``) and read by a node outside it."""
    owner = {o: n.name for n in onnx_model.graph.node for o in n.output}
    out: dict[str, str] = {}
    for backbone in backbones:
        prefix = f"/{backbone}/"
        for node in onnx_model.graph.node:
            if node.name.startswith(prefix):
                continue
            for tensor in node.input:
                if owner.get(tensor, "").startswith(prefix):
                    out.setdefault(backbone, tensor)
    return out


def _with_noise(onnx_model: Any, tensors: dict[str, str]) -> Any:
    """A copy of the graph that adds the input ``noise.<backbone>`` to each backbone output."""
    import copy

    onnx = require("onnx")
    model = copy.deepcopy(onnx_model)
    for backbone, tensor in tensors.items():
        noisy = f"{tensor}.noisy"
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = noisy
        model.graph.node.append(onnx.helper.make_node("Add", [tensor, f"noise.{backbone}"], [noisy]))
        model.graph.input.append(onnx.helper.make_tensor_value_info(
            f"noise.{backbone}", onnx.TensorProto.FLOAT, None))
    return model


def _session(model: Any, extra: Sequence[str]) -> Any:
    ort = require("onnxruntime")
    onnx = require("onnx")
    for tensor in extra:
        model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _labels(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    """Top-1 label, or for a multilabel head every label at probability 0.5 or more."""
    return logits >= 0.0 if multilabel else logits.argmax(axis=1)


def _kept(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    same = a == b
    return same.all(axis=1) if same.ndim > 1 else same


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB, the signal centred over the products (what
    sets one product apart from another, not the level they share)."""
    flat = reference.reshape(reference.shape[0], -1).astype(np.float64)
    error = float(((flat - other.reshape(flat.shape)) ** 2).mean())
    signal = float(((flat - flat.mean(axis=0)) ** 2).mean())
    if error == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / error) if signal > 0 else -math.inf


def explain(fp32: str | Path, int8: str | Path, graph: dict[str, Any], feeds: Sequence[dict[str, Any]],
            multilabel: dict[str, bool], *, seed: int = 0) -> dict[str, Any]:
    """Compare ``int8`` with ``fp32`` (two ONNX graphs of one model) on ``feeds`` (the graph's
    inputs per batch); see the module docstring. ``multilabel`` maps attribute -> whether its
    head is multilabel. Returns a JSON-ready record with a one-line ``reading``."""
    onnx = require("onnx")
    backbones = [n.split(":")[0] for n, m, _ in graph["layout"] if m == "image"]
    reference = onnx.load(str(fp32))
    tensors = backbone_outputs(reference, backbones)
    logits = [o for o in graph["outputs"] if o.startswith("logits.")]
    fp = _session(reference, list(tensors.values()))
    q = _session(onnx.load(str(int8)), list(tensors.values()))
    names = [*logits, *tensors.values()]
    ref_out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    q_out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in feeds:
        for name, a, b in zip(names, fp.run(names, batch), q.run(names, batch), strict=True):
            ref_out[name].append(a)
            q_out[name].append(b)
    joined = {n: np.concatenate(v) for n, v in ref_out.items()}
    quant = {n: np.concatenate(v) for n, v in q_out.items()}
    outputs: dict[str, Any] = {}
    power: dict[str, float] = {}
    for backbone, tensor in tensors.items():
        error = joined[tensor] - quant[tensor]
        power[backbone] = float((error.astype(np.float64) ** 2).mean())
        ratio = sqnr_db(joined[tensor], quant[tensor])
        outputs[backbone] = {"tensor": tensor, "sqnr_db": round(ratio, 2) if math.isfinite(ratio) else None}
    noisy = _session(_with_noise(reference, tensors), [])
    rng = np.random.default_rng(seed)
    kept_noise: dict[str, list[np.ndarray]] = {o: [] for o in logits}
    for i, batch in enumerate(feeds):
        noise = {f"noise.{b}": (rng.standard_normal(ref_out[t][i].shape) * math.sqrt(power[b])).astype(np.float32)
                 for b, t in tensors.items()}
        for name, value in zip(logits, noisy.run(logits, {**batch, **noise}), strict=True):
            multi = multilabel.get(name.removeprefix("logits."), False)
            kept_noise[name].append(_kept(_labels(ref_out[name][i], multi), _labels(value, multi)))
    heads: dict[str, Any] = {}
    for name in logits:
        attribute = name.removeprefix("logits.")
        multi = multilabel.get(attribute, False)
        heads[attribute] = {
            "int8_agreement": round(float(_kept(_labels(joined[name], multi), _labels(quant[name], multi)).mean()), 4),
            "noise_agreement": round(float(np.concatenate(kept_noise[name]).mean()), 4),
        }
    products = len(joined[logits[0]]) if logits else 0
    return {"products": products, "backbones": outputs, "heads": heads, "seed": seed,
            "reading": reading(outputs, heads, products=products)}


def reading(outputs: dict[str, Any], heads: dict[str, Any], *, products: int = 0) -> str:
    """One sentence a user acts on (see the module docstring); ``products``: how many were
    compared (the difference must exceed two standard errors to read as structured)."""
    if not heads:
        return "no head to compare"
    worst = min(heads, key=lambda a: heads[a]["int8_agreement"])
    h = heads[worst]
    where = ", ".join(f"{b} {o['sqnr_db']:g} dB" if o["sqnr_db"] is not None else f"{b}: no error"
                      for b, o in outputs.items())
    if h["int8_agreement"] >= 1.0:
        return f"int8 kept every prediction on these products (SQNR at the backbone output: {where})"
    low = [o["sqnr_db"] for o in outputs.values() if o["sqnr_db"] is not None and o["sqnr_db"] < LOW_SQNR_DB]
    if low:
        return (f"large error: the int8 graph keeps {min(low):g} dB SQNR at the backbone output, below "
                f"{LOW_SQNR_DB:g} dB: its error is about as large as what sets products apart "
                f"({h['int8_agreement']:.0%} of {worst} predictions kept); keeping the most sensitive "
                "convolutions fp32 (the last fix) helps when a few layers cause it, a wider precision "
                "(bf16) or quantization-aware training when it is spread over the layers")
    a, b = h["int8_agreement"], h["noise_agreement"]
    error = 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / products) if products else 0.0
    if b - a > max(STRUCTURED_MARGIN, error):
        return (f"structured error: random noise of the int8 error's power keeps {h['noise_agreement']:.0%} "
                f"of {worst} predictions, int8 only {h['int8_agreement']:.0%} (SQNR at the backbone "
                f"output: {where}); another recipe (calibration method, layers kept fp32) can help")
    return (f"fragile heads: random noise of the int8 error's power (SQNR at the backbone output: "
            f"{where}) changes as many {worst} predictions as int8 does ({h['noise_agreement']:.0%} vs "
            f"{h['int8_agreement']:.0%} kept); no calibration recipe fixes that (keeping the most "
            "sensitive convolutions fp32, tried last, may); train the model to wider margins (more "
            "epochs or data, pretrained weights) or keep a wider precision (bf16, fp32)")


def revert(int8_model: Any, fp32_model: Any, names: Sequence[str]) -> Any:
    """A copy of the QDQ graph ``int8_model`` in which the nodes ``names`` compute in fp32 again:
    each reads its fp32 weights and bias (copied from ``fp32_model``, the graph that was
    quantized) and the float tensors the fp32 graph gave it instead of dequantized int8 ones;
    what it writes is quantized for the nodes after it as before. The quantizer folds a ReLU
    (or Clip) that follows a convolution into the QuantizeLinear after it (unsigned int8 clips
    at zero) and gives the convolution the ReLU's output name; a reverted node reading such a
    tensor gets the ReLU back in front of it."""
    import copy

    model = copy.deepcopy(int8_model)
    reference = {n.name: n for n in fp32_model.graph.node}
    produced_fp32 = {o: n for n in fp32_model.graph.node for o in n.output}
    produced = {o: n for n in model.graph.node for o in n.output}
    initializers = {i.name: i for i in fp32_model.graph.initializer}
    present = {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    missing = sorted(set(names) - (set(reference) & {n.name for n in model.graph.node}))
    if missing:
        raise ValueError(f"cannot revert {', '.join(map(repr, missing))}: not a node of both graphs")
    added: dict[str, str] = {}  # fp32 tensor -> its name in the reverted graph
    restored: list[Any] = []
    constants: list[Any] = []

    def fixed(tensor: str, node: str) -> str:
        """A weight, bias or constant the fp32 graph gave ``node``, under a name free here."""
        if tensor in added:
            return added[tensor]
        name = tensor if tensor not in produced else f"{tensor}.fp32"
        if tensor in initializers:
            model.graph.initializer.append(copy.deepcopy(initializers[tensor]))
            model.graph.initializer[-1].name = name
        elif tensor in produced_fp32 and produced_fp32[tensor].op_type == "Constant":
            constant = copy.deepcopy(produced_fp32[tensor])
            constant.name, constant.output[0] = f"{constant.name}.fp32", name
            constants.append(constant)
        else:
            raise ValueError(f"cannot revert {node!r}: its input {tensor!r} is gone from the int8 graph")
        added[tensor] = name
        return name

    for node in model.graph.node:
        if node.name not in names:
            continue
        inputs = []
        for tensor in reference[node.name].input:
            if not tensor or (tensor in present and tensor not in produced):
                inputs.append(tensor)
                continue
            before, now = produced_fp32.get(tensor), produced.get(tensor)
            if tensor in added or before is None or before.op_type == "Constant":
                inputs.append(fixed(tensor, node.name))
                continue
            name = tensor
            if now is None or now.op_type != before.op_type:
                if now is None or before.op_type not in ("Relu", "Clip"):
                    raise ValueError(f"cannot revert {node.name!r}: its input {tensor!r} is written by "
                                     f"{now.op_type if now else 'no node'} in the int8 graph, a "
                                     f"{before.op_type} in fp32")
                name = f"{tensor}.fp32"  # the activation the quantizer folded, put back
                relu = copy.deepcopy(before)
                relu.name, relu.output[0] = f"{before.name}.fp32", name
                relu.input[0] = tensor
                for i in range(1, len(relu.input)):  # a Clip's bounds
                    if relu.input[i] and not (relu.input[i] in present or relu.input[i] in produced):
                        relu.input[i] = fixed(relu.input[i], node.name)
                restored.append(relu)
            added[tensor] = name
            inputs.append(name)
        del node.input[:]
        node.input.extend(inputs)
    for relu in restored:  # right after the node that writes its input: the graph stays sorted
        at = next(i for i, n in enumerate(model.graph.node) if relu.input[0] in n.output)
        model.graph.node.insert(at + 1, relu)
    for i, constant in enumerate(constants):
        model.graph.node.insert(i, constant)
    return model


def rank_nodes(fp32: str | Path, int8: str | Path, graph: dict[str, Any], feeds: Sequence[dict[str, Any]],
               nodes: Sequence[str], *, log: Any = None) -> list[tuple[str, float]]:
    """Each of ``nodes`` (quantized nodes of the int8 graph) reverted to fp32 alone
    (:func:`revert`), scored by the logits' error against the fp32 graph on ``feeds``: per
    attribute the squared error over the logits' spread across products, averaged over
    attributes (the normalized MSE accuracy-aware quantization ranks layers by when the metric
    is not per product). Returns ``(node, error)`` best first: the node whose revert leaves the
    smallest error is the one int8 costs most."""
    onnx = require("onnx")
    reference = onnx.load(str(fp32))
    quantized = onnx.load(str(int8))
    logits = [o for o in graph["outputs"] if o.startswith("logits.")]

    def outputs(model: Any) -> dict[str, np.ndarray]:
        session = _session(model, [])
        runs = [session.run(logits, batch) for batch in feeds]
        return {n: np.concatenate([r[i] for r in runs]).astype(np.float64) for i, n in enumerate(logits)}

    target = outputs(reference)
    spread = {n: float(((v - v.mean(axis=0)) ** 2).sum()) or 1.0 for n, v in target.items()}

    def error(model: Any) -> float:
        out = outputs(model)
        return float(np.mean([((out[n] - target[n]) ** 2).sum() / spread[n] for n in logits]))

    if log is not None:
        log(f"  the int8 graph's error: {error(quantized):.3g}")
    scores = []
    for i, name in enumerate(nodes):
        scores.append((name, error(revert(quantized, reference, [name]))))
        if log is not None and (i + 1) % 10 == 0:
            log(f"  ranked {i + 1} of {len(nodes)} nodes")
    return sorted(scores, key=lambda s: s[1])
