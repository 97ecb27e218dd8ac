"""Precision, once for training and prediction: whether this CPU computes bf16 natively, and
the autocast dtype of a resolved precision (``fp32``, ``bf16``, ``fp16``, ``int8``)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first ``/proc/cpuinfo`` line starting with one of ``keys`` (``None``:
    no such line, or no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(keys):
            return line.split(":", 1)[1].strip()
    return None


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this CPU (``/proc/cpuinfo``; empty where it cannot be read)."""
    return frozenset((_cpuinfo("flags", "Features") or "").split())


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """This CPU's model name (``/proc/cpuinfo``, else what :mod:`platform` says)."""
    import platform

    return _cpuinfo("model name") or platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 is faster than
    fp32; elsewhere torch emulates bf16 and it is slower."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "AMX" in capability or "BF16" in capability:
        return True
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``None``: no autocast)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


__all__ = ["autocast_dtype", "cpu_bf16_native", "cpu_flags", "cpu_model"]
