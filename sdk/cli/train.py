"""``fashion train`` and ``fashion evaluate``: the trainer and the evaluator on the command line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click


@click.command("train")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--epochs", type=click.IntRange(min=1), help="Number of epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per batch (all processes together).")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for checkpoints, history, evaluation and the bundle.")
@click.option("--resume", is_flag=True, default=None, help="Continue from the checkpoint in the output folder.")
@click.option("--strategy", type=click.Choice(["full", "partial", "head-only"]),
              help="What trains: full, partial (the image backbone's top block, = --freeze image-backbone@1 "
                   "with croppers and the text backbone frozen) or head-only.")
@click.option("--freeze", multiple=True, metavar="GROUP",
              help="Freeze a parameter group (image-backbone, text-backbone, backbones, fusion, heads/NAME), "
                   "or image-backbone@N: only the image backbone's top N blocks train; repeatable.")
@click.option("--sampler", help="proportional, round_robin, temperature, all_tasks, or a registered one.")
@click.option("--loss", help="sum, mean, uncertainty, dwa or pcgrad (pcgrad needs --sampler all_tasks).")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch intra-op threads (default: torch's choice).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="auto times fp32 and bf16 on a CPU with native bf16 and keeps the faster.")
def train_command(
    config_path: Path,
    epochs: int | None,
    batch_size: int | None,
    output_dir: Path | None,
    resume: bool | None,
    strategy: str | None,
    freeze: tuple[str, ...],
    sampler: str | None,
    loss: str | None,
    seed: int | None,
    device: str | None,
    threads: int | None,
    precision: str | None,
) -> None:
    """Train a model on several datasets from a TOML/YAML/JSON CONFIG (flags override the file).

    Writes checkpoints, history.json, evaluation/ (metrics.json, confusion PNGs) and bundle/
    into the output folder. Under `torchrun` it trains with DDP; only rank 0 writes.
    Progress goes to stdout as plain lines (every epoch, and every `log_every` steps without a
    terminal), each with the epoch's and the run's ETA.
    """
    from rich.console import Console

    from fashion.training.config import TrainConfig
    from fashion.training.trainer import Trainer

    overrides: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "output_dir": output_dir.resolve() if output_dir is not None else None,
        "resume": resume,
        "strategy": strategy,
        "freeze": list(freeze) or None,
        "sampler": sampler,
        "loss": loss,
        "seed": seed,
        "device": device,
        "threads": threads,
        "precision": precision,
    }
    from fashion.errors import ConfigError

    config = TrainConfig.load(config_path).with_overrides(**overrides)
    if config.model is None:
        raise ConfigError(
            f"{config_path} has no model to train: add a [model] table (views, backbones, fusion, "
            'attributes; see docs/training.md) or a `model = "spec.toml"` line.'
        )
    trainer = Trainer(None, config)
    with _log_lines_to_stdout():
        result = trainer.fit()
    if not trainer.is_main:
        return
    console = Console()
    last = result.history[-1] if result.history else {}
    console.print(
        f"trained {len(result.history)} epoch(s), {result.global_step} steps; final loss "
        f"{last.get('loss', float('nan')):.4f}"
        + (f"; best epoch {result.best_epoch} (val macro-F1 {result.best_score:.3f})" if result.best_score is not None else "")
        + (" (stopped early)" if result.stopped_early else "")
    )
    if result.evaluation is not None:
        console.print(result.evaluation.table("validation"))
    if result.unvalidated:
        from fashion.training.runtime import unvalidated_message

        console.print(f"warning: {unvalidated_message(result.unvalidated)}", highlight=False)
    for report in result.data_reports:
        if report.problems:
            console.print(
                f"dataset {report.dataset!r}: {report.rows_skipped} of {report.rows_read} rows skipped, "
                f"{report.unknown_labels} unknown labels (see {result.output_dir / 'data_report.json'})",
                highlight=False,
            )
    console.print(f"outputs in {result.output_dir}" + (f"; bundle at {result.bundle_path}" if result.bundle_path else ""))


class _Echo(logging.Handler):
    """Log records as plain lines on the stdout of the moment (a live bar redirects it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record))


@contextlib.contextmanager
def _log_lines_to_stdout() -> Iterator[None]:
    """The run's INFO lines (``fashion.training``) on stdout, flushed line by line."""
    logger = logging.getLogger("fashion.training")
    handler, level = _Echo(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@click.command("evaluate")
@click.argument("model_ref", metavar="MODEL")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write metrics.json, confusion-matrix and reliability-diagram PNGs here.")
@click.option("--split", default="test", show_default=True, help="Manifest to read inside a dataset folder.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--on-unknown-label", type=click.Choice(["skip", "error"]), default="skip", show_default=True)
@click.option("--taxonomies", type=click.Path(exists=True, path_type=Path), help="Project taxonomy file.")
def evaluate_command(
    model_ref: str,
    data: tuple[Path, ...],
    as_json: bool,
    out_dir: Path | None,
    split: str,
    batch_size: int,
    device: str,
    on_unknown_label: str,
    taxonomies: Path | None,
) -> None:
    """Score MODEL (a bundle folder or URI) on labeled DATA (manifests or dataset folders).

    Prints accuracy and macro-F1 per attribute and, for a calibrated or scoped model, ECE
    before/after calibration, precision/coverage at the abstention threshold and applicability;
    --json prints per-class precision, recall, F1, support and confusion matrices too.
    """
    from rich.console import Console

    from fashion.data.outputs import check_output_paths
    from fashion.registry import load_bundle
    from fashion.registry.uri import parse_uri
    from fashion.training.evaluation import evaluate

    parsed = parse_uri(model_ref)
    if out_dir is not None:  # the output guard of every writer: --out holds no input
        check_output_paths([*data, *([Path(parsed.name)] if parsed.scheme == "path" else [])],
                           folders={"--out": out_dir})
    bundle = load_bundle(model_ref)
    if out_dir is not None and parsed.scheme != "path":
        check_output_paths([bundle.path], folders={"--out": out_dir})
    model = bundle.model
    report = evaluate(
        model, list(data), batch_size=batch_size, split=split, taxonomies=taxonomies,
        on_unknown_label=on_unknown_label,  # type: ignore[arg-type]
        plots_dir=out_dir, device=device,
    )
    if as_json:
        click.echo(report.to_json())
        return
    console = Console()
    console.print(report.table())
    if report.trust is not None:  # calibration, abstention and applicability (docs/trust.md)
        for line in report.trust.lines():
            console.print(f"trust {line}", highlight=False)
    for data_report in report.data:
        if data_report.problems:
            console.print(data_report.summary(), highlight=False)
    if out_dir is not None:
        console.print(f"metrics.json, confusion matrices and reliability diagrams written to {out_dir}")


__all__ = ["evaluate_command", "train_command"]
