"""Regenerate the fault-suite counts in docs/reliability.md from a real run of tests/faults.

    .venv/bin/python -m tests.faults.report

Runs the suite with ``FASHION_FAULT_LEDGER`` set, reads back every recorded kind and rewrites the
block between the ``fault-suite`` markers of docs/reliability.md (kinds per area, the summary).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.faults import ledger

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-suite:begin -->", "<!-- fault-suite:end -->"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.jsonl"
        env = {**os.environ, "FASHION_FAULT_LEDGER": str(path)}
        result = subprocess.run([sys.executable, "-m", "pytest", "tests/faults", "-q", "-p",
                                 "no:cacheprovider"], cwd=ROOT, env=env)
        records = ledger.load(path) if path.is_file() else {}
    lines = [BEGIN, "", "| area | kinds | tracebacks | silent wrong | lost rows |", "|---|---|---|---|---|"]
    for area, family in sorted(ledger.by_area(records).items()):
        kinds, tracebacks, wrong, lost = ledger.summary(family)
        lines.append(f"| {area} | {kinds} | {tracebacks} | {wrong} | {lost} |")
    lines += ["", f"**{ledger.line(records)}** (pytest exit status {result.returncode})", "", END]
    text = DOC.read_text(encoding="utf-8")
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + "\n".join(lines) + text[stop:], encoding="utf-8")
    print(ledger.line(records))
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
