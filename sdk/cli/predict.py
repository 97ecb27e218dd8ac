"""``fashion predict``: the command's front (options, the engine it picks, the summary line).

The local engine is :func:`fashion.predict.batch.run_predict`; ``--engine ray`` is
:func:`fashion.predict.ray.engine.run_ray_predict`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fashion.predict.batch import run_predict
from fashion.predict.precision import PRECISIONS, RUNTIMES
from fashion.predict.predictor import Predictor


@click.command("predict")
@click.argument("model")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Predictions, one JSON line per product (--engine ray: a folder of Parquet "
                   "files, one per input part).")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Unreadable rows (default: OUT's name + .rejects.jsonl).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="DataLoader worker processes that decode images.")
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--abstain", is_flag=True,
              help="Give no label (reason below_threshold, top-k kept) under each attribute's "
                   "fitted threshold (docs/trust.md).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run (skip rows done).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT file.")
@click.option("--device", default=None,
              help="torch device: auto, cpu, cuda, cuda:N (default: auto, the GPU when CUDA is "
                   "available, as for train and evaluate).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32, bf16/fp16 (autocast), int8 (dynamic quantization of Linear layers, "
                   "CPU), int8-static (the image backbones' calibrated int8 ONNX graph, "
                   "`fashion optimize --precision int8-static`) or auto (bf16 on CUDA; on the CPU "
                   "the fastest path the bundle's accuracy gate validated that runs here, else "
                   "bf16 where native, else fp32).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="onnxruntime/openvino: run the bundle's ONNX export (`fashion export`, "
                   "`fashion optimize`; extras fashion-sdk[onnx], fashion-sdk[openvino]). auto: "
                   "torch, or the runtime the accuracy gate recorded as fastest.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: spread the work over a Ray cluster (INPUT may be a folder or a glob; "
                   "needs pip install 'fashion-sdk[ray]'; see docs/scale.md).")
@click.option("--address", default=None,
              help="--engine ray: the cluster (auto, ray://host:10001); default: start a local "
                   "Ray sized to this machine.")
@click.option("--concurrency", default=None, type=click.IntRange(min=1),
              help="--engine ray: workers, each loads the model once (default: one per CPU but "
                   "one, or one per GPU share).")
@click.option("--num-gpus-per-worker", default=0.0, show_default=True,
              type=click.FloatRange(min=0), help="--engine ray: GPUs per worker (e.g. 1 or 0.5).")
@click.option("--embeddings", is_flag=True,
              help="--engine ray: also write the product vector (column 'embedding').")
@click.option("--emphasize", default="", metavar="ATTR[,ATTR...]",
              help="--embeddings: attributes the vector emphasizes, as for fashion embed.")
@click.option("--emphasis", default=0.5, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="--emphasize: the share of the vector given to those attributes.")
def predict_command(
    model: str,
    input_path: Path,
    out: Path,
    rejects: Path | None,
    batch_size: int,
    workers: int,
    top_k: int,
    resume: bool,
    overwrite: bool,
    device: str | None,
    precision: str,
    engine: str,
    address: str | None,
    concurrency: int | None,
    num_gpus_per_worker: float,
    embeddings: bool,
    emphasize: str,
    emphasis: float,
    runtime: str,
    abstain: bool,
) -> None:
    """Predict every product of a CSV/JSONL/Parquet manifest with MODEL.

    MODEL is a bundle folder, hf://org/name[@revision] or local://name[@revision].
    """
    names = [n.strip() for n in emphasize.split(",") if n.strip()]
    if names and not embeddings:
        raise click.UsageError("--emphasize shapes the product vector: it needs --engine ray "
                               "--embeddings (or use fashion embed)")
    if engine == "ray":
        from fashion.predict.ray.cluster import Interrupted
        from fashion.predict.ray.engine import run_ray_predict

        local_only = {"--rejects": rejects, "--workers": workers, "--device": device, "--abstain": abstain}
        used = [name for name, value in local_only.items() if value]
        if used:  # rejects are rows of OUT; workers and devices are set per Ray worker
            raise click.UsageError(f"{', '.join(used)} does not apply to --engine ray "
                                   "(see --concurrency, --num-gpus-per-worker)")

        try:
            summary = run_ray_predict(
                model, input_path, out, address=address, concurrency=concurrency,
                num_gpus_per_worker=num_gpus_per_worker, embeddings=embeddings,
                embedding_space={"emphasize": names, "emphasis": emphasis} if names else None,
                batch_size=batch_size, top_k=top_k, precision=precision, runtime=runtime,
                overwrite=overwrite,
            )
        except Interrupted as stop:  # SIGTERM/SIGINT: one line, exit 128 + the signal
            click.echo(f"Interrupted: {stop}", err=True)
            sys.exit(stop.exit_code)
        click.echo(summary.text())
        return
    ray_only = {"--address": address, "--concurrency": concurrency,
                "--num-gpus-per-worker": num_gpus_per_worker, "--embeddings": embeddings}
    used = [name for name, value in ray_only.items() if value]
    if used:
        raise click.UsageError(f"{', '.join(used)} needs --engine ray")
    if not input_path.is_file():
        if input_path.is_dir():
            problem = "is a directory; give a manifest file (folders and globs need --engine ray)"
        elif any(ch in str(input_path) for ch in "*?["):
            problem = "is a glob pattern; give a manifest file (folders and globs need --engine ray)"
        else:
            problem = "does not exist; give a .csv, .jsonl or .parquet manifest file"
        raise click.BadParameter(f"{input_path} {problem}", param_hint="INPUT")
    predictor = Predictor.from_pretrained(model, device=device or "auto", precision=precision,  # type: ignore[arg-type]
                                          runtime=runtime)  # type: ignore[arg-type]
    summary = run_predict(
        predictor, input_path, out, rejects=rejects, batch_size=batch_size, workers=workers,
        top_k=top_k, resume=resume, overwrite=overwrite, abstain=abstain,
    )
    click.echo(predictor.describe())
    click.echo(summary.line())


__all__ = ["predict_command"]
