"""7. Catalog scale-out: ``fashion predict --engine ray`` with 1 and 2 workers vs one machine.

The same bundle and rows as measurement 5 (``scale``: text only, a random 1-layer BERT, five
heads), written once as a Parquet file of 8 row groups, predicted three ways: ``fashion predict``
(the single-machine path, JSONL out), and ``fashion predict --engine ray --concurrency 1`` and
``--concurrency 2`` (a local Ray started by the command, Parquet parts out). Wall times are the
whole command, start-up included (Ray's start, worker processes importing torch, loading the
bundle); the CLI's own throughput line (from the start of the Ray job) is kept beside it. The
peak memory of each Ray worker is its ``VmHWM``, read from ``/proc`` while it runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .common import Context, compare, result
from .scale import _LAUNCHER, _bundle, _rows

NAME = "scale_out"
TITLE = "Catalog scale-out: fashion predict --engine ray (1, 2 workers) vs one machine"
WORKER_TITLE = "MapBatches(PredictBatches)"


def _parquet(ctx: Context, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = ctx.work / "scale_out" / f"rows-{rows}.parquet"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        source = _rows(ctx, rows)
        names = source.open(encoding="utf-8").readline().strip().split(",")
        table = pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False))
        pq.write_table(table, path, row_group_size=max(1, rows // 8))
    return path


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descends(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        pid = _parent(pid)
    return False


class _WorkerMemory:
    """Polls /proc for the Ray map workers started under ``root`` (the command's process);
    keeps each one's peak resident memory (VmHWM)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if WORKER_TITLE not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                        continue
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                pid = int(entry.name)
                match = re.search(r"VmHWM:\s+(\d+) kB", status)
                if match and _descends(pid, self.root):
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), int(match.group(1)) / 1024)


def _run(ctx: Context, command: list[str]) -> dict[str, Any]:
    """Run one command under the launcher of ``scale`` (peak RSS of its waited-for children)
    while polling the memory of the Ray workers it starts."""
    env = dict(os.environ, OMP_NUM_THREADS=str(ctx.threads))
    env.pop("TOKENIZERS_PARALLELISM", None)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _WorkerMemory(proc.pid) as memory:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[3:6])} failed: {(stdout + stderr)[-2000:]}")
    peak_kb = int(stdout.split("FASHION_BENCH_MAXRSS_KB")[-1].split()[0])
    return {"seconds": round(seconds, 2), "stdout": stdout.split("FASHION_BENCH")[0].strip(),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "worker_peak_rss_mb": sorted(round(v, 1) for v in memory.peaks.values())}


def run(ctx: Context) -> dict[str, Any]:
    rows = ctx.sizes.scale_out_rows
    batch = ctx.sizes.scale_out_batch
    bundle = _bundle(ctx)
    data = _parquet(ctx, rows)
    base = [sys.executable, "-m", "fashion", "predict", str(bundle), str(data),
            "--batch-size", str(batch)]
    runs: dict[str, dict[str, Any]] = {}
    ctx.log(f"  fashion predict: {rows:,} rows (one machine)")
    local_out = ctx.work / "scale_out" / "local.jsonl"
    runs["local"] = _run(ctx, [*base, "--out", str(local_out), "--overwrite"])
    for workers in (1, 2):
        out = ctx.work / "scale_out" / f"ray-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        ctx.log(f"  fashion predict --engine ray --concurrency {workers}: {rows:,} rows")
        runs[f"ray-{workers}"] = _run(ctx, [*base, "--out", str(out), "--engine", "ray",
                                            "--concurrency", str(workers)])
        shutil.rmtree(out, ignore_errors=True)
    local_out.unlink(missing_ok=True)
    local_out.with_name("local.rejects.jsonl").unlink(missing_ok=True)
    for run_ in runs.values():
        run_["rows_per_s"] = round(rows / run_["seconds"], 1)
        match = re.search(r"([\d.]+) products/s", run_["stdout"])
        run_["cli_products_per_s"] = float(match.group(1)) if match else None
    local, one, two = runs["local"], runs["ray-1"], runs["ray-2"]
    peak = max(one["worker_peak_rss_mb"] + two["worker_peak_rss_mb"], default=float("nan"))
    comparisons = [
        compare(f"--engine ray, 1 worker vs one machine ({rows:,} rows, wall time)",
                sdk=one["rows_per_s"], baseline=local["rows_per_s"], unit="products/s",
                sdk_label="ray, 1 worker", baseline_label="fashion predict",
                note="start-up included: Ray, worker processes, bundle load"),
        compare(f"--engine ray, 2 workers vs one machine ({rows:,} rows, wall time)",
                sdk=two["rows_per_s"], baseline=local["rows_per_s"], unit="products/s",
                sdk_label="ray, 2 workers", baseline_label="fashion predict"),
        compare("--engine ray: 2 workers vs 1 worker (CLI throughput, from the job's start)",
                sdk=two["cli_products_per_s"] or float("nan"),
                baseline=one["cli_products_per_s"] or float("nan"), unit="products/s",
                sdk_label="2 workers", baseline_label="1 worker",
                note="on 2 cores the reader, the driver and the workers share the same CPUs"),
        compare("peak memory per Ray worker vs ray-free fashion predict",
                sdk=peak, baseline=local["peak_rss_mb"], unit="MB",
                sdk_label="largest worker", baseline_label="fashion predict process",
                kind="max_ratio", note="VmHWM of each worker process"),
    ]
    loads = [x for r in runs.values() for x in r["load_average_1m"]]
    notes = [
        f"{os.cpu_count()} CPUs; 1-minute load average between {min(loads):.1f} and "
        f"{max(loads):.1f} around the runs. Each Ray run starts its own local Ray instance, so "
        "its wall time carries Ray's start, the workers' start (importing torch) and the bundle "
        "load; Ray also adds per-block work (Arrow conversion, object store, the driver's "
        "Parquet writer). With a load average above the CPU count, other jobs share the CPUs "
        "and a run with more processes gets a larger share of them: compare the engines on an "
        "idle machine before reading a speed-up or a slow-down into these ratios. The point of "
        "the engine is a path that grows with machines (docs/scale.md).",
        f"Workers' peak RSS: 1 worker {one['worker_peak_rss_mb']} MB; 2 workers "
        f"{two['worker_peak_rss_mb']} MB; the fashion predict process {local['peak_rss_mb']} MB.",
    ]
    return result(
        NAME, TITLE, ctx,
        settings={"rows": rows, "batch_size": batch, "input": "one Parquet file, 8 row groups",
                  "model": "bert (random, 1 layer, hidden 32) -> concat -> 5 linear heads"},
        metrics={"runs": runs}, comparisons=comparisons, notes=notes,
        size=f"{rows:,} text-only rows (one Parquet file), batch {batch}: one machine, Ray with 1 and 2 "
             "workers, one run each",
        noise=f"1-minute load average {min(loads):.1f}-{max(loads):.1f} around the runs; Ray's start-up "
              "(several seconds) is inside each wall time, so fewer rows weigh it more",
    )
