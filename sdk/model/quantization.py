"""Quantization-aware training: the image backbones train with int8 simulated in their forward.

``fashion optimize --precision int8-static`` quantizes a trained bundle's image backbones after
the fact (weights per channel, activations per tensor, ranges calibrated on real products). When
the accuracy gate refuses every recipe because the error is spread over the layers (measured on
the bench's ResNet50: keeping a quarter of its convolutions fp32 did not help), the field's next
step is to let training see that error: every convolution of every image backbone computes with

- its **input** rounded to unsigned 8-bit over a per-tensor range, the running min/max of every
  training batch so far (MinMax, the calibration method the static recipe asks first; validation
  reads the range as it stands), as the static graph's QuantizeLinear before each convolution
  does; likewise the output of a convolution's BatchNorm that no ``nn.ReLU`` module reads (a
  residual branch before its addition), which the graph quantizes too; and
- its **weight** rounded per output channel, symmetric, to ``weight_bits`` (7 by default: the
  7-bit weights the static recipe uses on CPUs without VNNI; 8-bit deployment is finer still),
  *after* folding the BatchNorm that follows it: the exported graph folds Conv+BatchNorm before
  it quantizes, so the rounding simulated is the folded weight's
  (``fq(w * s) / s`` with ``s = gamma / sqrt(running_var + eps)``, exact through the BatchNorm).

Gradients pass the rounding straight through (``torch.fake_quantize_*``). The BatchNorm layers
that follow a convolution keep their running statistics fixed while simulating (their fold is
what is rounded); their affine parameters still train. Which BatchNorm reads which convolution
is found on the first training batch by tensor identity, so any eager backbone works.

Nothing of the simulation is saved: the weights stay plain fp32 tensors under their usual names
(a bundle of a quantization-aware run predicts in fp32 like any other), and the simulation is
removed when training ends, before the final evaluation. Its use is the int8-static gate that
follows. The bundle records ``quantization_aware`` with the run's config.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from fashion.errors import ConfigError

log = logging.getLogger("fashion.training")  # its lines belong to the run that simulates

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class ActivationRange(nn.Module):
    """A per-tensor unsigned 8-bit fake quantizer over the running min/max of the tensors it saw
    in training (0 always inside the range, as ONNX Runtime's calibration keeps it); in eval mode
    the range holds (set from the first tensor when none was seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.low: float | None = None
        self.high: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training or self.low is None or self.high is None:
            low, high = (float(v) for v in torch.aminmax(x.detach().float()))
            if not (math.isfinite(low) and math.isfinite(high)):
                return x  # a diverged step: its loss says so; the range keeps what it had
            self.low = min(low, 0.0, self.low if self.low is not None else 0.0)
            self.high = max(high, 0.0, self.high if self.high is not None else 0.0)
        span = self.high - self.low  # type: ignore[operator]
        if not span > 0:
            return x
        scale = span / 255.0
        zero = int(round(-self.low / scale))  # type: ignore[operator]
        return torch.fake_quantize_per_tensor_affine(x.float(), scale, min(max(zero, 0), 255), 0, 255).to(x.dtype)


def fake_quant_weight(weight: Tensor, fold: Tensor | None, bits: int) -> Tensor:
    """``weight`` rounded per output channel (symmetric, ``bits``) as the graph will hold it:
    folded by the following BatchNorm's scale ``fold`` first, unfolded after."""
    w = weight.float()
    shape = (-1,) + (1,) * (w.dim() - 1)
    if fold is not None:
        fold = torch.where(fold.abs() < 1e-12, torch.ones_like(fold), fold).detach().float()
        w = w * fold.view(shape)
    qmax = 2 ** (bits - 1) - 1
    scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / qmax).clamp_min(1e-12)
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    q = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -qmax, qmax)
    if fold is not None:
        q = q / fold.view(shape)
    return q.to(weight.dtype)


def _bn_scale(norm: nn.Module) -> Tensor:
    return norm.weight / torch.sqrt(norm.running_var + norm.eps)  # type: ignore[operator]


class Simulation:
    """The int8 simulation attached to one image backbone (:func:`simulate`); :meth:`remove`
    takes it off and leaves the module as it was."""

    def __init__(self, backbone: nn.Module, weight_bits: int) -> None:
        self.backbone = backbone
        self.weight_bits = weight_bits
        self.handles: list[Any] = []
        self.convs: list[nn.Module] = []
        self.ranges: dict[nn.Module, ActivationRange] = {}
        self.paired: dict[nn.Module, nn.Module] = {}
        self.outputs: dict[nn.Module, ActivationRange] = {}  # BatchNorms whose output is quantized
        self._pairing = False
        self.handles.append(backbone.register_forward_pre_hook(self._first_call))

    def _first_call(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """On the first forward: find each convolution's BatchNorm by running the backbone once
        (no gradients, running statistics untouched), then attach the simulation."""
        if self._pairing or self.convs:
            return
        outputs: dict[int, tuple[nn.Module, Tensor]] = {}  # the tensors kept alive: ids stay unique
        normed: dict[int, tuple[nn.Module, Tensor, int]] = {}
        into_relu: set[nn.Module] = set()

        def conv_out(m: nn.Module, i: Any, o: Tensor) -> None:
            outputs[id(o)] = (m, o)

        def norm_in(m: nn.Module, i: tuple[Any, ...]) -> None:
            if id(i[0]) in outputs:
                self.paired[outputs[id(i[0])][0]] = m

        def norm_out(m: nn.Module, i: Any, o: Tensor) -> None:
            normed[id(o)] = (m, o, o._version)  # an in-place add after it bumps the version

        def relu_in(m: nn.Module, i: tuple[Any, ...]) -> None:
            if id(i[0]) in normed and normed[id(i[0])][2] == i[0]._version:
                into_relu.add(normed[id(i[0])][0])

        hooks = []
        for sub in module.modules():
            if isinstance(sub, CONVOLUTIONS):
                hooks.append(sub.register_forward_hook(conv_out))
            elif isinstance(sub, NORMS):
                hooks += [sub.register_forward_pre_hook(norm_in), sub.register_forward_hook(norm_out)]
            elif isinstance(sub, (nn.ReLU, nn.ReLU6)):
                hooks.append(sub.register_forward_pre_hook(relu_in))
        training = module.training
        self._pairing = True
        try:
            module.eval()
            with torch.no_grad():
                module(*args)
        finally:
            self._pairing = False
            module.train(training)
            for hook in hooks:
                hook.remove()
        for conv in (m for m in module.modules() if isinstance(m, CONVOLUTIONS)):
            self._attach(conv)
        for norm in self.paired.values():
            self.handles.append(norm.register_forward_pre_hook(_freeze_statistics))
            if norm not in into_relu:  # the graph quantizes this output (a ReLU's would be the next input's)
                self.outputs[norm] = rng = ActivationRange()
                self.handles.append(norm.register_forward_hook(
                    lambda m, i, o, rng=rng: rng.train(self.backbone.training)(o)))
        log.info("quantization-aware: %d convolutions of %s simulate int8 (%d-bit weights per channel, "
                 "%d folded with their BatchNorm; 8-bit inputs per tensor, and %d BatchNorm outputs no "
                 "ReLU reads)", len(self.convs), type(module).__name__, self.weight_bits, len(self.paired),
                 len(self.outputs))

    def _attach(self, conv: nn.Module) -> None:
        rng = ActivationRange()
        self.ranges[conv] = rng
        self.convs.append(conv)
        norm = self.paired.get(conv)
        bits = self.weight_bits
        original = conv._conv_forward  # type: ignore[operator]

        def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
            rng.train(conv.training)
            fold = _bn_scale(norm) if norm is not None else None
            return original(rng(x), fake_quant_weight(weight, fold, bits), bias)  # type: ignore[operator]

        conv._conv_forward = forward  # type: ignore[assignment,method-assign]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        for conv in self.convs:
            del conv._conv_forward  # the class's method again
        self.handles, self.convs = [], []


def _freeze_statistics(norm: nn.Module, args: tuple[Any, ...]) -> None:
    norm.training = False  # the folded scale is what is rounded: batch statistics would move it


def simulate(backbone: nn.Module, *, weight_bits: int = 7) -> Simulation:
    """Attach int8 simulation to ``backbone`` (effective from its first forward)."""
    if not 2 <= weight_bits <= 8:
        raise ConfigError(f"quantization-aware weight bits must be 2..8, not {weight_bits}")
    return Simulation(backbone, weight_bits)


__all__ = ["ActivationRange", "Simulation", "fake_quant_weight", "simulate"]
