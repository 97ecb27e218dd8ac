"""Trust: calibration, abstention, applicability, the audit and the review queue (docs/trust.md).

On a synthetic catalog made with label noise (a share of every attribute's *train* labels
flipped, listed in ``label_noise.csv``) and a "not applicable" scope (pants and skirts in the
``sleeves`` dataset with an ``n/a`` cell; ``sleeve_length`` declares ``applies_to`` categories
with sleeves), one model (frozen backbones, cached features) is trained on the three datasets;
training fits each attribute's temperature and its abstention threshold at
``min_precision = 0.95`` on validation. Then, on held-out data:

1. ECE of the test split before and after calibration, per attribute (target: lower for all);
2. the test precision of the labels ``abstain=True`` publishes, and their coverage (target:
   precision >= 0.93 for every attribute);
3. the share of out-of-scope test products (true category pants or skirt, from the ground
   truth) answered ``not_applicable`` for ``sleeve_length`` (target >= 0.95);
4. ``audit_datasets`` on the noisy train manifests: recall and precision of the flipped cells
   in its top-k list, k = 1.5 x the number of flipped cells (target: recall >= 0.8 at
   precision >= 0.5);
5. the review queue: from a small labeled seed set of ``pattern``, a model picks ``budget``
   products of the unlabeled pool by margin (``build_queue``); labeling them (true labels)
   and retraining is compared with labeling as many random pool products, as test accuracy,
   median over seeds of (queue gain - random gain) (target > 0).
"""

from __future__ import annotations

import csv
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .common import (
    ATTRIBUTES,
    DATASETS,
    Context,
    build_model,
    compare,
    dataset_config,
    load_products,
    median,
    model_spec,
    result,
    tiny_bert,
)

NAME = "trust"
TITLE = "trust: calibration, abstention, not applicable, audit, review queue"
MIN_PRECISION = 0.95
NOISE = 0.10
NOT_APPLICABLE = 0.30
REVIEW_ATTRIBUTE = "pattern"


def sizes(ctx: Context) -> dict[str, Any]:
    """This profile's sizes of the trust catalog and runs (``Sizes.trust_*``)."""
    s = ctx.sizes
    return {"products": s.trust_products, "image_size": s.trust_image_size, "crop": s.trust_crop,
            "epochs": s.trust_epochs, "seeds": s.trust_seeds, "budget": s.trust_budget,
            "seed_rows": s.trust_seed_rows}


def _catalog(ctx: Context, size: Mapping[str, Any]) -> Path:
    from fashion.catalog import load_catalog, make_catalog

    out = ctx.work / f"catalog-trust-{size['products']}-{size['image_size']}-{ctx.seed}"
    if (out / "catalog.json").is_file():
        info = load_catalog(out)
        if (info.products, info.label_noise, info.not_applicable) == (size["products"], NOISE, NOT_APPLICABLE):
            return out
    ctx.log(f"  generating a {size['products']}-product catalog with label noise {NOISE} and "
            f"not-applicable share {NOT_APPLICABLE} in {out}")
    make_catalog(out, products=size["products"], image_size=size["image_size"], seed=ctx.seed,
                 label_noise=NOISE, not_applicable=NOT_APPLICABLE, overwrite=True)
    return out


def _spec(ctx: Context, size: Mapping[str, Any], attributes: Sequence[str]) -> dict[str, Any]:
    from fashion.model.taxonomy_files import builtin_taxonomies

    text = str(tiny_bert(ctx.work)) if ctx.sizes.tiny_text else None
    spec = model_spec(crop=size["crop"], text_model=text, attributes=attributes)
    for a in attributes:  # applies_to comes from the taxonomy, as add-attribute copies it
        if builtin_taxonomies()[a].applies_to:
            spec["attributes"][a]["applies_to"] = dict(builtin_taxonomies()[a].applies_to)
    return spec


def _train(ctx: Context, size: Mapping[str, Any], spec: Mapping[str, Any], datasets: Sequence[Any],
           validation: Sequence[Any], out: Path, seed: int) -> Any:
    from fashion.registry import load_bundle
    from fashion.training import TrainConfig, Trainer

    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(
        datasets=list(datasets), validation=list(validation), epochs=size["epochs"], batch_size=32,
        freeze=["backbones"], cache_dir=ctx.work / f"feature-cache-trust-{size['crop']}",
        output_dir=out, progress=False, device=str(ctx.device), seed=seed,
        min_precision=MIN_PRECISION, verify_images=False,
    )
    trained = Trainer(build_model(spec, ctx.seed), config).fit()
    if trained.bundle_path is None:
        raise RuntimeError("the training run wrote no bundle (is fashion.registry installed?)")
    return load_bundle(trained.bundle_path).model


def _truth(catalog: Path) -> dict[str, dict[str, str]]:
    from fashion.catalog import read_ground_truth

    return {row["id"]: row for row in read_ground_truth(catalog)}


def _manifest(path: Path, catalog: Path, rows: Sequence[Mapping[str, str]], attribute: str | None) -> Path:
    """A manifest of ground-truth rows (images as absolute paths), true labels of ``attribute``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "images", "title", "description", "brand", *([attribute] if attribute else [])])
        for r in rows:
            images = "|".join(str(catalog / p) for p in r["images"].split("|"))
            writer.writerow([r["id"], images, r["title"], r["description"], r["brand"],
                             *([r[attribute]] if attribute else [])])
    return path


# ------------------------------------------------------------------------------ measurements


def _calibration_and_abstention(model: Any, catalog: Path) -> dict[str, Any]:
    from fashion.training import evaluate

    report = evaluate(model, [dataset_config(catalog, d, "test") for d in DATASETS], trust=True)
    rows = {}
    for a, t in report.trust.attributes.items():
        abst = t.abstention or {}
        rows[a] = {"rows": t.rows, "accuracy": round(t.accuracy, 4), "temperature": round(t.temperature, 3),
                   "ece_before": round(t.ece_before, 4), "ece_after": round(t.ece_after, 4),
                   "threshold": abst.get("threshold"), "precision": abst.get("precision"),
                   "coverage": abst.get("coverage")}
    return {"attributes": rows, "evaluate_applicability": report.trust.applicability}


def _applicability(model: Any, catalog: Path, truth: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    from fashion.trust.fit import predict_products, score_applicability

    products = load_products([catalog / "datasets" / d / "test.csv" for d in DATASETS])
    predictions = predict_products(model, products)
    known = [{"category": truth[str(p.id)]["category"]} for p in products]
    return score_applicability(model, predictions, known)


def _audit(model: Any, catalog: Path) -> dict[str, Any]:
    """Top-k recall/precision of the flipped cells per attribute, per audit ranking (the same
    cross-fitted probabilities ranked by each rule of ``fashion audit --ranking``)."""
    from fashion.training.data import label_normalizers, load_dataset
    from fashion.trust.audit import RANKERS, audit_scores, rank_suspects

    normalizers = label_normalizers(model)
    datasets = [load_dataset(dataset_config(catalog, d, "train"), model, normalizers=normalizers,
                             verify_images=False) for d in DATASETS]
    scores = audit_scores(model, datasets)
    with (catalog / "label_noise.csv").open(encoding="utf-8", newline="") as f:
        flipped = {(r["id"], r["attribute"]) for r in csv.DictReader(f)}
    by_ranking: dict[str, dict[str, Any]] = {}
    for ranking in RANKERS:
        suspects = rank_suspects(model, scores, ranking)
        rows: dict[str, Any] = {}
        for a in ATTRIBUTES:
            truth = {key for key in flipped if key[1] == a}
            listed = [(s.id, s.attribute) for s in suspects if s.attribute == a]
            k = round(1.5 * len(truth))
            top = listed[:k]
            found = len(set(top) & truth)
            rows[a] = {"flipped": len(truth), "suspects": len(listed), "k": k, "found_in_top_k": found,
                       "recall": round(found / len(truth), 4) if truth else None,
                       "precision": round(found / len(top), 4) if top else None}
        by_ranking[ranking] = rows
    return by_ranking


def _review(ctx: Context, size: Mapping[str, Any], catalog: Path,
            truth: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    from fashion.training import evaluate
    from fashion.trust.features import Encoded, encode_products
    from fashion.trust.review import build_queue

    a = REVIEW_ATTRIBUTE
    spec = _spec(ctx, size, [a])
    train = sorted((r for r in truth.values() if r["split"] == "train" and r[a]), key=lambda r: r["id"])
    validation = [dataset_config(catalog, "colors_patterns", "val", [a], name="val")]
    test = [dataset_config(catalog, "colors_patterns", "test", [a], name="test")]
    work = ctx.work / "runs" / "trust-review"

    def accuracy(model: Any) -> float:
        return evaluate(model, test, trust=False).attributes[a].accuracy

    def fit(rows: Sequence[Mapping[str, str]], name: str, seed: int) -> Any:
        from fashion.training import DatasetConfig

        path = _manifest(work / f"{name}.csv", catalog, rows, a)
        return _train(ctx, size, spec, [DatasetConfig(name=name, path=path, attributes=[a])],
                      validation, work / f"run-{name}", seed)

    products = load_products([_manifest(work / "pool.csv", catalog, train, None)])
    encoded: Encoded | None = None  # the frozen backbones' features, the same for every seed
    seeds = []
    for seed in range(size["seeds"]):
        rng = random.Random(f"trust-review:{seed}")
        labeled = rng.sample(train, size["seed_rows"])
        chosen = {r["id"] for r in labeled}
        index = [i for i, r in enumerate(train) if r["id"] not in chosen]
        pool = [train[i] for i in index]
        base = fit(labeled, f"seed{seed}-base", seed)
        encoded = encoded or encode_products(base, products)
        rows = torch.tensor(index)
        queue = build_queue(base, [products[i] for i in index], size["budget"], attribute=a, strategy="margin",
                            encoded=Encoded({k: v[rows] for k, v in encoded.features.items()},
                                            {k: m[rows] for k, m in encoded.masks.items()}))
        queued = [pool[item.index] for item in queue]
        randomly = rng.sample(pool, size["budget"])
        acc = {"base": accuracy(base),
               "queue": accuracy(fit(labeled + queued, f"seed{seed}-queue", seed)),
               "random": accuracy(fit(labeled + randomly, f"seed{seed}-random", seed))}
        acc = {k: round(v, 4) for k, v in acc.items()}
        ctx.log(f"  review seed {seed}: {acc}")
        seeds.append(acc | {"queue_minus_random": round(acc["queue"] - acc["random"], 4)})
    return {"attribute": a, "budget": size["budget"], "seed_rows": size["seed_rows"], "pool": len(train) - size["seed_rows"],
            "seeds": seeds,
            "median_queue_gain": median([s["queue"] - s["base"] for s in seeds]),
            "median_random_gain": median([s["random"] - s["base"] for s in seeds]),
            "median_queue_minus_random": median([s["queue_minus_random"] for s in seeds])}


# ------------------------------------------------------------------------------ the run


def _strictly_positive(row: dict[str, Any]) -> dict[str, Any]:
    """``compare`` counts ``value >= target`` as met; "improves more" needs ``value > 0``."""
    if row["verdict"] == "met" and not row["value"] > 0:
        row["verdict"] = "missed"
    return row


def measure(ctx: Context) -> dict[str, Any]:
    size = sizes(ctx)
    torch.manual_seed(ctx.seed)
    catalog = _catalog(ctx, size)
    truth = _truth(catalog)
    ctx.log("  training the 5-attribute model (frozen backbones, cached features, calibrated)")
    model = _train(ctx, size, _spec(ctx, size, ATTRIBUTES),
                   [dataset_config(catalog, d, "train", name=d) for d in DATASETS],
                   [dataset_config(catalog, d, "val", name=f"{d}-val") for d in DATASETS],
                   ctx.work / "runs" / "trust", ctx.seed)
    ctx.log("  test: calibration, abstention, applicability")
    calibration = _calibration_and_abstention(model, catalog)
    applicability = _applicability(model, catalog, truth)
    ctx.log("  audit of the noisy train manifests")
    from fashion.trust.audit import DEFAULT_RANKING

    rankings = _audit(model, catalog)
    audit = rankings[DEFAULT_RANKING]
    ctx.log(f"  review queue vs random ({size['seeds']} seeds, budget {size['budget']})")
    review = _review(ctx, size, catalog, truth)

    comparisons = []
    for a, row in calibration["attributes"].items():
        comparisons.append(compare(
            f"{a}: test ECE, raw / calibrated", sdk=row["ece_after"], baseline=row["ece_before"],
            unit="ECE", sdk_label="calibrated", baseline_label="raw",
            ratio=row["ece_before"] / row["ece_after"] if row["ece_after"] else float("inf"),
            target=1.0, note="met when calibration lowers the test ECE (ratio above 1)"))
        if comparisons[-1]["verdict"] == "met" and not row["ece_after"] < row["ece_before"]:
            comparisons[-1]["verdict"] = "missed"
    for a, row in calibration["attributes"].items():
        precision = row["precision"] if row["precision"] is not None else float("nan")
        comparisons.append(compare(
            f"{a}: test precision of published labels at min-precision {MIN_PRECISION}",
            sdk=precision, baseline=row["accuracy"], unit="precision", sdk_label="abstain=True",
            baseline_label="arg-max accuracy", ratio=precision, target=0.93, kind="ratio",
            note=f"value = precision; coverage {row['coverage']:.3f}" if row["precision"] is not None
            else "no label published (no threshold reached the precision on validation)"))
        if row["precision"] is None:  # abstaining on everything does not meet a precision target
            comparisons[-1]["verdict"] = "missed"
    for a, row in applicability.items():
        recall = row["not_applicable_recall"] if row["not_applicable_recall"] is not None else float("nan")
        comparisons.append(compare(
            f"{a}: out-of-scope test products answered not_applicable", sdk=recall,
            baseline=row["in_scope_kept"] or 0.0, unit="share", sdk_label="not_applicable",
            baseline_label="in-scope kept", ratio=recall, target=0.95,
            note=f"{row['out_of_scope']} out of scope, {row['in_scope']} in scope"))
    for a, row in audit.items():
        if not row["flipped"]:
            continue
        recall = row["recall"] or 0.0
        precision = row["precision"] or 0.0
        met = recall >= 0.8 and precision >= 0.5
        comparisons.append(compare(
            f"{a}: audit recall of flipped labels in its top {row['k']}", sdk=recall, baseline=precision,
            unit="share", sdk_label="recall", baseline_label="precision", ratio=recall, target=0.8,
            note=f"{row['flipped']} flipped; met needs recall >= 0.8 and precision >= 0.5")
            | {"verdict": "met" if met else "missed"})
    comparisons.append(_strictly_positive(compare(
        f"{review['attribute']}: test accuracy gain, {review['budget']} queued minus {review['budget']} random",
        sdk=review["median_queue_gain"], baseline=review["median_random_gain"], unit="accuracy",
        sdk_label="review queue", baseline_label="random", kind="delta", target=0.0,
        note=f"median over {len(review['seeds'])} seeds; met when above 0")))
    return {
        "settings": dict(size) | {"label_noise": NOISE, "not_applicable": NOT_APPLICABLE,
                                  "min_precision": MIN_PRECISION, "device": str(ctx.device),
                                  "audit_ranking": DEFAULT_RANKING,
                                  "text": "tiny random BERT" if ctx.sizes.tiny_text else "MiniLM"},
        "metrics": {"calibration": calibration, "applicability": applicability, "audit": audit,
                    "audit_rankings": rankings, "review": review},
        "comparisons": comparisons,
    }


def run(ctx: Context) -> dict[str, Any]:
    out = measure(ctx)
    s = out["settings"]
    notes = [
        f"{s['products']} products at {s['image_size']} px; efficientnet_lite0 (crop {s['crop']}) + "
        f"{s['text']} frozen, heads trained {s['epochs']} epochs on cached features.",
        f"{int(NOISE * 100)}% of each attribute's train labels flipped; val and test are clean.",
        "Audit top-k: k = 1.5 x the attribute's flipped cells.",
    ]
    rows = min((r["rows"] for r in out["metrics"]["calibration"]["attributes"].values()), default=0)
    diffs = [x["queue_minus_random"] for x in out["metrics"]["review"]["seeds"]] or [0.0]
    return result(NAME, TITLE, ctx, settings=s, metrics=out["metrics"],
                  comparisons=out["comparisons"], notes=notes,
                  size=f"{s['products']}-product catalog at {s['image_size']} px, crop {s['crop']}, {s['text']}, "
                       f"heads {s['epochs']} epochs; review queue over {s['seeds']} seeds, budget {s['budget']}",
                  noise=f"fewest test rows per attribute {rows} (one row = {100 / max(1, rows):.1f} points of "
                        "precision or recall); the review-queue gain is a median over "
                        f"{s['seeds']} seeds whose queue - random differences ranged "
                        f"{min(diffs) * 100:+.1f} to {max(diffs) * 100:+.1f} points")
