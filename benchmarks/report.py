"""``python -m benchmarks.report [--results DIR] [--out FILE]``: docs/performance.md from results.

The page is ``benchmarks/performance.md.in`` (the prose) with its ``<!-- generated:NAME -->``
lines replaced by tables rendered from the result files of the full profile
(``benchmarks/results/*.json``): the machines that produced them (CPU model, cores, the CPU flags
that matter, library versions, commit), the targets with their verdicts, every comparison, the
fast-inference paths and the trust table, each row naming the machine and commit it came from.
``make docs`` writes it; a test checks the committed page equals what this writes from the
committed results. The runner's ``summary.md`` and closing table use the same functions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import MEASUREMENTS

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TEMPLATE = HERE / "performance.md.in"
DOCS = HERE.parent / "docs" / "performance.md"
FLAG_NAMES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")


# ----------------------------------------------------------------------------- loading


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every result file of ``folder`` (not its subfolders), in the order of MEASUREMENTS."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and "comparisons" in data:
            found[data.get("name", path.stem)] = data
    order = {n: i for i, n in enumerate(MEASUREMENTS)}
    return [found[n] for n in sorted(found, key=lambda n: (order.get(n, len(order)), n))]


def profile_of(data: dict[str, Any]) -> str:
    """A result's profile (files written before profiles existed: ``quick`` was the smoke run)."""
    return data.get("profile") or ("smoke" if data.get("quick") else "full")


# ----------------------------------------------------------------------------- machines


def _flags(env: dict[str, Any]) -> str:
    flags = env.get("cpu_flags")
    if not flags:
        return "not recorded"
    have = [f for f in FLAG_NAMES if flags.get(f)] + list(flags.get("amx") or [])
    lacks = [f for f in FLAG_NAMES if not flags.get(f)] + ([] if flags.get("amx") else ["amx"])
    return ", ".join(have) + (f" (no {', '.join(lacks)})" if lacks else "")


def machine_key(env: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two results' machines (and software) the same for reading ratios side by side."""
    return (env.get("cpu"), env.get("logical_cpus"), _flags(env), env.get("torch_threads"),
            env.get("torch"), env.get("onnxruntime", "not recorded"),
            env.get("openvino", "not recorded"), env.get("gpu"))


def machines(results: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys: list[tuple[Any, ...]] = []
    for data in results:
        key = machine_key(data.get("environment", {}))
        if key not in keys:
            keys.append(key)
    return keys


def commit_of(env: dict[str, Any]) -> str:
    commit = env.get("commit") or "unknown"
    return commit + ("+" if env.get("dirty") else "")


def machines_table(results: Sequence[dict[str, Any]]) -> str:
    keys = machines(results)
    lines = ["| machine | CPU | logical CPUs | CPU flags | torch threads | torch | onnxruntime | "
             "openvino | GPU | rows (commit) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for i, key in enumerate(keys, start=1):
        cpu, cores, flags, threads, torch_version, ort, ov, gpu = key
        rows = ", ".join(f"{d['name']} ({commit_of(d.get('environment', {}))})" for d in results
                         if machine_key(d.get("environment", {})) == key)
        lines.append(f"| M{i} | {cpu} | {cores if cores is not None else '?'} | {flags} | {threads} | "
                     f"{torch_version} | {ort} | {ov} | {gpu or 'none'} | {rows} |")
    lines.append("")
    lines.append("A `+` after a commit: the tree had uncommitted changes. \"not recorded\": the result "
                 "predates that field of the environment block.")
    return "\n".join(lines)


def machine_label(data: dict[str, Any], keys: Sequence[tuple[Any, ...]]) -> str:
    env = data.get("environment", {})
    return f"M{keys.index(machine_key(env)) + 1} @ {commit_of(env)}"


# ----------------------------------------------------------------------------- rows


def format_value(row: dict[str, Any]) -> str:
    value = row.get("value")
    if not isinstance(value, (int, float)):
        return "-"
    if math.isnan(value):  # nothing to measure it on (e.g. no label published); the note says why
        return "none"
    if row["kind"] == "delta":
        return f"{value * 100:+.1f} pts" if abs(value) <= 1.0 else f"{value:+.3g}"
    return f"{value:.2f}x"


def _number(x: Any, unit: str) -> str:
    if not isinstance(x, (int, float)):
        return "-" if x is None else str(x)
    if unit in ("accuracy", "fraction"):
        return f"{x * 100:.1f}%"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def target_text(row: dict[str, Any]) -> str:
    target = row.get("target")
    if target is None:
        return "-"
    if row["kind"] == "delta":
        return f">= {target * 100:+.1f} pts"
    if row["kind"] == "max_ratio":
        return f"<= {target:.2f}x"
    return f">= {target:g}x"


def verdict_text(row: dict[str, Any]) -> str:
    """met / missed / not measurable here: why / info."""
    verdict = row.get("verdict", "")
    if verdict in ("not measurable here", "n/a"):
        return f"not measurable here: {row.get('note') or 'no value'}"
    return verdict


def targets_table(source: Path | Sequence[dict[str, Any]], *, machine_column: bool = False) -> str:
    """Every row that has a target: its measured value beside the target and the verdict."""
    results = load_results(source) if isinstance(source, Path) else list(source)
    keys = machines(results)
    head = "| measurement | comparison | measured | target | verdict |"
    lines = [head + (" machine |" if machine_column else ""),
             "|---|---|---|---|---|" + ("---|" if machine_column else "")]
    counts: dict[str, int] = {}
    for data in results:
        where = f" {machine_label(data, keys)} |" if machine_column else ""
        if data.get("error"):
            lines.append(f"| {data['name']} | crashed: {data['error'][:100]} | - | - | error |{where}")
            counts["error"] = counts.get("error", 0) + 1
            continue
        for row in data["comparisons"]:
            if row.get("target") is None:
                continue
            verdict = verdict_text(row)
            key = verdict.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
            lines.append(f"| {data['name']} | {row['what']} | {format_value(row)} | {target_text(row)} | "
                         f"{verdict} |{where}")
    lines.append("")
    lines.append("Targets: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) + "."
                 if counts else "No targets in these results.")
    return "\n".join(lines)


def comparisons_table(results: Sequence[dict[str, Any]]) -> str:
    keys = machines(results)
    lines = ["| measurement | comparison | SDK side | baseline side | unit | result | target | verdict | machine |",
             "|---|---|---|---|---|---|---|---|---|"]
    for data in results:
        where = machine_label(data, keys)
        name = data["name"] + ("" if profile_of(data) == "full" else f" ({profile_of(data)})")
        if data.get("error"):
            lines.append(f"| {name} | crashed: {data['error'][:120]} | | | | | | error | {where} |")
            continue
        if not data["comparisons"]:
            note = (data.get("notes") or ["no comparison"])[0]
            lines.append(f"| {name} | {note} | | | | | | - | {where} |")
        for row in data["comparisons"]:
            sdk = f"{_number(row['sdk'], row['unit'])} ({row['sdk_label']})"
            base = f"{_number(row['baseline'], row['unit'])} ({row['baseline_label']})"
            lines.append(f"| {name} | {row['what']} | {sdk} | {base} | {row['unit']} | {format_value(row)} | "
                         f"{target_text(row)} | {verdict_text(row)} | {where} |")
    return "\n".join(lines)


def notes_block(results: Sequence[dict[str, Any]]) -> str:
    keys = machines(results)
    out = []
    for data in results:
        env = data.get("environment", {})
        load = env.get("load_average")
        head = (f"**{data['name']}** ({data.get('seconds', '?')} s on {machine_label(data, keys)}, "
                f"load average at start {load[0] if load else 'not recorded'})")
        parts = [f"Size: {data['size']}" if data.get("size") else "",
                 f"Expected noise: {data['noise']}" if data.get("noise") else "",
                 *(data.get("notes") or [])]
        out.append(head + ": " + " ".join(p for p in parts if p))
    return "\n\n".join(out)


def render_summary(folder: Path) -> str:
    """``summary.md`` of a results folder: machines, targets, every comparison, notes."""
    results = load_results(folder)
    profiles = sorted({profile_of(d) for d in results}) or ["none"]
    return "\n".join([
        f"# Benchmark results ({', '.join(profiles)} profile)", "",
        "## Machines", "", machines_table(results), "",
        "## Targets", "", targets_table(results, machine_column=True), "",
        "## Every comparison", "", comparisons_table(results), "",
        "## Notes", "", notes_block(results), "",
    ])


# ----------------------------------------------------------------------------- tables of the page


def fast_inference_table(results: Sequence[dict[str, Any]]) -> str:
    data = next((d for d in results if d["name"] == "fast_inference" and not d.get("error")), None)
    if data is None:
        return "No full `fast_inference` result yet: run `make bench-full` (or `--full --only fast_inference`)."
    keys = machines(results)
    gate_key = {"sdk bf16": "torch:bf16", "sdk int8": "torch:int8", "sdk ort fp32": "onnxruntime:fp32",
                "sdk ort int8": "onnxruntime:int8"}
    s = data.get("settings", {})
    lines = [f"From `fast_inference` on {machine_label(data, keys)} ({data.get('seconds', '?')} s; crop "
             f"{s.get('crop')} px, batch {s.get('batch_size')}, {s.get('repeats')} interleaved repeats).", "",
             "| configuration | path | products/s (decoded) | x naive | x naive (from files) | "
             "worst macro-F1 delta (pts) | min label agreement | gate |",
             "|---|---|---|---|---|---|---|---|"]
    for image, m in data["metrics"].items():
        per_s = m["per_s"]
        lines.append(f"| {image} | naive fp32 eager | {per_s['naive']:.2f} | 1.00x | 1.00x | - | - | - |")
        for path in m["paths"]:
            gate = m["gate"].get(gate_key.get(path, ""), {})
            deltas, agreement = gate.get("f1_delta_points", {}), gate.get("agreement", {})
            worst = f"{min(deltas.values()):+.2f}" if deltas else "-"
            agree = f"{min(agreement.values()):.3f}" if agreement else "-"
            status = "reference" if path == "sdk fp32" else ("validated" if gate.get("passed") else "refused")
            ratio = f"{m['ratios'][path]:.2f}x"
            lines.append(f"| {image} | {path} | {per_s[path]:.2f} | "
                         f"{'**' + ratio + '**' if path == m['best'] else ratio} | "
                         f"{m['disk_ratios'][path]:.2f}x | {worst} | {agree} | {status} |")
        lines.append(f"| {image} | SDK fp32 predict vs its hand-written forward | {per_s['sdk fp32']:.2f} vs "
                     f"{per_s['hand-written fp32']:.2f} | {m['sdk_vs_hand_written']:.2f}x | | | | target 0.95x |")
    heads = "; ".join(f"{image} " + " / ".join(f"{a} {v:.2f}" for a, v in m["head_val_macro_f1"].items())
                      for image, m in data["metrics"].items())
    rows = {m.get("gate_rows") for m in data["metrics"].values()}
    lines += ["", f"Validation macro-F1 of the heads trained before timing: {heads}. The gate scored "
                  f"{', '.join(str(r) for r in sorted(rows, key=str))} validation and test rows against fp32 "
                  "eager. Bold: the fastest validated path, the one each target applies to."]
    return "\n".join(lines)


def trust_table(results: Sequence[dict[str, Any]]) -> str:
    data = next((d for d in results if d["name"] == "trust" and not d.get("error")), None)
    if data is None:
        return "No full `trust` result yet: run `make bench-full` (or `--full --only trust`)."
    keys = machines(results)
    s, m = data["settings"], data["metrics"]
    lines = [f"From `trust` on {machine_label(data, keys)} ({data.get('seconds', '?')} s): {s['products']:,} "
             f"products at {s['image_size']} px, efficientnet_lite0 at crop {s['crop']} + {s['text']}, frozen; "
             f"heads {s['epochs']} epochs on cached features; {s['label_noise']:.0%} train label noise, "
             f"{s['not_applicable']:.0%} of pants/skirts in the sleeves dataset as \"n/a\".", "",
             f"| attribute | test rows | test accuracy | T | test ECE raw → calibrated | abstain=True precision "
             f"(coverage) at {s['min_precision']} | audit recall / precision in top-k (k = 1.5 × flipped) |",
             "|---|---|---|---|---|---|---|"]
    audit = m["audit"]
    for a, row in m["calibration"]["attributes"].items():
        au = audit.get(a, {})
        ece = "met" if row["ece_after"] < row["ece_before"] else "**missed**"
        prec = row["precision"]
        published = (f"{prec:.3f} ({row['coverage']:.0%}) ({'met' if prec >= 0.93 else '**missed**'})"
                     if prec is not None else "none published (**missed**)")
        ok = (au.get("recall") or 0) >= 0.8 and (au.get("precision") or 0) >= 0.5
        lines.append(f"| {a} | {row['rows']} | {row['accuracy']:.3f} | {row['temperature']:.2f} | "
                     f"{row['ece_before']:.3f} → {row['ece_after']:.3f} ({ece}) | {published} | "
                     f"{au.get('recall')} / {au.get('precision')} ({'met' if ok else '**missed**'}) |")
    lines.append("")
    for a, row in m["applicability"].items():
        recall = row.get("not_applicable_recall")
        lines.append(f"- `not_applicable` for out-of-scope test products, `{a}`: "
                     f"**{recall:.3f}** of {row['out_of_scope']} (target 0.95: "
                     f"{'met' if recall is not None and recall >= 0.95 else 'missed'}); in-scope products "
                     f"keeping a label {row['in_scope_kept']:.3f} of {row['in_scope']}.")
    r = m["review"]
    per_seed = ", ".join(f"{x['queue_minus_random'] * 100:+.1f}" for x in r["seeds"])
    lines.append(f"- Review queue (`{r['attribute']}`, seed set {r['seed_rows']} labeled rows, pool {r['pool']:,}, "
                 f"budget {r['budget']}, {len(r['seeds'])} seeds): median test accuracy gain "
                 f"{r['median_queue_gain'] * 100:+.1f} points for the queue vs "
                 f"{r['median_random_gain'] * 100:+.1f} for random products; per seed queue − random "
                 f"{per_seed} (median {r['median_queue_minus_random'] * 100:+.1f}): "
                 f"**{'met' if r['median_queue_gain'] - r['median_random_gain'] > 0 else 'missed'}**.")
    flipped = sum(v["flipped"] for v in audit.values())
    found = sum(v["found_in_top_k"] for v in audit.values())
    listed = sum(v["k"] for v in audit.values())
    lines.append(f"- Audit: over all {flipped} flipped labels the top-k lists hold {found} "
                 f"({found / max(1, flipped):.2f} recall, {found / max(1, listed):.2f} precision).")
    return "\n".join(lines)


def render_docs(folder: Path = RESULTS, template: Path = TEMPLATE) -> str:
    """docs/performance.md: the template with its generated blocks filled from ``folder``."""
    results = [d for d in load_results(folder) if profile_of(d) == "full"]
    blocks = {
        "machines": machines_table(results),
        "targets": targets_table(results, machine_column=True),
        "comparisons": comparisons_table(results),
        "notes": notes_block(results),
        "fast_inference": fast_inference_table(results),
        "trust": trust_table(results),
    }
    lines = []
    for line in template.read_text(encoding="utf-8").splitlines():
        name = line.strip().removeprefix("<!-- generated:").removesuffix(" -->")
        lines.append(blocks[name] if line.strip().startswith("<!-- generated:") else line)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of full results")
    parser.add_argument("--out", type=Path, default=None, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    text = render_docs(args.results)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
