"""The ``linear`` head: optional dropout, then one Linear layer to the attribute's labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field
from torch import Tensor, nn

from fashion import ComponentOptions, Head, hookimpl
from fashion.contract.hookspecs import Register


class LinearOptions(ComponentOptions):
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class LinearHead(Head[LinearOptions]):
    """Dropout -> Linear(input_dim, len(labels)); single-label softmax (see fashion.Head)."""

    name = "linear"

    def __init__(
        self,
        options: LinearOptions | Mapping[str, Any] | None = None,
        *,
        input_dim: int,
        labels: Sequence[str],
    ) -> None:
        super().__init__(options, input_dim=input_dim, labels=labels)
        self.dropout = nn.Dropout(self.options.dropout)
        self.linear = nn.Linear(self.input_dim, len(self.labels))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.dropout(x))


@hookimpl
def register_heads(register: Register) -> None:
    register(LinearHead)
