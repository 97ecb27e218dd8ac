"""Benchmarks: the numbers a team asks for before adopting the SDK, each as a side-by-side ratio.

``make bench`` (``python -m benchmarks.run``) runs every row in the quick profile (budgeted to 20
minutes on 2 cores, measured 21.0 after a change, about 18.8 on a rerun; results in ``benchmarks/results/quick/``); ``make bench-full``
(``--full``) runs the published sizes into ``benchmarks/results/<name>.json``, from which
``make docs`` (``python -m benchmarks.report``) generates docs/performance.md; ``--smoke`` runs
tiny sizes (CI); ``--only NAME`` runs one row in any profile. Every result carries its
environment (profile, CPU model and flags, versions, commit, load average), its size and expected
noise, settings, numbers, ratio, target and verdict (met, missed, not measurable here). SDK and
baseline runs are interleaved (ABAB) and reported as medians and ratios, so a noisy machine
shifts both sides alike. Benchmarks never fail: a missed target is a verdict in the table, not an
error.

Measurements (one module each): ``inference``, ``fast_inference``, ``multitask``,
``add_attribute``, ``training``, ``scale``, ``gpu``, ``serve``, ``scale_out`` (needs the ``ray``
extra), ``trust``, ``budget``, ``search`` (needs the ``search`` extra), ``retrieval`` (the
product vector's retrieval quality) and ``mining`` (labels mined from vendor text vs gold
labels). See ``docs/performance.md``.
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
    "search",
    "retrieval",
    "mining",
)

__all__ = ["MEASUREMENTS"]
