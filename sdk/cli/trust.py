"""``fashion calibrate``, ``fashion audit`` and ``fashion review`` (docs/trust.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from fashion.training.data import LabeledDataset


def _load(model: str) -> Any:
    from fashion.registry.bundle import load_bundle

    return load_bundle(model)


def _datasets(model: Any, paths: tuple[Path, ...], attributes: list[str] | None = None) -> list[LabeledDataset]:
    from fashion.training.config import DatasetConfig
    from fashion.training.data import label_normalizers, load_dataset

    normalizers = label_normalizers(model)
    out = []
    for path in paths:
        config = DatasetConfig(name=path.stem, path=path, attributes=attributes)
        out.append(load_dataset(config, model, normalizers=normalizers, on_unknown_label="skip",
                                on_bad_row="skip"))
    return out


def _guard(model: str, reads: tuple[Path, ...] | list[Path], bundle: Any = None, *,
           outputs: dict[str, Path] | None = None, folders: dict[str, Path] | None = None,
           new_folders: dict[str, Path] | None = None) -> None:
    """The output guard of every writer (:func:`fashion.data.outputs.check_output_paths`) with
    MODEL's folder among the inputs: before loading when MODEL is a folder, and again after
    loading with the folder a model URI resolved to (a registry revision, a download)."""
    from fashion.data.outputs import check_output_paths
    from fashion.registry.uri import parse_uri

    if bundle is not None:
        if parse_uri(model).scheme == "path":
            return  # checked before loading
        folder: Path | None = Path(bundle.path)
    else:
        parsed = parse_uri(model)
        folder = Path(parsed.name) if parsed.scheme == "path" else None
    check_output_paths([*reads, *([folder] if folder is not None else [])], outputs,
                       folders=folders, new_folders=new_folders)


def _report_skipped(datasets: list[LabeledDataset]) -> int:
    """Print (stderr) what loading skipped: rows that cannot be read, labels no taxonomy knows."""
    skipped = 0
    for d in datasets:
        if d.report.problems:
            click.echo(d.report.summary(), err=True)
        skipped += d.report.rows_skipped
    return skipped


@click.command("calibrate")
@click.argument("model")
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, required=True,
              help="Labeled validation manifest(s) (not the training data). Repeat for several.")
@click.option("--min-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.95,
              show_default=True, help="Choose each attribute's abstention threshold to reach this precision.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the calibrated bundle (a new bundle; MODEL is not changed).")
@click.option("--push", default=None,
              help="Also publish the new bundle as this model name in the local registry (a new revision).")
def calibrate_command(model: str, data: tuple[Path, ...], min_precision: float, out: Path,
                      push: str | None) -> None:
    """Fit calibration (temperature) and abstention thresholds of MODEL on labeled data.

    MODEL is a bundle folder or a model URI. Writes a new bundle to --out with the fitted
    values in fashion.json, reliability diagrams and precision/coverage curves in
    --out/../<name>-trust/, and prints ECE before/after per attribute.
    """
    import os

    from fashion.registry.bundle import save_bundle
    from fashion.registry.model_card import plot_files
    from fashion.trust.fit import fit_and_report

    where = Path(os.path.abspath(out))  # "--out ." has a name too
    trust_dir = where.with_name(where.name + "-trust") if where.name else where
    outputs = {"new_folders": {"--out": out}, "folders": {"the plots folder": trust_dir}}
    _guard(model, data, **outputs)
    bundle = _load(model)
    _guard(model, data, bundle, **outputs)
    datasets = _datasets(bundle.model, data)
    skipped = _report_skipped(datasets)
    used = sum(d.report.rows_used for d in datasets)
    click.echo(f"{used + skipped} rows in = {used} used + {skipped} skipped"
               + (" (listed above)" if skipped else ""), err=True)
    report = fit_and_report(bundle.model, datasets, None, trust_dir,
                            min_precision=min_precision)
    if not report.attributes:
        raise click.UsageError("no attribute has enough labeled rows in --data to calibrate (20 at least)")
    index = bundle.index
    parent = bundle.uri or str(bundle.path)
    # the base's plots stay in the card; the reliability diagrams are this fit's
    plots = plot_files(bundle.path / rel for rel in sorted(index.files) if rel.startswith("plots/") and rel.endswith(".png"))
    plots |= plot_files(report.reliability_plots())
    path = save_bundle(bundle.model, out, metrics=index.metrics, provenance=index.provenance,
                       training_config=index.provenance.training_config, parent=parent,
                       reuse_from=bundle.path, plots=plots)
    for line in report.lines():
        click.echo(line)
    click.echo(f"calibrated bundle: {path}")
    if push:
        from fashion.registry import get_registry

        revision = get_registry("local").publish(path, push, message=f"calibrate {parent}")
        click.echo(f"published local://{push}@{revision.id}")


@click.command("audit")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model", required=True, help="A bundle folder or model URI whose features are used.")
@click.option("--attribute", "attributes", multiple=True, help="Audit only these attributes (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("suspects.csv"),
              show_default=True, help="The report: one row per suspect label.")
@click.option("--folds", default=5, show_default=True, type=int, help="Cross-fitting folds.")
@click.option("--words/--no-words", default=True, show_default=True,
              help="Also read the listing's words (title, description) beside the model's features.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(min=0),
              help="How many suspects to print.")
@click.option("--ranking", type=click.Choice(["self-confidence", "cleanlab"]), default="self-confidence",
              show_default=True,
              help="Which rule lists and orders suspects: every row the model predicts otherwise, by "
                   "self-confidence, or cleanlab's find_label_issues (docs/trust.md compares them).")
def audit_command(data: tuple[Path, ...], model: str, attributes: tuple[str, ...], out: Path,
                  folds: int, words: bool, top: int, ranking: str) -> None:
    """List labeled rows of DATA whose label the model contradicts, most suspect first.

    Confident learning on out-of-sample (cross-fitted) probabilities: one classifier per model
    input (and the listing's words), stacked; a row is listed when the held-out prediction is
    another label, ranked by how little probability the given label gets; `confident` marks
    rows whose suggested label also clears its class threshold. The data is never edited.
    """
    from fashion.trust.audit import audit_datasets, check_folds, write_suspects

    check_folds(folds)
    _guard(model, data, outputs={"--out": out})
    bundle = _load(model)
    _guard(model, data, bundle, outputs={"--out": out})
    wanted = list(attributes) or None
    datasets = _datasets(bundle.model, data)
    skipped = _report_skipped(datasets)
    suspects = audit_datasets(bundle.model, datasets, attributes=wanted, folds=folds, words=words,
                              ranking=ranking)
    write_suspects(suspects, out)
    labeled = sum(len(d) for d in datasets)
    confident = sum(s.confident for s in suspects)
    click.echo(f"{len(suspects)} suspect labels ({confident} confident) in {labeled} rows"
               + (f" ({skipped} rows skipped, listed above)" if skipped else "") + f"; report: {out}")
    for s in suspects[:top]:
        click.echo(f"  {s.file}:{s.line} {s.id} {s.attribute}: given {s.given!r} "
                   f"({s.given_probability:.2f}), model says {s.suggested!r} ({s.suggested_probability:.2f})"
                   + (f"; contradicted by {s.contradicted_by.replace('|', ', ')}" if s.contradicted_by else ""))


@click.command("review")
@click.argument("model")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The queue (CSV manifest with empty label columns to fill in).")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="How many products to queue.")
@click.option("--attribute", default=None, help="Queue for this attribute only (default: every single-label one).")
@click.option("--strategy", type=click.Choice(["margin", "entropy", "disagreement"]), default="margin",
              show_default=True, help="What makes a product worth labeling (docs/trust.md).")
@click.option("--diversity", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="Penalty on similarity to products already queued (0: pure ranking).")
def review_command(model: str, input_path: Path, out: Path, budget: int, attribute: str | None,
                   strategy: str, diversity: float) -> None:
    """Rank the products of INPUT whose labels would help MODEL most; write a labeling queue."""
    from fashion._util.files import atomic_write_text
    from fashion.trust.review import build_queue, queue_csv, read_products, review_attributes

    _guard(model, [input_path], outputs={"--out": out})
    bundle = _load(model)
    _guard(model, [input_path], bundle, outputs={"--out": out})
    review_attributes(bundle.model, attribute, strategy=strategy, budget=budget)
    read = read_products(input_path)
    encoded = read.encode(bundle.model) if read.products else None
    for reason in read.rejected:
        click.echo(f"rejected: {reason}", err=True)
    queue = build_queue(bundle.model, read.products, budget, attribute=attribute, strategy=strategy,
                        diversity=diversity, encoded=encoded)
    atomic_write_text(out, queue_csv(bundle.model, read.products, queue))
    click.echo(f"{read.rows_in} rows in = {len(read.products)} ranked + {len(read.rejected)} rejected"
               + (" (listed above)" if read.rejected else "")
               + f"; queued {len(queue)} ({strategy}); queue: {out}")


__all__ = ["audit_command", "calibrate_command", "review_command"]
