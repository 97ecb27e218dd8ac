"""The fault suite's ledger: every kind of bad input, the outcome expected and the one observed.

A test classifies what really happened (``predicted``, ``rejected``, ``error`` for a clear
:class:`fashion.FashionError` or usage error, or a failure: ``traceback``, ``silent-wrong``,
``lost-rows``), records it here and then asserts it equals the expected outcome. The terminal
summary (tests/faults/conftest.py) and ``docs/reliability.md`` (scripts/fault_report.py) count
from these records; nothing is hard-coded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

GOOD = ("predicted", "rejected", "error")
FAILURES = ("traceback", "silent-wrong", "lost-rows")


@dataclass
class Record:
    area: str
    kind: str
    expected: str
    observed: str
    lost: int = 0


RECORDS: dict[str, Record] = {}


def record(area: str, kind: str, expected: str, observed: str, lost: int = 0) -> None:
    """Note one kind's outcome (the last observation of a kind wins)."""
    RECORDS[f"{area}/{kind}"] = Record(area, kind, expected, observed, lost)
    path = os.environ.get("FASHION_FAULT_LEDGER")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(RECORDS[f"{area}/{kind}"].__dict__) + "\n")


def summary(records: dict[str, Record] | None = None) -> tuple[int, int, int, int]:
    """(kinds, tracebacks, silent wrong results, lost rows)."""
    records = RECORDS if records is None else records
    values = list(records.values())
    tracebacks = sum(r.observed == "traceback" for r in values)
    wrong = sum(r.observed == "silent-wrong" or (r.observed in GOOD and r.observed != r.expected)
                for r in values)
    lost = sum(r.lost for r in values)
    return len(values), tracebacks, wrong, lost


def by_area(records: dict[str, Record] | None = None) -> dict[str, dict[str, Record]]:
    """The records grouped by area (one family of the fault suite per area)."""
    records = RECORDS if records is None else records
    out: dict[str, dict[str, Record]] = {}
    for key, r in records.items():
        out.setdefault(r.area, {})[key] = r
    return out


def line(records: dict[str, Record] | None = None) -> str:
    kinds, tracebacks, wrong, lost = summary(records)
    return f"{kinds} kinds: {tracebacks} tracebacks, {wrong} silent wrong, {lost} lost rows"


def load(path: str | Path) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        if text.strip():
            r = Record(**json.loads(text))
            out[f"{r.area}/{r.kind}"] = r
    return out
