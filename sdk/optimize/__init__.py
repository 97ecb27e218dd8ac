"""Fast inference: precision selection, int8 quantization, ONNX export, ONNX Runtime and the
accuracy gate that validates every optimized path against fp32 eager.

- :func:`resolve_precision` turns ``fp32|bf16|fp16|int8|auto`` into what runs (``auto``: bf16 on
  CUDA and on CPUs with native bf16, a validated path when the bundle records one, else fp32).
- :func:`quantize_int8`: dynamic int8 quantization of every ``nn.Linear`` (text encoder, heads).
- :func:`export_onnx` writes backbones -> fusion -> heads as one ONNX graph with dynamic batch
  axes; :class:`OnnxRunner` runs it with ONNX Runtime on the same prepared batches.
- :func:`run_gate` compares each path with fp32 eager on labeled data (label agreement,
  per-attribute macro-F1 delta); :func:`add_to_bundle` records artifacts and the verdict.

``fashion export`` and ``fashion optimize`` are the command-line entry points.
"""

from __future__ import annotations

from .precision import PRECISIONS, RUNTIMES, cpu_bf16_native, resolve_precision
from .prefetch import prefetch

__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "cpu_bf16_native",
    "prefetch",
    "resolve_precision",
]
