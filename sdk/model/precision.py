"""Precision and device, once for training and prediction: whether this CPU computes bf16
natively, the autocast dtype of a resolved precision (``fp32``, ``bf16``, ``fp16``, ``int8``),
and the device a name asks for."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from fashion.errors import ConfigError


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


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has; a clear error otherwise."""
    if isinstance(device, torch.device):
        parsed = device
    elif str(device).strip() == "auto":  # the default everywhere: train, evaluate, predict
        parsed = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            parsed = torch.device(str(device).strip())
        except (RuntimeError, ValueError, TypeError):
            raise ConfigError(
                f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps."
            ) from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r} asked for, but this machine has no usable CUDA "
                              "GPU; use --device cpu.")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"device {device!r} does not exist: this machine has {count} CUDA "
                              f"GPU(s) (cuda:0..cuda:{count - 1}).")
    elif parsed.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {device!r} is not available on this machine; use cpu.")
    elif parsed.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps.")
    return parsed


__all__ = ["autocast_dtype", "cpu_bf16_native", "cpu_flags", "cpu_model", "parse_device"]
