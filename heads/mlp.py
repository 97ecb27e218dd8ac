"""The ``mlp`` head: hidden layers of Linear -> LayerNorm -> activation -> dropout.

LayerNorm (not BatchNorm) so the head trains and predicts with a batch of one product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from fashion import ComponentOptions, Head, hookimpl
from fashion.contract.hookspecs import Register


class MLPOptions(ComponentOptions):
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    norm: Literal["layer", "none"] = "layer"
    activation: Literal["gelu", "relu"] = "gelu"


def build_mlp(input_dim: int, num_outputs: int, options: MLPOptions) -> nn.Sequential:
    """``[Linear -> LayerNorm? -> act -> Dropout] * len(hidden) -> Linear(num_outputs)``."""
    layers: list[nn.Module] = []
    width = input_dim
    for size in options.hidden:
        layers.append(nn.Linear(width, size))
        if options.norm == "layer":
            layers.append(nn.LayerNorm(size))
        layers.append(nn.GELU() if options.activation == "gelu" else nn.ReLU())
        layers.append(nn.Dropout(options.dropout))
        width = size
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


class MLPHead(Head[MLPOptions]):
    """A small MLP classifier; single-label softmax (see fashion.Head). ``hidden=[]`` is a
    linear layer."""

    name = "mlp"

    def __init__(
        self,
        options: MLPOptions | Mapping[str, Any] | None = None,
        *,
        input_dim: int,
        labels: Sequence[str],
    ) -> None:
        super().__init__(options, input_dim=input_dim, labels=labels)
        opts = self.options
        self.net = build_mlp(self.input_dim, len(self.labels), opts)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@hookimpl
def register_heads(register: Register) -> None:
    register(MLPHead)
