"""Benchmarks: the numbers a team asks for before adopting the SDK, each as a side-by-side ratio.

Run them all with ``make bench`` (``python -m benchmarks.run``); ``--only NAME`` runs one and
``--quick`` runs tiny sizes as a smoke test. Every measurement writes
``benchmarks/results/<name>.json`` (environment, settings, numbers, ratio, target, verdict) and
the runner renders ``benchmarks/results/summary.md``. SDK and baseline runs are interleaved
(ABAB) and reported as medians and ratios, so a noisy machine shifts both sides alike.
Benchmarks never fail: a missed target is a verdict in the table, not an error.

Measurements (one module each): ``inference``, ``fast_inference``, ``multitask``,
``add_attribute``, ``training``, ``scale``, ``gpu``, ``serve``, ``scale_out`` (needs the ``ray``
extra), ``trust`` and ``budget``. See ``docs/performance.md``.
"""

from __future__ import annotations

MEASUREMENTS: tuple[str, ...] = (
    "inference",
    "fast_inference",
    "multitask",
    "add_attribute",
    "training",
    "scale",
    "gpu",
    "serve",
    "scale_out",
    "trust",
    "budget",
)

__all__ = ["MEASUREMENTS"]
