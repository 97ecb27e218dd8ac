"""The built-in samplers and loss combinations, registered like any plugin's (through the
``register_samplers`` and ``register_losses`` hooks; ``fashion.hookspecs`` shows a third-party
plugin doing the same)."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .losses import DWALoss, MeanLoss, PCGradLoss, SumLoss, UncertaintyLoss
from .samplers import AllTasksSampler, ProportionalSampler, RoundRobinSampler, TemperatureSampler


@hookimpl
def register_samplers(register: Register) -> None:
    for sampler in (ProportionalSampler, RoundRobinSampler, TemperatureSampler, AllTasksSampler):
        register(sampler)


@hookimpl
def register_losses(register: Register) -> None:
    for loss in (SumLoss, MeanLoss, UncertaintyLoss, DWALoss, PCGradLoss):
        register(loss)
