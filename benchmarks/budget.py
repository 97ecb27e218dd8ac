"""budget: test accuracy against wall time for head-only, partial fine-tuning at two cut points
and a full fine-tune, each at fp32 and bf16, on the synthetic catalog, side by side.

One model (efficientnet_lite0, ImageNet weights; heads for category and color) is trained from
the same start eight ways: ``freeze = ["backbones"]`` (head-only on cached features),
``["image-backbone@1"]`` and ``["image-backbone@2"]`` (partial: the top one / two blocks train on
activations cached at the cut) and no freeze (full fine-tune), each with ``precision = "fp32"``
and ``"bf16"``. Wall time is the whole ``Trainer.fit`` (cache fill included); steps/s counts the
epochs' training seconds only. Accuracy is the mean over both attributes on the test split.
bf16 runs ask for ``precision = "bf16"`` explicitly (training's ``auto`` is fp32 on every CPU)
and run only where the CPU has native bf16 (avx512_bf16 or AMX): there the row compares bf16
autocast training with fp32 in steps/s (target >= 1.5x) and test accuracy (at most 0.5 point
lost); elsewhere both cells read "not measurable here: no avx512_bf16/amx" and only the bf16
runs are skipped.

Fairness: an unrecorded warm-up fit of the full fine-tune (one epoch; the quick profile: 8
steps) runs first, so no run pays for first-call costs (imports, kernel selection, the OS file
cache of the images); then the runs alternate, each
strategy's precisions back to back in turns (fp32 first, then bf16 first) and, in full mode, a
second round in the mirrored order (ABBA), each cell keeping its fastest wall time.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from .common import (
    Context,
    build_model,
    compare,
    dataset_config,
    model_spec,
    native_bf16_reason,
    not_measurable,
    result,
    row_points,
)

NAME = "budget"
TITLE = "Accuracy per training minute: head-only vs partial vs full fine-tune, fp32 vs bf16"
ATTRIBUTES = ["category", "color"]
DATASETS = ("categories", "colors_patterns")
STRATEGIES: dict[str, list[str]] = {
    "head-only": ["backbones"],
    "partial@1": ["image-backbone@1"],
    "partial@2": ["image-backbone@2"],
    "finetune": [],
}


def _run(ctx: Context, strategy: str, precision: str, epochs: int, max_steps: int | None = None) -> dict[str, Any]:
    from fashion.training import OptimizerConfig, TrainConfig, Trainer, evaluate

    s = ctx.sizes
    catalog = ctx.catalog()
    model = build_model(model_spec(crop=s.train_crop, text_model=None, text=False, attributes=ATTRIBUTES), ctx.seed)
    out = ctx.work / "runs" / f"budget-{strategy}-{precision}"
    cache = ctx.work / f"budget-cache-{strategy}-{precision}"
    for folder in (out, cache):
        shutil.rmtree(folder, ignore_errors=True)
    config = TrainConfig(
        datasets=[dataset_config(catalog, d, "train", name=d) for d in DATASETS],
        validation=[dataset_config(catalog, d, "val", name=f"{d}-val") for d in DATASETS],
        epochs=epochs, batch_size=s.batch_size, freeze=STRATEGIES[strategy], cache_dir=cache,
        optimizer=OptimizerConfig(lr_head=1e-3, lr_backbone=1e-4), output_dir=out,
        save_bundle=False, progress=False, device=str(ctx.device), precision=precision, seed=ctx.seed,
        max_steps=max_steps,
    )
    started = time.perf_counter()
    trained = Trainer(model, config).fit()
    wall = time.perf_counter() - started
    test = evaluate(model, [dataset_config(catalog, d, "test", name=f"{d}-test") for d in DATASETS],
                    batch_size=64, on_unknown_label="skip")
    steps = trained.global_step
    train_seconds = sum(e["seconds"] for e in trained.history)
    return {
        "strategy": strategy, "precision_asked": precision, "precision_used": trained.precision,
        "wall_s": round(wall, 2), "train_s": round(train_seconds, 2), "steps": steps,
        "steps_per_s": round(steps / train_seconds, 3) if train_seconds else float("nan"),
        "test_accuracy": round(100 * test.mean_accuracy, 2),
        "test_macro_f1": round(100 * test.mean_macro_f1, 2),
        "test_rows": min(m.support for m in test.attributes.values()),
    }


def _plot(runs: list[dict[str, Any]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for precision, marker in (("fp32", "o"), ("bf16", "s")):
        chosen = [r for r in runs if r["precision_asked"] == precision]
        ax.plot([r["wall_s"] for r in chosen], [r["test_accuracy"] for r in chosen], marker=marker,
                linestyle="", label=precision)
        for r in chosen if precision == "fp32" else ():  # one label per strategy
            ax.annotate(r["strategy"], (r["wall_s"], r["test_accuracy"]), fontsize=8,
                        xytext=(6, 4), textcoords="offset points")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("wall time of Trainer.fit (s, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy per training time (synthetic catalog)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def schedule(rounds: int, precisions: tuple[str, ...] = ("fp32", "bf16")) -> list[tuple[str, str]]:
    """The run order: strategies in turn, each one's precisions back to back with the one
    that goes first alternating (ABBA…); every further round mirrors the one before."""
    order = [
        (strategy, precision)
        for i, strategy in enumerate(STRATEGIES)
        for precision in (precisions if i % 2 == 0 else precisions[::-1])
    ]
    return [cell for r in range(rounds) for cell in (order if r % 2 == 0 else order[::-1])]


def run(ctx: Context) -> dict[str, Any]:
    import os

    s = ctx.sizes
    epochs = s.budget_epochs
    missing_bf16 = native_bf16_reason() if ctx.device.type == "cpu" else None
    precisions = ("fp32",) if missing_bf16 else ("fp32", "bf16")
    load = os.getloadavg()[0]
    warmup = f"{s.budget_warmup_steps} steps" if s.budget_warmup_steps else "1 epoch"
    ctx.log(f"  warm-up (full fine-tune, {warmup}, not recorded) ...")
    _run(ctx, "finetune", "fp32", 1, max_steps=s.budget_warmup_steps)
    by: dict[tuple[str, str], dict[str, Any]] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    for strategy, precision in schedule(s.budget_rounds, precisions):
        ctx.log(f"  {strategy} {precision} ...")
        measured = _run(ctx, strategy, precision, epochs)
        ctx.log(f"    {measured}")
        walls.setdefault((strategy, precision), []).append(measured["wall_s"])
        kept = by.get((strategy, precision))
        if kept is None or measured["wall_s"] < kept["wall_s"]:
            by[(strategy, precision)] = measured
    runs = [by[(strategy, p)] for strategy in STRATEGIES for p in precisions]
    plot = ctx.out / "budget.png"
    _plot(runs, plot)
    fine = by[("finetune", "fp32")]
    if missing_bf16:
        why = missing_bf16
        bf16_rows = [
            not_measurable("bf16 vs fp32 training steps/s (full fine-tune)", why, unit="steps/s",
                           target=1.5, sdk_label="bf16", baseline_label="fp32"),
            not_measurable("bf16 vs fp32 training: test accuracy (full fine-tune)", why, unit="accuracy",
                           target=-0.005, kind="delta", sdk_label="bf16", baseline_label="fp32"),
        ]
    else:
        tuned = by[("finetune", "bf16")]
        bf16_rows = [
            compare("bf16 vs fp32 training steps/s (full fine-tune)", sdk=tuned["steps_per_s"],
                    baseline=fine["steps_per_s"], unit="steps/s", sdk_label="bf16", baseline_label="fp32",
                    target=1.5, note=f"bf16 run used {tuned['precision_used']}"),
            compare("bf16 vs fp32 training: test accuracy (full fine-tune)", sdk=tuned["test_accuracy"] / 100,
                    baseline=fine["test_accuracy"] / 100, unit="accuracy", kind="delta", target=-0.005,
                    sdk_label="bf16", baseline_label="fp32"),
        ]
    comparisons = [
        *bf16_rows,
        *(
            c
            for cut, what in (("partial@1", "top block"), ("partial@2", "top two blocks"))
            for c in (
                compare(f"partial ({what}) vs full fine-tune: test accuracy", sdk=by[(cut, "fp32")]["test_accuracy"] / 100,
                        baseline=fine["test_accuracy"] / 100, unit="accuracy", kind="delta", target=-0.005,
                        sdk_label=cut, baseline_label="finetune"),
                compare(f"partial ({what}) / full fine-tune wall time", sdk=by[(cut, "fp32")]["wall_s"],
                        baseline=fine["wall_s"], unit="s", kind="max_ratio", target=0.25, sdk_label=cut,
                        baseline_label="finetune"),
            )
        ),
    ]
    return result(
        NAME, TITLE, ctx,
        settings={"model": "efficientnet_lite0 (ImageNet) image only", "attributes": ATTRIBUTES,
                  "epochs": epochs, "batch_size": s.batch_size, "crop": s.train_crop,
                  "native_bf16": not missing_bf16, "precisions": list(precisions),
                  "rounds": s.budget_rounds, "warmup": warmup, "load_average_at_start": round(load, 2),
                  "load_average_at_end": round(os.getloadavg()[0], 2), "order": "warm-up, then ABBA (see schedule)"},
        metrics={"runs": runs, "wall_s_per_round": {f"{k[0]} {k[1]}": v for k, v in walls.items()},
                 "plot": str(plot)},
        comparisons=comparisons,
        notes=["Wall time includes the feature-cache fill (head-only, partial); the machine is shared, "
               "so its load average at the start is recorded."],
        size=f"{s.catalog_products}-product catalog, {len(STRATEGIES)} strategies x {', '.join(precisions)}, "
             f"{epochs} epochs, batch {s.batch_size}, crop {s.train_crop} px, {s.budget_rounds} round(s) "
             f"(each cell keeps its fastest), after a warm-up of {warmup}",
        noise=row_points(fine.get("test_rows", 0)) + "; wall time: " + (
            "one round, no spread measured" if s.budget_rounds < 2 else "largest spread between rounds "
            + f"{max(max(w) / min(w) - 1 for w in walls.values()):.0%} of a cell's fastest"),
    )
