"""The ``optimizations`` record of ``fashion.json``: ONNX artifacts and the accuracy gate's verdict.

Every record is parsed by the strict models below when a bundle's index is read
(:func:`fashion.registry.bundle_format.read_index`): unknown keys, missing keys, a list where a
mapping belongs, a value of the wrong type, an unknown ``runtime:precision`` path, an ONNX record
whose outputs, inputs or file do not fit the bundle, or a verdict that contradicts its own scores
make the record *damaged*. A damaged record is never used: the index is read without it
(``index.optimizations`` is empty), :attr:`BundleIndex.optimizations_problem` says what is wrong,
loading warns, ``fashion show`` says so, and asking for the ONNX runtime is an error naming the
bundle file and the field. The model itself (its safetensors weights) is unaffected.

The files an ONNX record names are ordinary bundle files, listed with their sha256: a damaged or
missing ONNX file is refused on load like any other file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from fashion._util.config import StrictModel, explain_validation_error

ONNX_FILES = {"fp32": "onnx/model.onnx", "int8": "onnx/model.int8.onnx",
              "int8-static": "onnx/model.int8-static.onnx"}
OnnxPrecision = Literal["fp32", "int8", "int8-static"]
PathKey = Literal["torch:bf16", "torch:fp16", "torch:int8", "onnxruntime:fp32", "onnxruntime:int8",
                  "onnxruntime:int8-static", "openvino:fp32", "openvino:bf16", "openvino:int8-static"]
"""The optimized paths the accuracy gate judges (``runtime:precision``)."""
RUNS_ON = {"onnxruntime:fp32": "fp32", "onnxruntime:int8": "int8",
           "onnxruntime:int8-static": "int8-static", "openvino:fp32": "fp32",
           "openvino:bf16": "fp32", "openvino:int8-static": "int8-static"}
"""The ONNX artifact (precision key of ``onnx``) each ONNX path runs."""

_TOLERANCE = 1e-3  # scores are stored rounded to 4 decimals


class _Record(StrictModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GateData(_Record):
    path: str
    sha256: str
    rows: int = Field(ge=0)


class CpuRecord(_Record):
    """The CPU a record was made or validated on: its model name and the flags that matter."""

    model: str
    flags: list[str]


class CalibrationRecord(_Record):
    """What static quantization calibrated on: the manifests, the products read and a sha256 of
    the very inputs the graph took (the fingerprint)."""

    data: list[GateData]
    products: int = Field(ge=1)
    fingerprint: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class QuantizationRecord(_Record):
    """How an ``int8-static`` graph was quantized (:mod:`fashion.predict.static`)."""

    scheme: Literal["qdq"]
    method: Literal["minmax", "percentile", "entropy"]
    per_channel: bool
    reduce_range: bool
    activation_type: Literal["uint8", "int8"]
    weight_type: Literal["int8"]
    backbones: list[str]
    quantized_nodes: int = Field(ge=0)
    excluded: list[str]  # left out by the quantizer (the edges fix)
    fp32_nodes: list[str] = []  # quantized, then reverted to fp32 (the most sensitive convolutions)
    fix: str
    text: Literal["fp32", "int8"]
    calibration: CalibrationRecord
    cpu: CpuRecord


class OnnxRecord(_Record):
    """One exported graph: its file and what :class:`fashion.predict.runtime.OnnxRunner` feeds it."""

    file: str
    precision: OnnxPrecision
    opset: int = Field(ge=1)
    inputs: list[str]
    outputs: list[str]
    layout: list[tuple[str, Literal["image", "text"], list[str]]]
    image_shape: list[int] | None = None
    quantization: QuantizationRecord | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OnnxRecord:
        if self.file != ONNX_FILES[self.precision]:
            raise ValueError(f"file must be {ONNX_FILES[self.precision]} for precision {self.precision}")
        expected = []
        for name, modality, keys in self.layout:
            expected += [f"{name}.pixels"] if modality == "image" else [f"{name}.{k}" for k in keys]
            expected.append(f"{name}.pool")
        if self.inputs != expected:
            raise ValueError(f"inputs {self.inputs} do not follow the layout (expected {expected})")
        if (self.precision == "int8-static") != (self.quantization is not None):
            raise ValueError("an int8-static graph records its quantization, and only it does")
        return self


class BackboneErrorRecord(_Record):
    """The int8 graph's error where an image backbone hands on (``sqnr_db`` None: no error)."""

    tensor: str
    sqnr_db: float | None


class HeadSensitivityRecord(_Record):
    """Predictions kept by the int8 graph, and by fp32 under random noise of its error's power."""

    int8_agreement: float = Field(ge=0, le=1)
    noise_agreement: float = Field(ge=0, le=1)


class DiagnosisRecord(_Record):
    """Where the asked int8-static recipe lost (:mod:`fashion.predict.sensitivity`)."""

    products: int = Field(ge=0)
    backbones: dict[str, BackboneErrorRecord]
    heads: dict[str, HeadSensitivityRecord]
    seed: int
    reading: str


class PathRecord(_Record):
    """One path's scores; ``cpu``: where it was validated, ``fix``: which standard fix of a
    refused int8-static path passed (``none``: the first recipe), ``attempts``: each recipe
    tried with its worst delta, ``calibration``: the fingerprint it was calibrated on,
    ``products_per_s``: its speed measured at optimize time on ``cpu``, ``diagnosis``: where
    the asked recipe lost, when it did."""

    passed: bool
    agreement: dict[str, float]
    macro_f1: dict[str, float]
    f1_delta_points: dict[str, float]
    cpu: CpuRecord | None = None
    fix: str | None = None
    calibration: str | None = None
    attempts: dict[str, float] | None = None  # recipe -> worst macro-F1 delta (points)
    products_per_s: float | None = Field(default=None, gt=0)
    diagnosis: DiagnosisRecord | None = None


class GateReference(_Record):
    path: Literal["torch:fp32"]
    macro_f1: dict[str, float]


class GateRecord(_Record):
    """The accuracy gate's verdict (:meth:`fashion.predict.gate.GateReport.verdict`)."""

    max_loss: float = Field(ge=0)
    data: list[GateData]
    rows: int = Field(ge=0)
    created: str
    reference: GateReference
    paths: dict[PathKey, PathRecord]
    validated: list[PathKey]
    refused: list[PathKey]

    @model_validator(mode="after")
    def _consistent(self) -> GateRecord:
        for key, score in self.paths.items():
            losses = [d for d in score.f1_delta_points.values() if d < -self.max_loss - _TOLERANCE]
            wins = all(d >= -self.max_loss + _TOLERANCE for d in score.f1_delta_points.values())
            if score.passed and losses:
                raise ValueError(f"paths.{key} is marked passed but loses {min(losses):g} points "
                                 f"(max loss {self.max_loss:g})")
            if not score.passed and wins:
                raise ValueError(f"paths.{key} is marked refused but loses no more than "
                                 f"{self.max_loss:g} points on any attribute")
        validated = sorted(k for k, s in self.paths.items() if s.passed)
        refused = sorted(k for k, s in self.paths.items() if not s.passed)
        if sorted(self.validated) != validated or len(set(self.validated)) != len(self.validated):
            raise ValueError(f"validated {self.validated} does not match the paths that passed {validated}")
        if sorted(self.refused) != refused or len(set(self.refused)) != len(self.refused):
            raise ValueError(f"refused {self.refused} does not match the paths that failed {refused}")
        return self


class Optimizations(_Record):
    """The whole ``optimizations`` record (both keys optional)."""

    onnx: dict[OnnxPrecision, OnnxRecord] = Field(default_factory=dict)
    gate: GateRecord | None = None


def optimizations_problem(record: Any, attributes: Sequence[str], files: Mapping[str, Any]) -> str | None:
    """What is wrong with a bundle's ``optimizations`` record (``None``: nothing). ``attributes``
    and ``files`` are the index's: every ONNX graph must output one logits tensor per attribute,
    in order, and its file must be listed."""
    if record == {}:
        return None
    try:
        parsed = Optimizations.model_validate_json(json.dumps(record))
    except ValidationError as exc:
        return explain_validation_error(exc, top="optimizations")
    except (TypeError, ValueError) as exc:  # not JSON-serializable (cannot come from a file)
        return str(exc)
    wanted = [f"logits.{a}" for a in attributes]
    for precision, entry in parsed.onnx.items():
        if entry.precision != precision:
            return f"onnx.{precision}.precision: {entry.precision!r} under the key {precision!r}"
        if entry.outputs != wanted:
            return (f"onnx.{precision}.outputs: {entry.outputs} do not match the bundle's "
                    f"attributes (expected {wanted})")
        if entry.file not in files:
            return f"onnx.{precision}.file: {entry.file} is not listed in the bundle's files"
    for key in parsed.gate.validated if parsed.gate else []:
        if key in RUNS_ON and RUNS_ON[key] not in parsed.onnx:
            return f"gate.validated: {key} runs onnx.{RUNS_ON[key]}, which the record does not have"
    return None


__all__ = [
    "ONNX_FILES",
    "RUNS_ON",
    "CpuRecord",
    "GateRecord",
    "OnnxRecord",
    "Optimizations",
    "PathKey",
    "optimizations_problem",
]
