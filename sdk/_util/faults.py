"""Fault injection for the crash tests: ``FASHION_FAULT_INJECT=point[:n]`` kills the process.

Code that must survive a ``kill -9`` calls :func:`fault_point` at the moments where a crash is
most damaging (between two renames, after a batch was written, before tags are moved). When the
environment variable names that point, the process sends itself ``SIGKILL`` at its ``n``-th
call (default 1): no ``finally`` blocks, no flushing, exactly like a power cut. Unset, a fault
point is one dictionary lookup.

Points: ``predict.batch`` (after a batch of predictions is written), ``predict.partial-line``
(half a JSON line written), ``bundle.staged`` (a bundle fully written to its staging folder),
``bundle.swap`` (the old bundle moved aside, the new one not yet in place), ``push.blob``
(a blob stored), ``push.renamed`` (a revision in place, ``latest`` not yet moved).
"""

from __future__ import annotations

import os
import signal

_ENV = "FASHION_FAULT_INJECT"
_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process here if ``FASHION_FAULT_INJECT`` names ``name`` (see the module doc)."""
    setting = os.environ.get(_ENV)
    if not setting:
        return
    point, _, nth = setting.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["fault_point"]
