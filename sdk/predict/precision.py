"""Which precision and runtime a :class:`fashion.Predictor` runs (the CPU check and the autocast
dtype are :mod:`fashion.model.precision`, shared with training).

``precision="auto"`` with ``runtime="auto"`` picks the fastest path the bundle's accuracy gate
validated that can run *as validated* on this machine (:func:`choose_path`): its runtime is
installed and the CPU features it needs are here. A validated path that cannot run here is
skipped with a warning naming what is missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from fashion.errors import ConfigError
from fashion.model.precision import cpu_bf16_native, cpu_flags, cpu_model

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "int8-static", "auto")
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "auto")
ALLOWED = {"torch": ("fp32", "bf16", "fp16", "int8"),
           "onnxruntime": ("fp32", "int8", "int8-static"),
           "openvino": ("fp32", "bf16", "int8-static")}
EXTRAS = {"onnxruntime": "fashion-sdk[onnx]", "openvino": "fashion-sdk[openvino]"}
INT8_DOT = {"avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp"}
"""Flags of the integer dot-product instructions int8 kernels run on (any one of them)."""
VNNI = {"avx512_vnni", "avx_vnni", "amx_int8"}
RELEVANT = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
            "amx_tile", "asimd", "asimddp")
_PREFERENCE = ("int8-static", "int8", "bf16", "fp16", "fp32")


def check_choice(precision: str, runtime: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime in ALLOWED and precision != "auto" and precision not in ALLOWED[runtime]:
        raise ConfigError(
            f"precision {precision!r} is not available with runtime {runtime}; use "
            f"{', '.join(ALLOWED[runtime])} or auto"
            + (" (or runtime='torch' for bf16/fp16)." if runtime == "onnxruntime" else ".")
        )


def cpu_record() -> dict[str, Any]:
    """This CPU, as the gate and the quantizer record it: model name and the flags that matter."""
    return {"model": cpu_model(), "flags": sorted(set(RELEVANT) & cpu_flags())}


def installed(runtime: str) -> bool:
    """Whether the package of an ONNX ``runtime`` (onnxruntime, openvino) imports here."""
    return importlib.util.find_spec(runtime) is not None


def blocker(key: str, record: Mapping[str, Any] | None = None,
            quantization: Mapping[str, Any] | None = None) -> str | None:
    """Why the validated path ``key`` cannot run here as it was validated (``None``: it can).

    ``record`` is the gate's record of the path (its ``cpu``), ``quantization`` the int8-static
    graph's record: a graph quantized without ``reduce_range`` on a CPU with VNNI may saturate
    in the AVX2 int8 kernels of a CPU without it, so its validation does not carry over."""
    runtime, _, precision = key.partition(":")
    if runtime in EXTRAS and not installed(runtime):
        return f"{runtime} is not installed (pip install '{EXTRAS[runtime]}')"
    here = cpu_flags()
    if precision == "bf16" and not cpu_bf16_native():
        return "this CPU has no native bf16 (avx512_bf16 or amx_bf16)"
    if precision == "int8-static":
        if here and not here & INT8_DOT:
            return "this CPU has none of the int8 dot-product instructions (avx2, vnni, neon)"
        there = set((record or {}).get("cpu", {}).get("flags", []))
        if quantization and not quantization.get("reduce_range") and there & VNNI \
                and here and not here & VNNI:
            return ("it was validated on a CPU with VNNI and quantized with full-range weights; "
                    "this CPU has no VNNI, where its int8 kernels may saturate (run `fashion "
                    "optimize MODEL --precision int8-static` on this machine)")
    return None


def choose_path(paths: Mapping[str, Mapping[str, Any]], validated: Iterable[str],
                quantization: Mapping[str, Any] | None = None,
                runtimes: Iterable[str] = ("torch", "onnxruntime", "openvino"),
                ) -> tuple[str | None, list[str]]:
    """The fastest validated path (``runtime:precision``) that runs here, and a warning per
    validated path that cannot. Speed: ``products_per_s`` measured at optimize time where every
    candidate has it, else the order int8-static, int8, bf16, fp16, fp32."""
    allowed = set(runtimes)
    candidates, warnings = [], []
    for key in sorted(validated):
        if key.split(":")[0] not in allowed:
            continue
        why = blocker(key, paths.get(key), quantization)
        if why:
            warnings.append(f"the validated path {key} cannot run here: {why}; falling back")
        else:
            candidates.append(key)
    if not candidates:
        return None, warnings
    speeds = {k: paths.get(k, {}).get("products_per_s") for k in candidates}
    if all(speeds.values()):
        return max(candidates, key=lambda k: speeds[k]), warnings
    return min(candidates, key=lambda k: (_PREFERENCE.index(k.split(":")[1]), k)), warnings


def resolve_precision(
    precision: str,
    device: torch.device,
    *,
    runtime: str = "torch",
    validated: Iterable[str] = (),
    refused: Iterable[str] = (),
) -> str:
    """The precision that runs for a requested ``precision`` on a fixed ``runtime``.

    ``auto`` on CUDA is bf16 (fp16 where the GPU lacks bf16). On the CPU it prefers a path the
    bundle's accuracy gate validated (``validated``/``refused`` hold ``runtime:precision`` keys):
    int8, then bf16 where the CPU computes it natively, else fp32. Without a verdict it is bf16
    on CPUs with native bf16 and fp32 elsewhere. With an ONNX runtime it is the best validated
    path of that runtime that runs here, else fp32.
    """
    check_choice(precision, runtime)
    if precision in ("int8", "int8-static") and device.type != "cpu":
        raise ConfigError(
            f"precision {precision} runs on the CPU only; use bf16 or auto on {device.type}."
        )
    if precision != "auto":
        return precision
    ok, bad = set(validated), set(refused)
    if runtime in ("onnxruntime", "openvino"):
        key, _ = choose_path({}, ok, runtimes=[runtime])
        return key.split(":")[1] if key else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type != "cpu":
        return "fp32"
    if "torch:int8" in ok:
        return "int8"
    if cpu_bf16_native() and "torch:bf16" not in bad:
        return "bf16"
    return "fp32"


def select(precision: str, runtime: str, device: torch.device,
           index: Any | None = None) -> tuple[str, str, list[str]]:
    """``(runtime, precision, warnings)`` that run for a request, reading the bundle ``index``'s
    verdict. ``runtime="auto"``: the fastest validated path for ``precision="auto"`` on the
    CPU, the fastest validated runtime of ``int8-static``, else torch."""
    check_choice(precision, runtime)
    optimizations = getattr(index, "optimizations", None) or {}
    gate = optimizations.get("gate") or {}
    validated, refused = list(gate.get("validated", [])), list(gate.get("refused", []))
    paths = dict(gate.get("paths", {}))
    quantization = optimizations.get("onnx", {}).get("int8-static", {}).get("quantization")
    warnings: list[str] = []
    if runtime == "auto":
        if precision == "auto" and device.type == "cpu" and validated:
            key, warnings = choose_path(paths, validated, quantization)
            if key:
                chosen, _, used = key.partition(":")
                return chosen, used, warnings
        if precision == "int8-static":  # asked for: the fastest installed runtime validated it
            here = [k for k in validated if k.endswith(":int8-static") and installed(k.split(":")[0])]
            speed = {k: paths.get(k, {}).get("products_per_s") or 0.0 for k in here}
            runtime = max(sorted(here), key=speed.__getitem__).split(":")[0] if here else "onnxruntime"
        else:
            runtime = "torch"
    elif precision == "auto" and runtime != "torch":
        key, warnings = choose_path(paths, validated, quantization, runtimes=[runtime])
        return runtime, key.split(":")[1] if key else "fp32", warnings
    used = resolve_precision(precision, device, runtime=runtime, validated=validated, refused=refused)
    return runtime, used, warnings
