"""``fashion export`` and ``fashion optimize``: optimized artifacts behind the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from fashion.errors import ConfigError, GateError

console = Console()
TORCH_PATHS = ("torch:bf16", "torch:int8")


def _bundle_folder(model: str) -> Path:
    from fashion.registry.uri import parse_uri

    parsed = parse_uri(model)
    if parsed.scheme != "path":
        raise ConfigError(
            f"{model} is a registry URI; optimized artifacts are written into a bundle folder. "
            f"Run `fashion pull {model} --out DIR`, then `fashion export DIR ...` and "
            "`fashion push DIR NAME`."
        )
    return Path(parsed.name)


def _check_paths(folder: Path, data: tuple[Path, ...], precisions: list[str]) -> None:
    """The output guard of every writer: no --data manifest is a file this command rewrites in
    the bundle (fashion.json, the ONNX graphs); checked before anything is read or written."""
    from fashion.data.outputs import check_output_paths
    from fashion.predict.artifacts import onnx_file

    written = ["fashion.json", *(onnx_file(p) for p in precisions)]
    check_output_paths(data, {f"the bundle's {rel}": folder / rel for rel in written})


def _gate(folder: Path, paths: list[str], data: tuple[Path, ...], max_loss: float,
          batch_size: int, limit: int | None, exported: list[str]) -> None:
    """Run the gate on ``paths``, record the verdict, drop refused exports; exit 1 on a refusal."""
    from fashion.predict.artifacts import update_bundle
    from fashion.predict.gate import run_gate
    from fashion.registry.bundle import load_bundle

    bundle = load_bundle(folder)
    report = run_gate(bundle, paths, data=list(data) or None, max_loss=max_loss,
                      batch_size=batch_size, limit=limit)
    console.print(report.table())
    refused_exports = [p for p in exported if f"onnxruntime:{p}" in report.refused]
    update_bundle(folder, gate=report.verdict(bundle.index.optimizations.get("gate")),
                  remove=refused_exports)
    if not report.passed:
        raise GateError(
            f"the accuracy gate refused {', '.join(report.refused)}: an attribute lost more than "
            f"{max_loss:g} macro-F1 points against fp32 eager (table above); "
            f"validated: {', '.join(report.validated) or 'none'}. The verdict is recorded in "
            f"{folder / 'fashion.json'}" + (f"; the refused ONNX export ({', '.join(refused_exports)}) "
                                             "was removed." if refused_exports else "."),
            report,
        )
    console.print(f"validated: {', '.join(report.validated)} (recorded in {folder / 'fashion.json'})")


def _export(folder: Path, precisions: list[str]) -> None:
    from fashion.predict.artifacts import onnx_file, update_bundle
    from fashion.predict.export import export_onnx
    from fashion.registry.bundle import load_bundle

    bundle = load_bundle(folder)
    graphs: dict[str, Any] = {}
    for precision in precisions:
        rel = onnx_file(precision)
        graphs[precision] = {"file": rel, **export_onnx(bundle.model, folder / rel, precision=precision)}
        console.print(f"exported {folder / rel}")
    update_bundle(folder, onnx=graphs)


def _gate_options(function: Any) -> Any:
    for decorator in reversed([
        click.option("--data", multiple=True, type=click.Path(exists=True, path_type=Path),
                     help="Labeled manifest(s) for the accuracy gate (default: the bundle's "
                          "validation data). Repeatable."),
        click.option("--max-loss", default=0.5, show_default=True, type=float,
                     help="Most macro-F1 points any attribute may lose against fp32 eager."),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1)),
        click.option("--limit", default=None, type=click.IntRange(min=1),
                     help="Gate on at most this many rows per manifest."),
    ]):
        function = decorator(function)
    return function


@click.command("export")
@click.argument("model", metavar="BUNDLE")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="int8: Linear/MatMul weights int8 with dynamic activations.")
@_gate_options
def export_command(model: str, fmt: str, precision: str, data: tuple[Path, ...], max_loss: float,
                   batch_size: int, limit: int | None) -> None:
    """Export a bundle folder's model as ONNX (backbones -> fusion -> heads) into the bundle.

    The file (onnx/model.onnx or onnx/model.int8.onnx) is listed with its sha256 in
    fashion.json; the accuracy gate then compares it with fp32 eager and records the verdict.
    A refused export is removed and the command exits 1 with the table. Needs the extra
    fashion-sdk[onnx].
    """
    folder = _bundle_folder(model)
    _check_paths(folder, data, [precision])
    _export(folder, [precision])
    _gate(folder, [f"onnxruntime:{precision}"], data, max_loss, batch_size, limit, [precision])


STATIC_ONLY = ("calibration", "calibration_method", "calibration_rows", "runtime", "fixes")


def _check_options(precision: str) -> None:
    """Options of one --precision given with the other are refused, never silently ignored."""
    from click.core import ParameterSource

    context = click.get_current_context()
    given = [p for p in context.command.params
             if context.get_parameter_source(p.name or "") not in (ParameterSource.DEFAULT, None)]
    if precision == "all":
        wrong = [p for p in given if p.name in STATIC_ONLY]
        why = "to --precision int8-static only; add --precision int8-static or leave {} out"
    else:
        wrong = [p for p in given if p.name == "with_onnx"]
        why = "to --precision all only (int8-static always quantizes the ONNX graph); leave {} out"
    if wrong:
        names = ", ".join("/".join(p.opts + p.secondary_opts) for p in wrong)
        verb, pronoun = ("apply", "them") if len(wrong) > 1 else ("applies", "it")
        raise click.UsageError(f"{names} {verb} {why.format(pronoun)}.")


@click.command("optimize")
@click.argument("model", metavar="BUNDLE")
@click.option("--precision", type=click.Choice(["all", "int8-static"]), default="all", show_default=True,
              help="all: gate torch bf16/int8 and (with ONNX) ONNX fp32/int8. int8-static: "
                   "quantize the image backbones' ONNX graph statically (QDQ, int8 weights and "
                   "activations, calibrated) and gate it.")
@click.option("--onnx/--no-onnx", "with_onnx", default=None,
              help="Also export and gate ONNX fp32 and int8 (default: when onnxruntime is installed).")
@click.option("--calibration", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="int8-static: manifest(s) whose images calibrate the activation ranges "
                   "(default: the bundle's validation data). Repeatable.")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "entropy"]),
              default="minmax", show_default=True, help="int8-static: the first recipe's method.")
@click.option("--calibration-rows", default=256, show_default=True, type=click.IntRange(min=1),
              help="int8-static: at most this many calibration products.")
@click.option("--runtime", type=click.Choice(["onnxruntime", "openvino"]), default=None,
              help="int8-static: gate this runtime only (default: every one installed; the "
                   "fastest validated one is recorded for precision auto).")
@click.option("--fixes/--no-fixes", default=True, show_default=True,
              help="int8-static: after a refusal, try the standard fixes (--no-fixes: gate the asked "
                   "recipe only).")
@_gate_options
def optimize_command(model: str, precision: str, with_onnx: bool | None, calibration: tuple[Path, ...],
                     calibration_method: str, calibration_rows: int, runtime: str | None, fixes: bool,
                     data: tuple[Path, ...], max_loss: float, batch_size: int, limit: int | None) -> None:
    """Validate every optimized path of a bundle folder against fp32 eager and record it.

    Paths: torch:bf16, torch:int8 and (with ONNX) onnxruntime:fp32 and onnxruntime:int8; with
    --precision int8-static, onnxruntime:int8-static and openvino:int8-static (extra
    fashion-sdk[openvino]). A refused int8-static graph is retried with the standard fixes
    (first conv and last block fp32, per-tensor weights, other calibration methods, then the
    most sensitive convolutions kept fp32, at most a quarter of them). The
    verdict lands in fashion.json, where `Predictor(precision="auto")` and `fashion show` read
    it. Exits 1 with the table when any path loses more than --max-loss points on an attribute.
    """
    import importlib.util

    _check_options(precision)
    folder = _bundle_folder(model)
    if precision == "int8-static":
        from fashion.predict.optimize import optimize_static

        _check_paths(folder, data + calibration, ["fp32", "int8-static"])
        result = optimize_static(folder, calibration=list(calibration) or None,
                                 method=calibration_method, runtime=runtime, data=list(data) or None,
                                 max_loss=max_loss, batch_size=batch_size, limit=limit,
                                 products=calibration_rows, fixes_on_refusal=fixes, log=console.print)
        console.print(result.report.table())
        speeds = ", ".join(f"{k} {v:g} products/s" for k, v in result.speeds.items())
        console.print(f"validated: {', '.join(result.report.validated)} (fix: {result.attempts[-1][0]}); "
                      f"measured {speeds}; runtime for precision auto: {result.runtime} "
                      f"(recorded in {folder / 'fashion.json'})", soft_wrap=True)
        return
    if with_onnx is None:
        with_onnx = importlib.util.find_spec("onnxruntime") is not None
    paths = list(TORCH_PATHS)
    exported: list[str] = []
    _check_paths(folder, data, ["fp32", "int8"] if with_onnx else [])
    if with_onnx:
        exported = ["fp32", "int8"]
        _export(folder, exported)
        paths += [f"onnxruntime:{p}" for p in exported]
    _gate(folder, paths, data, max_loss, batch_size, limit, exported)
