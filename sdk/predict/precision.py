"""Which precision and runtime a :class:`fashion.Predictor` runs (the CPU check and the autocast
dtype are :mod:`fashion.model.precision`, shared with training)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from fashion.errors import ConfigError
from fashion.model.precision import cpu_bf16_native

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "auto")
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")


def check_choice(precision: str, runtime: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime" and precision not in ("fp32", "int8", "auto"):
        raise ConfigError(
            f"precision {precision!r} is not available with runtime onnxruntime; use fp32, int8 "
            "or auto (or runtime='torch' for bf16/fp16)."
        )


def resolve_precision(
    precision: str,
    device: torch.device,
    *,
    runtime: str = "torch",
    validated: Iterable[str] = (),
    refused: Iterable[str] = (),
) -> str:
    """The precision that runs for a requested ``precision`` (``fp32|bf16|fp16|int8``).

    ``auto`` on CUDA is bf16 (fp16 where the GPU lacks bf16). On the CPU it prefers a path the
    bundle's accuracy gate validated (``validated``/``refused`` hold ``runtime:precision`` keys):
    int8, then bf16 where the CPU computes it natively, else fp32. Without a verdict it is bf16
    on CPUs with native bf16 and fp32 elsewhere. With ``runtime="onnxruntime"`` it is int8
    when validated, else fp32.
    """
    check_choice(precision, runtime)
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(
            "precision int8 (dynamic quantization) runs on the CPU only; use bf16 or auto on "
            f"{device.type}."
        )
    if precision != "auto":
        return precision
    ok, bad = set(validated), set(refused)
    if runtime == "onnxruntime":
        return "int8" if "onnxruntime:int8" in ok else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type != "cpu":
        return "fp32"
    if "torch:int8" in ok:
        return "int8"
    if cpu_bf16_native() and "torch:bf16" not in bad:
        return "bf16"
    return "fp32"
