"""2. Multi-task vs single-task: one 5-head model vs the 5 one-head models a team would run.

Throughput: ``Predictor.predict`` of the 5-head model vs five predictors (one per attribute)
over the same decoded products, interleaved. Accuracy: each model trains with the SDK Trainer on
the synthetic catalog (the multi-task model on all three datasets, each single-task model on the
dataset that labels its attribute) with the same recipe and epochs, and is scored on the test
split. On this CPU the backbones are frozen and their features cached once (every model shares
the same backbones), so what trains is the fusion and the heads. Two fusions: ``concat`` (the
SDK default, nothing but LayerNorm shared) and ``gated`` with a 256-d trunk and one modality
gate shared by all attributes, where negative transfer can show.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .common import (
    ATTRIBUTES,
    DATASET_OF,
    Context,
    Precision,
    autocast,
    build_model,
    compare,
    dataset_config,
    decoded,
    interleaved,
    load_products,
    manifests,
    median,
    model_spec,
    paired_ratio,
    result,
    spread,
    stopwatch,
)

NAME = "multitask"
TITLE = "Multi-task (one 5-head model) vs single-task (five 1-head models)"
FUSION = {"name": "gated", "options": {"dim": 256}}
CONCAT = {"name": "concat"}


def throughput(
    ctx: Context, *, device: torch.device, precision: Precision = "fp32",
    batch_size: int | None = None, crop: int | None = None, label: str = "",
) -> dict[str, Any]:
    from fashion.predict.predictor import Predictor

    s = ctx.sizes
    batch_size = batch_size or s.batch_size
    crop = crop or s.infer_crop
    catalog = ctx.catalog()
    n = max(s.mt_products, batch_size)
    products = decoded(load_products(
        manifests(catalog, "test"), limit=n))
    text_model = ctx.text_model()
    multi = Predictor(build_model(model_spec(crop=crop, text_model=text_model, fusion=CONCAT), ctx.seed).to(device))
    singles = [
        Predictor(build_model(model_spec(crop=crop, text_model=text_model, fusion=CONCAT,
                                         attributes=[a]), ctx.seed).to(device))
        for a in ATTRIBUTES
    ]

    def run_multi() -> Any:
        with autocast(device, precision):
            return multi.predict(products, batch_size=batch_size)

    def run_singles() -> Any:
        with autocast(device, precision):
            return [p.predict(products, batch_size=batch_size) for p in singles]

    ctx.log(f"  {label}throughput: {len(products)} products, batch {batch_size}, crop {crop}px, {precision}")
    times = interleaved({"multi": run_multi, "singles": run_singles}, repeats=s.mt_repeats,
                        warmup=1, device=device)
    per_s = {k: len(products) / median(v) for k, v in times.items()}
    comparison = compare(
        f"{label}throughput, all 5 attributes: one 5-head model vs 5 single-task models",
        sdk=per_s["multi"], baseline=per_s["singles"], unit="products/s",
        sdk_label="multi-task", baseline_label="5 single-task",
        ratio=paired_ratio(times["multi"], times["singles"]), target=4.5,
    )
    return {
        "settings": {"products": len(products), "batch_size": batch_size, "crop": crop,
                     "precision": precision, "repeats": s.mt_repeats},
        "metrics": {"seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
                    "products_per_s": {k: round(v, 3) for k, v in per_s.items()}},
        "comparison": comparison,
    }


def _train(ctx: Context, name: str, attributes: list[str], datasets: list[str],
           fusion: dict[str, Any], device: torch.device, precision: Precision) -> tuple[Any, float, int]:
    from fashion.training import OptimizerConfig, TrainConfig, Trainer

    s = ctx.sizes
    catalog = ctx.catalog()
    spec = model_spec(crop=s.train_crop, text_model=ctx.text_model(), fusion=fusion,
                      attributes=attributes)
    model = build_model(spec, ctx.seed)
    only = None if len(datasets) > 1 else attributes
    config = TrainConfig(
        datasets=[dataset_config(catalog, d, "train", only, name=d) for d in datasets],
        validation=[dataset_config(catalog, d, "val", only, name=f"{d}-val") for d in datasets],
        epochs=s.mt_epochs, batch_size=s.batch_size, freeze=["backbones"], feature_cache=True,
        cache_dir=_cache_dir(ctx), output_dir=ctx.work / "runs" / name,
        optimizer=OptimizerConfig(lr_head=1e-3), save_bundle=False, progress=False,
        device=str(device), precision=precision if device.type == "cuda" else "fp32",
        seed=ctx.seed,
    )
    with stopwatch() as seconds:
        trained = Trainer(model, config).fit()
    return model, seconds[0], trained.best_epoch or 0


def _cache_dir(ctx: Context) -> Any:
    return ctx.work / f"feature-cache-{ctx.sizes.train_crop}"


def _load(ctx: Context, model: Any, dataset: str, split: str, attributes: list[str]) -> Any:
    from fashion.training import label_normalizers, load_dataset

    wanted = [a for a in attributes if DATASET_OF[a] == dataset]
    data = load_dataset(dataset_config(ctx.catalog(), dataset, split, wanted, name=f"{dataset}-{split}"),
                        model, normalizers=label_normalizers(model), on_unknown_label="skip")
    return data.encode(model)


def warm_cache(ctx: Context, device: torch.device) -> float:
    """Backbone features of every split, computed once (every model here shares the backbones)."""
    from fashion.training import FeatureCache

    s = ctx.sizes
    model = build_model(model_spec(crop=s.train_crop, text_model=ctx.text_model()), ctx.seed).to(device)
    cache = FeatureCache(_cache_dir(ctx), model)
    with stopwatch() as seconds:
        for d in sorted(set(DATASET_OF.values())):
            for split in ("train", "val", "test"):
                cache.fill(_load(ctx, model, d, split, list(ATTRIBUTES)), batch_size=64)
    return seconds[0]


def _test_scores(ctx: Context, model: Any, datasets: list[str], attributes: list[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 on the test split, from the shared feature cache."""
    from fashion.training import FeatureCache
    from fashion.training.evaluation import score_datasets

    cache = FeatureCache(_cache_dir(ctx), model)
    loaded, features = [], []
    for d in datasets:
        data = _load(ctx, model, d, "test", attributes)
        cache.fill(data, batch_size=64)
        loaded.append(data)
        features.append(cache.load(data).to(model.device))
    scores, _ = score_datasets(model, loaded, batch_size=64, features=features)
    return {a: {"accuracy": m.accuracy, "macro_f1": m.macro_f1, "support": m.support}
            for a, m in scores.items()}


def accuracy(ctx: Context, fusion: dict[str, Any], *, device: torch.device,
             precision: Precision = "fp32") -> dict[str, Any]:
    datasets = sorted(set(DATASET_OF.values()))
    tag = fusion["name"]
    ctx.log(f"  accuracy [{tag}]: the 5-head model and 5 single-task models ({ctx.sizes.mt_epochs} epochs)")
    multi, multi_seconds, multi_best = _train(ctx, f"multi-task-{tag}", list(ATTRIBUTES), datasets,
                                              fusion, device, precision)
    multi_scores = _test_scores(ctx, multi, datasets, list(ATTRIBUTES))
    single_scores: dict[str, Any] = {}
    single_seconds = 0.0
    single_best = {}
    for attribute in ATTRIBUTES:
        model, seconds, best = _train(ctx, f"single-{attribute}-{tag}", [attribute],
                                      [DATASET_OF[attribute]], fusion, device, precision)
        single_seconds += seconds
        single_best[attribute] = best
        single_scores.update(_test_scores(ctx, model, [DATASET_OF[attribute]], [attribute]))
    mean = {
        "multi": sum(multi_scores[a]["accuracy"] for a in ATTRIBUTES) / len(ATTRIBUTES),
        "single": sum(single_scores[a]["accuracy"] for a in ATTRIBUTES) / len(ATTRIBUTES),
        "multi_f1": sum(multi_scores[a]["macro_f1"] for a in ATTRIBUTES) / len(ATTRIBUTES),
        "single_f1": sum(single_scores[a]["macro_f1"] for a in ATTRIBUTES) / len(ATTRIBUTES),
    }
    # standard error of a difference of two accuracies on the same test rows (unpaired bound)
    errors = []
    for a in ATTRIBUTES:
        n = max(1, multi_scores[a]["support"])
        p = (multi_scores[a]["accuracy"] + single_scores[a]["accuracy"]) / 2
        errors.append(2 * p * (1 - p) / n)
    se_mean = math.sqrt(sum(errors)) / len(ATTRIBUTES)
    return {
        "test": {"multi_task": multi_scores, "single_task": single_scores},
        "mean": {k: round(v, 4) for k, v in mean.items()},
        "mean_accuracy_difference_se": round(se_mean, 4),
        "train_seconds": {"multi_task": round(multi_seconds, 2),
                          "single_task_total": round(single_seconds, 2)},
        "best_epoch": {"multi_task": multi_best, "single_task": single_best},
    }


def _accuracy_rows(acc: dict[str, Any], label: str, target: float | None) -> list[dict[str, Any]]:
    mean = acc["mean"]
    return [
        compare(f"test accuracy, mean of 5 attributes ({label}): multi-task minus single-task",
                sdk=mean["multi"], baseline=mean["single"], unit="accuracy",
                sdk_label="multi-task", baseline_label="5 single-task", kind="delta", target=target,
                note=f"standard error of the difference about "
                     f"{acc['mean_accuracy_difference_se'] * 100:.1f} pts"),
        compare(f"test macro-F1, mean of 5 attributes ({label}): multi-task minus single-task",
                sdk=mean["multi_f1"], baseline=mean["single_f1"], unit="fraction",
                sdk_label="multi-task", baseline_label="5 single-task", kind="delta"),
    ]


def run(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    speed = throughput(ctx, device=ctx.device)
    ctx.log("  accuracy: computing the shared backbone feature cache")
    cache_seconds = warm_cache(ctx, ctx.device)
    default = accuracy(ctx, CONCAT, device=ctx.device)
    shared = accuracy(ctx, FUSION, device=ctx.device) if s.info_experiments else None
    settings = {
        "backbones": "efficientnet_lite0 (ImageNet) + bert "
                     + ("tiny random 1-layer" if s.tiny_text else "MiniLM-L6"),
        "heads": "linear",
        "throughput": {**speed["settings"], "fusion": CONCAT},
        "accuracy": {"crop": s.train_crop, "epochs": s.mt_epochs, "batch_size": s.batch_size,
                     "fusions": {"SDK default": CONCAT, **({"shared trunk": FUSION} if shared else {})},
                     "backbones": "frozen, features cached (shared by all models)",
                     "trained": "fusion + heads; best epoch by validation macro-F1",
                     "catalog_products": s.catalog_products},
    }
    metrics = {"throughput": speed["metrics"], "feature_cache_seconds": round(cache_seconds, 2),
               "accuracy_concat": default, "accuracy_gated": shared}
    notes = [
        "Single-task models each run the full backbones, so five of them cost about five forwards; "
        "the multi-task model runs the backbones once for all five heads.",
        "Accuracy: backbones frozen on this CPU (fine-tuning six models does not fit a 15-minute "
        "budget). With the SDK default concat fusion nothing but LayerNorm is shared, so this row "
        "checks the multi-task training recipe (sampler, one best epoch for all attributes); the "
        "gated fusion shares a 256-d trunk and one modality gate across attributes, the case "
        "where negative transfer can show"
        + ("." if shared else f" (an information row: the full profile runs it, not {ctx.profile})."),
        f"Standard error of the mean-accuracy difference: about "
        f"{default['mean_accuracy_difference_se'] * 100:.1f} points on this test split; 'no loss' "
        "is judged as a difference of at least -1 point.",
    ]
    rows = [speed["comparison"], *_accuracy_rows(default, "concat, SDK default", -0.01),
            *(_accuracy_rows(shared, "gated 256-d shared trunk", None) if shared else [])]
    times = speed["metrics"]["seconds"]
    return result(
        NAME, TITLE, ctx, settings=settings, metrics=metrics, comparisons=rows, notes=notes,
        size=f"throughput: {speed['settings']['products']} products at {speed['settings']['crop']} px, "
             f"{s.mt_repeats} interleaved repeats; accuracy: {s.catalog_products}-product catalog, "
             f"{s.mt_epochs} epochs on cached features",
        noise=spread(times["multi"], times["singles"], "throughput multi/singles")
        + f"; accuracy difference standard error ~{default['mean_accuracy_difference_se'] * 100:.1f} points",
    )
