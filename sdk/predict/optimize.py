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
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion.errors import ConfigError, GateError
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
    from dataclasses import replace

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
    for config in recipes:
        if reduce_range is not None:
            config = replace(config, reduce_range=reduce_range)
        try:
            record = quantize(folder / graph["file"], folder / rel, bundle.model, graph, cal, config)
        except NothingToQuantize as exc:
            if not result.attempts:  # the model's image backbones have nothing int8 can run
                raise
            log(f"recipe {config.fix!r} skipped: {exc}")
            continue
        update_bundle(folder, onnx={"int8-static": {**graph, "file": rel, "precision": "int8-static",
                                                    "quantization": record}})
        bundle = load_bundle(folder)
        report = run_gate(bundle, keys, data=list(data) if data else None, max_loss=max_loss,
                          batch_size=batch_size, limit=limit)
        result.attempts.append((config.fix, report))
        worst = {p.key: min(p.delta.values(), default=0.0) for p in report.paths}
        for key, value in worst.items():
            tried.setdefault(key, {})[config.fix] = round(value, 4)
        log(f"recipe {config.fix!r} ({config.method}, {'per-channel' if config.per_channel else 'per-tensor'}"
            f", {record['quantized_nodes']} nodes int8): "
            + ", ".join(f"{k} worst {v:+.2f} points" for k, v in worst.items()))
        if report.validated:
            break
        if len(result.attempts) == 1:  # the asked recipe lost: say where before trying the fixes
            try:
                result.diagnosis = diagnose(folder, graph, rel, bundle.model,
                                            list(data) if data else default_data(bundle.index))
                log(f"diagnosis: {result.diagnosis['reading']}")
            except Exception as exc:  # noqa: BLE001 - a diagnosis never stops the fixes or the verdict
                log(f"diagnosis skipped: {exc}")
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
