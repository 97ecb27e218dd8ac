"""``fashion optimize --precision int8-static``: quantize, gate, fix, measure, record.

:func:`optimize_static` quantizes the image backbones of a bundle folder's ONNX graph
(:mod:`fashion.predict.static`), lets the accuracy gate judge the graph on every runtime asked
(ONNX Runtime; OpenVINO when installed), tries the standard fixes in order while it refuses,
times the validated runtimes on a few calibration batches and records all of it in the bundle:
the graph with its quantization record (calibration fingerprint, CPU), and per path the gate's
scores, the CPU it was validated on, the fix that passed and the measured products/s, from
which ``precision="auto"`` picks the fastest runtime.
"""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fashion.errors import ConfigError, GateError
from fashion.predict.export import require
from fashion.predict.static import MAX_PRODUCTS, CalibrationData, NothingToQuantize, fixes, quantize

ONNX_RUNTIMES = ("onnxruntime", "openvino")


@dataclass
class StaticResult:
    """What :func:`optimize_static` did: the attempts (fix, report), the validated paths with
    their measured speed and the runtime picked."""

    attempts: list[tuple[str, Any]] = field(default_factory=list)
    speeds: dict[str, float] = field(default_factory=dict)
    runtime: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None  # why the asked recipe lost (fashion.predict.sensitivity)

    @property
    def report(self) -> Any:
        return self.attempts[-1][1]


def diagnose(folder: Path, graph: dict[str, Any], rel: str, model: Any,
             sources: Sequence[str | Path]) -> dict[str, Any]:
    """:func:`fashion.predict.sensitivity.explain` of the int8 graph at ``rel`` on the first
    ``SAMPLES`` products of the gate's data ``sources`` (the products the gate judged, not the
    calibration's: a calibration set unlike them is one way int8 loses)."""
    from fashion.predict.sensitivity import SAMPLES, explain

    feeds = CalibrationData(model, graph, sources, products=SAMPLES).feeds
    multilabel = {a: bool(getattr(model.task(a), "multilabel", False)) for a in model.attributes}
    return explain(folder / graph["file"], folder / rel, graph, feeds, multilabel)


SENSITIVE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24)
"""How many of the most sensitive convolutions the last fix keeps fp32, tried in this order."""
MAX_FP32_SHARE = 0.25
"""The last fix keeps at most this share of the quantized convolutions fp32: past it the graph
gives up most of what int8 is for."""
PATIENCE = 3
"""The last fix stops after this many steps in a row that do not improve the worst delta."""


def keep_sensitive_fp32(base: Any, attempt: Any, first: Any, pre: Path, asked: Path, graph: dict[str, Any],
                        model: Any, sources: Sequence[str | Path], *, log: Any = print) -> None:
    """The last fix, accuracy-aware mixed precision (as OpenVINO's accuracy-aware quantization
    and NNCF's ``quantize_with_accuracy_control`` do): every quantized convolution of the asked
    recipe's graph ``asked`` is reverted to fp32 alone and ranked by how close the logits then
    come to fp32 on the first products of the gate's data
    (:func:`fashion.predict.sensitivity.rank_nodes`); then the ``k`` most costly are kept fp32
    for ``k`` in :data:`SENSITIVE_STEPS`, each graph gated by ``attempt``, until one is validated,
    :data:`MAX_FP32_SHARE` of them would be, or :data:`PATIENCE` steps in a row gain nothing on
    the asked recipe's report ``first``."""
    from fashion.predict.sensitivity import SAMPLES, rank_nodes

    onnx = require("onnx")
    backbones = tuple(f"/{n.split(':')[0]}/" for n, m, _ in graph["layout"] if m == "image")
    nodes = [n.name for n in onnx.load(str(asked)).graph.node
             if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and n.name.startswith(backbones)]
    cap = min(len(nodes) - 1, max(1, int(len(nodes) * MAX_FP32_SHARE)))
    if cap < 1:
        log("recipe 'most sensitive convolutions fp32' skipped: the image backbones have one "
            "quantized convolution; keeping it fp32 leaves nothing int8")
        return
    start = time.perf_counter()
    feeds = CalibrationData(model, graph, sources, products=SAMPLES).feeds
    ranked = rank_nodes(pre, asked, graph, feeds, nodes, log=log)
    log(f"ranked {len(nodes)} quantized convolutions by their cost to the logits in "
        f"{time.perf_counter() - start:.0f} s; most costly (the error left with it alone fp32): "
        + ", ".join(f"{n} ({e:.3g})" for n, e in ranked[:3]))
    revert_in_order(base, [n for n, _ in ranked], cap, attempt, first, log=log)


def revert_in_order(base: Any, ranked: Sequence[str], cap: int, attempt: Any, first: Any, *,
                    log: Any = print) -> None:
    """Gate ``base`` with the first ``k`` of ``ranked`` kept fp32, for ``k`` in
    :data:`SENSITIVE_STEPS` below ``cap`` and then ``cap``; stop at the first validated graph or
    after :data:`PATIENCE` steps in a row whose worst delta is no better than the best so far
    (starting from the asked recipe's report ``first``)."""
    best, stale = worst_delta(first), 0
    for k in [k for k in SENSITIVE_STEPS if k < cap] + [cap]:
        report = attempt(replace(base, keep_fp32=tuple(ranked[:k]), fix=f"{k} most sensitive convolutions fp32"))
        if report.validated:
            return
        stale = 0 if worst_delta(report) > best + 1e-6 else stale + 1
        best = max(best, worst_delta(report))
        if stale == PATIENCE:
            log(f"stopped after {k} convolutions fp32: {PATIENCE} steps in a row did not improve the "
                f"worst delta ({best:+.2f} points at best); the error is spread over the layers")
            return


def worst_delta(report: Any) -> float:
    """The best path's worst macro-F1 delta in points (0 when nothing was judged)."""
    return max((min(p.delta.values(), default=0.0) for p in report.paths), default=0.0)


def runtimes_here(runtime: str | None) -> list[str]:
    """The runtimes to gate: the one asked (a clear error naming its extra when absent), else
    every one installed."""
    from fashion.predict.precision import EXTRAS

    if runtime is not None:
        if runtime not in ONNX_RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(ONNX_RUNTIMES)}, not {runtime!r}")
        if importlib.util.find_spec(runtime) is None:
            raise ConfigError(f"--runtime {runtime} needs the optional package {runtime!r}, which is "
                              f"not installed; install the extra: pip install '{EXTRAS[runtime]}'.")
        return [runtime]
    return [r for r in ONNX_RUNTIMES if importlib.util.find_spec(r) is not None]


def measure(bundle: Any, keys: Sequence[str], feeds: dict[str, Any], *, repeats: int = 3) -> dict[str, float]:
    """Products/s of each path's runner on the same graph feeds (one warm-up, median of
    ``repeats``)."""
    from fashion.predict.runtime import open_runner

    products = int(next(v for k, v in feeds.items() if k.endswith(".pool")).shape[0])
    out = {}
    for key in keys:
        runtime, _, precision = key.partition(":")
        runner = open_runner(bundle, runtime, precision)
        runner.run(feeds)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            runner.run(feeds)
            seconds.append(time.perf_counter() - start)
        out[key] = round(products / statistics.median(seconds), 2)
    return out


def ensure_fp32(folder: Path) -> dict[str, Any]:
    """The bundle's fp32 ONNX graph record, exported first when it has none."""
    from fashion.predict.artifacts import onnx_file, update_bundle
    from fashion.predict.export import export_onnx
    from fashion.registry.bundle import load_bundle

    bundle = load_bundle(folder)
    graph = bundle.index.optimizations.get("onnx", {}).get("fp32")
    if graph is None:
        rel = onnx_file("fp32")
        graph = {"file": rel, **export_onnx(bundle.model, folder / rel, precision="fp32")}
        update_bundle(folder, onnx={"fp32": graph})
    return dict(graph)


def optimize_static(
    folder: str | Path,
    *,
    calibration: Sequence[str | Path] | None = None,
    method: str = "minmax",
    runtime: str | None = None,
    data: Sequence[str | Path] | None = None,
    max_loss: float = 0.5,
    batch_size: int = 32,
    limit: int | None = None,
    products: int = MAX_PRODUCTS,
    reduce_range: bool | None = None,
    fixes_on_refusal: bool = True,
    log: Any = print,
) -> StaticResult:
    """Quantize, gate (trying the standard fixes), measure and record; raises
    :class:`GateError` when every recipe is refused (the graph then leaves the bundle).
    ``fixes_on_refusal=False``: gate the asked recipe only (``method``, per-channel, nothing
    kept fp32); a refusal raises at once."""
    from fashion.predict.artifacts import onnx_file, update_bundle
    from fashion.predict.gate import default_data, run_gate
    from fashion.registry.bundle import load_bundle

    folder = Path(folder)
    runtimes = runtimes_here(runtime)
    if not runtimes:
        raise ConfigError("int8-static runs on ONNX Runtime or OpenVINO, and neither is installed; "
                          "install the extra: pip install 'fashion-sdk[onnx]'.")
    recipes = fixes(method) if fixes_on_refusal else fixes(method)[:1]
    graph = ensure_fp32(folder)
    bundle = load_bundle(folder)
    sources = list(calibration) if calibration else default_data(bundle.index)
    cal = CalibrationData(bundle.model, graph, sources, products=products)
    log(f"calibration: {cal.products} products from {', '.join(map(str, sources))} ({cal.fingerprint[:19]}…)")
    result = StaticResult(calibration=cal.record())
    keys = [f"{r}:int8-static" for r in runtimes]
    rel = onnx_file("int8-static")
    tried: dict[str, dict[str, float]] = {}  # per path: recipe -> worst macro-F1 delta (points)
    gate_data = list(data) if data else None

    def attempt(config: Any) -> Any:
        if reduce_range is not None:
            config = replace(config, reduce_range=reduce_range)
        record = quantize(folder / graph["file"], folder / rel, bundle.model, graph, cal, config,
                          cache=Path(tmp))
        update_bundle(folder, onnx={"int8-static": {**graph, "file": rel, "precision": "int8-static",
                                                    "quantization": record}})
        report = run_gate(load_bundle(folder), keys, data=gate_data, max_loss=max_loss,
                          batch_size=batch_size, limit=limit)
        result.attempts.append((config.fix, report))
        worst = {p.key: min(p.delta.values(), default=0.0) for p in report.paths}
        for key, value in worst.items():
            tried.setdefault(key, {})[config.fix] = round(value, 4)
        log(f"recipe {config.fix!r} ({config.method}, {'per-channel' if config.per_channel else 'per-tensor'}"
            f", {record['quantized_nodes']} nodes int8): "
            + ", ".join(f"{k} worst {v:+.2f} points" for k, v in worst.items()))
        return report

    with tempfile.TemporaryDirectory(prefix="fashion-optimize-") as tmp:
        asked = Path(tmp) / "asked.onnx"
        for config in recipes:
            try:
                report = attempt(config)
            except NothingToQuantize as exc:
                if not result.attempts:  # the model's image backbones have nothing int8 can run
                    raise
                log(f"recipe {config.fix!r} skipped: {exc}")
                continue
            if report.validated:
                break
            if len(result.attempts) == 1:  # the asked recipe lost: say where before trying the fixes
                shutil.copyfile(folder / rel, asked)
                try:
                    result.diagnosis = diagnose(folder, graph, rel, bundle.model,
                                                gate_data or default_data(bundle.index))
                    log(f"diagnosis: {result.diagnosis['reading']}")
                except Exception as exc:  # noqa: BLE001 - a diagnosis never stops the fixes or the verdict
                    log(f"diagnosis skipped: {exc}")
        if fixes_on_refusal and not result.report.validated and asked.is_file():
            try:
                keep_sensitive_fp32(recipes[0], attempt, result.attempts[0][1], Path(tmp) / "pre.onnx",
                                    asked, graph, bundle.model, gate_data or default_data(bundle.index),
                                    log=log)
            except Exception as exc:  # noqa: BLE001 - a fix that fails leaves the gated recipes' verdict
                log(f"recipe 'most sensitive convolutions fp32' skipped: {exc}")
    bundle = load_bundle(folder)
    report = result.report
    for score in report.paths:
        score.extra.update({"fix": result.attempts[-1][0], "calibration": cal.fingerprint,
                            "attempts": tried[score.key]})
        if result.diagnosis is not None:
            score.extra["diagnosis"] = result.diagnosis
    if report.validated:
        largest = max(cal.feeds, key=lambda f: next(v.shape[0] for k, v in f.items() if k.endswith(".pool")))
        result.speeds = measure(bundle, report.validated, largest)
        for score in report.paths:
            if score.key in result.speeds:
                score.extra["products_per_s"] = result.speeds[score.key]
        result.runtime = max(result.speeds, key=lambda k: result.speeds[k]).split(":")[0]
        update_bundle(folder, gate=report.verdict(bundle.index.optimizations.get("gate")))
        return result
    update_bundle(folder, gate=report.verdict(bundle.index.optimizations.get("gate")),
                  remove=["int8-static"])
    named = "; ".join(f"{fix}: refused" for fix, _ in result.attempts)
    raise GateError(
        f"the accuracy gate refused int8-static on {', '.join(keys)} with every recipe ({named}): an "
        f"attribute lost more than {max_loss:g} macro-F1 points against fp32 eager. The verdict is "
        f"recorded in {folder / 'fashion.json'} and the graph was removed. Diagnosis of the asked "
        f"recipe: {result.diagnosis['reading'] if result.diagnosis else 'none'}. Calibrate on more "
        "representative data (--calibration) or keep fp32/int8/bf16.",
        report,
    )
