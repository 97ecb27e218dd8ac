"""``python -m benchmarks.run [--quick | --full | --smoke] [--only NAME ...]``: run the
benchmarks, write the results.

Profiles (``benchmarks.common.PROFILES``): ``quick`` (the default, ``make bench``) runs every row
at reduced sizes, about 20 minutes on 2 cores, into ``benchmarks/results/quick/``; ``full``
(``make bench-full``) runs the published sizes into ``benchmarks/results/``, the files
docs/performance.md is generated from (``make docs``); ``smoke`` runs tiny sizes that only
exercise the code (CI), into ``<work>/results-smoke/``. A quick run never overwrites a full
result.

Each measurement writes ``<out>/<name>.json``; ``<out>/summary.md`` is then rendered from every
result file in ``<out>`` (so ``--only`` refreshes one row and keeps the others). Targets are
verdicts, never failures: the exit status is 0 unless a measurement crashed.
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

from . import MEASUREMENTS
from .report import (
    DOCS,
    RESULTS,
    format_value,
    render_docs,
    render_summary,
    targets_table,
    verdict_text,
)

DEFAULT_OUT = {"full": RESULTS, "quick": RESULTS / "quick"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=MEASUREMENTS, metavar="NAME",
                        help=f"run only this measurement (repeatable): {', '.join(MEASUREMENTS)}")
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--quick", dest="profile", action="store_const", const="quick",
                         help="reduced sizes, about 20 minutes on 2 cores (the default)")
    profile.add_argument("--full", dest="profile", action="store_const", const="full",
                         help="the published sizes (about 100 minutes on 2 cores)")
    profile.add_argument("--smoke", dest="profile", action="store_const", const="smoke",
                         help="tiny sizes that only exercise the code (CI); numbers mean nothing")
    parser.set_defaults(profile="quick")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: benchmarks/results for --full, "
                             "benchmarks/results/quick for --quick, <work>/results-smoke for --smoke)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder for catalogs, caches and runs (default: $TMPDIR/fashion-bench)")
    parser.add_argument("--device", default="cpu",
                        help="device of measurements 1-5: cpu (default), cuda[:N] or auto; the gpu "
                             "measurement always uses CUDA when it is available")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: CPU count)")
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing: render summary.md from the result files in --out")
    parser.add_argument("--update-docs", action="store_true",
                        help=f"regenerate {DOCS.relative_to(DOCS.parents[1])} from the full results "
                             "afterwards (as `make docs` does; ignored unless --full)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from .common import PROFILES, Context, environment, pick_device, quiet_libraries, write_json

    quiet_libraries()
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or cpus
    torch.set_num_threads(threads)
    work = (args.work or Path(tempfile.gettempdir()) / "fashion-bench").resolve()
    out = (args.out or DEFAULT_OUT.get(args.profile, work / f"results-{args.profile}")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(message: str) -> None:  # each step's line says when it started (seconds into the run)
        print(f"{time.perf_counter() - started:6.0f}s {message}", flush=True)

    ctx = Context(sizes=PROFILES[args.profile], out=out, work=work, device=pick_device(args.device),
                  threads=threads, log=log)
    names = [] if args.summary_only else [n for n in MEASUREMENTS if not args.only or n in args.only]
    crashed = []
    for name in names:
        print(f"[{name}] running ({args.profile}) ...", flush=True)
        env = environment(threads, ctx.device, args.profile)  # the load average as the row starts
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            data = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken measurement must not hide the others
            traceback.print_exc()
            crashed.append(name)
            data = {
                "name": name, "title": name, "profile": args.profile, "quick": ctx.quick,
                "size": "", "noise": "", "settings": {}, "metrics": {}, "comparisons": [],
                "notes": [], "error": f"{type(exc).__name__}: {exc}",
            }
        data["seconds"] = round(time.perf_counter() - t0, 1)
        data["environment"] = env | {
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
        }
        shutil.rmtree(work / "runs", ignore_errors=True)  # checkpoints: GBs; catalog + cache stay
        write_json(out / f"{name}.json", data)
        for row in data["comparisons"]:
            print(f"  -> {row['what']}: {format_value(row)} ({verdict_text(row)})", flush=True)
        print(f"[{name}] done in {data['seconds']:.0f}s -> {out / (name + '.json')}", flush=True)
    total = time.perf_counter() - started
    summary = render_summary(out)
    (out / "summary.md").write_text(summary, encoding="utf-8")
    print(f"\nsummary: {out / 'summary.md'}\n")
    print(targets_table(out))
    if names:
        print(f"\ntotal wall time: {total:.0f} s ({total / 60:.1f} min), profile {args.profile}, "
              f"{len(names)} measurement(s){', crashed: ' + ', '.join(crashed) if crashed else ''}")
    if args.update_docs:
        if args.profile != "full":
            print("--update-docs ignored: docs/performance.md publishes full results only.")
        else:
            DOCS.write_text(render_docs(RESULTS), encoding="utf-8")
            print(f"updated {DOCS}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
