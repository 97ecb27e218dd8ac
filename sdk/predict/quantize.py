"""int8: dynamic quantization of Linear layers (text encoder, fusion, heads) on the CPU."""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any

import torch
from torch import nn

from fashion.model.network import FashionModel


def _engine() -> None:
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "onednn", "qnnpack"):
        if name in engines:
            torch.backends.quantized.engine = name
            return


def quantize_int8(model: FashionModel, *, conv_dtype: torch.dtype | None = None) -> FashionModel:
    """A copy of ``model`` whose ``nn.Linear`` layers run int8 (weights quantized once,
    activations quantized per batch: the CPU's VNNI/AVX2 integer path).

    Convolutions stay in floating point: with ``conv_dtype=torch.bfloat16`` the image backbones
    run under bf16 autocast (use it where the CPU computes bf16 natively), else fp32. The
    original model is left as it is.
    """
    with warnings.catch_warnings():  # torch notes that eager quantization moves to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

    _engine()
    quantized = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch notes its quantized tensors will move to torchao
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8, inplace=True)
    if conv_dtype is not None:
        for backbone in quantized.backbones.values():
            if backbone.modality == "image":
                backbone.forward = functools.partial(_autocast_forward, backbone.forward, conv_dtype)  # type: ignore[method-assign]
    return quantized


def _autocast_forward(forward: Any, dtype: torch.dtype, *args: Any) -> Any:
    with torch.autocast(device_type="cpu", dtype=dtype):
        return forward(*args).float()
