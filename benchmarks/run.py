"""``python -m benchmarks.run [--only NAME ...] [--quick]``: run the benchmarks, write the results.

Each measurement writes ``<out>/<name>.json``; ``<out>/summary.md`` is then rendered from every
result file in ``<out>`` (so ``--only`` refreshes one row group and keeps the others). Targets
are verdicts, never failures: the exit status is 0 unless a measurement crashed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import MEASUREMENTS

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
START, END = "<!-- benchmarks:summary:start -->", "<!-- benchmarks:summary:end -->"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--only", action="append", choices=MEASUREMENTS, metavar="NAME",
                        help=f"run only this measurement (repeatable): {', '.join(MEASUREMENTS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of about a minute")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: benchmarks/results; --quick: <work>/results-quick)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder for catalogs, caches and runs (default: $TMPDIR/fashion-bench)")
    parser.add_argument("--device", default="cpu",
                        help="device of measurements 1-5: cpu (default), cuda[:N] or auto; the gpu "
                             "measurement always uses CUDA when it is available")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: CPU count)")
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing: render summary.md from the result files in --out")
    parser.add_argument("--update-docs", action="store_true",
                        help=f"replace the results table in {DOCS.relative_to(DOCS.parents[1])} "
                             "with the new summary (not with --quick)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from .common import FULL, QUICK, Context, pick_device, quiet_libraries, write_json

    quiet_libraries()
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or cpus
    torch.set_num_threads(threads)
    work = (args.work or Path(tempfile.gettempdir()) / "fashion-bench").resolve()
    out = (args.out or (work / "results-quick" if args.quick else DEFAULT_OUT)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        sizes=QUICK if args.quick else FULL, out=out, work=work, device=pick_device(args.device),
        threads=threads, quick=args.quick, log=lambda m: print(m, flush=True),
    )
    names = [] if args.summary_only else [n for n in MEASUREMENTS if not args.only or n in args.only]
    crashed = []
    started = time.perf_counter()
    for name in names:
        print(f"[{name}] running ({'quick' if args.quick else 'full'}) ...", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            data = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken measurement must not hide the others
            traceback.print_exc()
            crashed.append(name)
            from .common import environment

            data = {
                "name": name, "title": name, "quick": args.quick,
                "environment": environment(threads, ctx.device), "settings": {}, "metrics": {},
                "comparisons": [], "notes": [], "error": f"{type(exc).__name__}: {exc}",
            }
        data["seconds"] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(work / "runs", ignore_errors=True)  # checkpoints: GBs; catalog + cache stay
        write_json(out / f"{name}.json", data)
        for row in data["comparisons"]:
            print(f"  -> {row['what']}: {format_value(row)} ({row['verdict']})", flush=True)
        print(f"[{name}] done in {data['seconds']:.0f}s -> {out / (name + '.json')}", flush=True)
    summary = render_summary(out)
    (out / "summary.md").write_text(summary, encoding="utf-8")
    print(f"\nall done in {time.perf_counter() - started:.0f}s; summary: {out / 'summary.md'}\n")
    print(summary)
    if args.update_docs:
        if args.quick:
            print("--update-docs ignored: --quick numbers are a smoke test, not results.")
        elif update_docs(DOCS, summary):
            print(f"updated {DOCS}")
        else:
            print(f"{DOCS} has no {START} ... {END} block; paste summary.md by hand.")
    return 1 if crashed else 0


# ----------------------------------------------------------------------------- summary


def format_value(row: dict[str, Any]) -> str:
    value = row["value"]
    if row["kind"] == "delta":
        return f"{value * 100:+.1f} pts" if abs(value) <= 1.0 else f"{value:+.3g}"
    return f"{value:.2f}x"


def _number(x: Any, unit: str) -> str:
    if not isinstance(x, (int, float)):
        return str(x)
    if unit in ("accuracy", "fraction"):
        return f"{x * 100:.1f}%"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _target(row: dict[str, Any]) -> str:
    target = row.get("target")
    if target is None:
        return "-"
    if row["kind"] == "delta":
        return f">= {target * 100:+.0f} pts"
    if row["kind"] == "max_ratio":
        return f"<= {target:.2f}x"
    return f">= {target:g}x"


def update_docs(path: Path, summary: str) -> bool:
    """Put ``summary`` (without its title) between the markers of ``path``; False if none."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return False
    body = summary.split("\n", 2)[2] if summary.startswith("# ") else summary
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{body.strip()}\n{END}{tail}", encoding="utf-8")
    return True


def load_results(out: Path) -> list[dict[str, Any]]:
    import json

    found = {}
    for path in out.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and "comparisons" in data:
            found[data.get("name", path.stem)] = data
    order = {n: i for i, n in enumerate(MEASUREMENTS)}
    return [found[n] for n in sorted(found, key=lambda n: order.get(n, len(order)))]


def render_summary(out: Path) -> str:
    """The markdown table of every result in ``out``, with each run's environment."""
    results = load_results(out)
    lines = ["# Benchmark results", ""]
    envs = []
    for data in results:
        env = data.get("environment", {})
        key = (env.get("cpu"), env.get("torch_threads"), env.get("torch"), env.get("commit"),
               env.get("dirty"), env.get("gpu"))
        if key not in envs:
            envs.append(key)
    for i, (cpu, threads, torch_version, commit, dirty, gpu) in enumerate(envs, start=1):
        label = f"[env {i}] " if len(envs) > 1 else ""
        lines.append(
            f"{label}CPU: {cpu}, torch threads: {threads}, torch {torch_version}, "
            f"commit {commit}{' (uncommitted changes)' if dirty else ''}, "
            f"GPU: {gpu or 'none available'}"
        )
    lines += [
        "",
        "| measurement | comparison | SDK side | baseline side | unit | result | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data in results:
        name = data["name"] + (" (quick)" if data.get("quick") else "")
        if len(envs) > 1:
            env = data.get("environment", {})
            key = (env.get("cpu"), env.get("torch_threads"), env.get("torch"), env.get("commit"),
                   env.get("dirty"), env.get("gpu"))
            name += f" [env {envs.index(key) + 1}]"
        if data.get("error"):
            lines.append(f"| {name} | crashed: {data['error'][:120]} | | | | | | error |")
            continue
        if not data["comparisons"]:
            note = (data.get("notes") or ["no comparison"])[0]
            lines.append(f"| {name} | {note} | | | | | | - |")
        for row in data["comparisons"]:
            sdk = f"{_number(row['sdk'], row['unit'])} ({row['sdk_label']})"
            base = f"{_number(row['baseline'], row['unit'])} ({row['baseline_label']})"
            lines.append(
                f"| {name} | {row['what']} | {sdk} | {base} | {row['unit']} | "
                f"{format_value(row)} | {_target(row)} | {row['verdict']} |"
            )
    lines.append("")
    for data in results:
        notes = data.get("notes") or []
        if notes:
            lines.append(f"**{data['name']}** ({data.get('seconds', '?')} s): " + " ".join(notes))
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
