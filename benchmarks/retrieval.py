"""Retrieval quality of the product vector: the multi-task vector vs raw ImageNet features.

The synthetic catalog's generator knows every product's truth and which photos show it (one to
four per product: on white, on a model, zoomed fabric, "artistic" off-centre shots). Each photo
of the test split becomes its own query and gallery item, as in the DeepFashion In-Shop
protocol:

- **same product**: a query photo's gallery is every other test photo; a hit is a photo of the
  same product. P@1 and MRR (reciprocal rank of the first hit), over the photos of products
  with at least two photos.
- **attribute retrieval**: the gallery is the photos of *other* products; a hit shares the
  query's category and pattern. P@1, P@10 and MRR.

Two vectors, both L2-normalized and compared by inner product (what ``fashion.search`` does):

- **multi-task**: ``Predictor.embed`` of a model trained by the SDK on the catalog's three
  datasets (MDMT, every attribute; EfficientNet-Lite0 with its ImageNet weights, image only,
  ``strategy = "head-only"``: the backbone frozen, its features cached; a gated 256-d fusion
  trunk shared by the heads; ``partial``, the top block fine-tuned too, measured no better).
- **ImageNet baseline**: the pooled features of the same backbone as it loads (ImageNet
  weights), before any training (the per-input vector of an untrained model's one input).

Target: the multi-task vector beats the baseline on both protocols (MRR).
"""

from __future__ import annotations

import csv
from typing import Any

import numpy as np

from fashion.model.space import EmbeddingSpace

from .common import Context, build_model, compare, dataset_config, model_spec, result, stopwatch

NAME = "retrieval"
TITLE = "Retrieval quality: multi-task product vector vs raw ImageNet features"
FUSION = {"name": "gated", "options": {"dim": 256}}
STRATEGY = "head-only"  # frozen backbone, cached features: fusion trunk and heads train
DATASETS = ("categories", "colors_patterns", "sleeves")
# The attributes the protocol's relevance is defined by: a team whose "similar" must mean
# "same category and pattern" emphasizes them (fashion.model.space); equal shares, not tuned.
EMPHASIS = EmbeddingSpace(emphasize=["category", "pattern"], emphasis=0.5)


def _truth(catalog: Any) -> list[dict[str, str]]:
    with (catalog / "ground_truth.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _photos(ctx: Context, catalog: Any) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """One single-photo product per test photo, its product's index and its (category, pattern)."""
    from fashion import Product

    products, owner, kinds = [], [], []
    rows = [r for r in _truth(catalog) if r["split"] == "test"]
    if ctx.sizes.retrieval_products:
        rows = rows[:ctx.sizes.retrieval_products]
    pairs: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        kind = pairs.setdefault((row["category"], row["pattern"]), len(pairs))
        for j, image in enumerate(row["images"].split("|")):
            products.append(Product(id=f"{row['id']}#{j}", images=[str(catalog / image)]))
            owner.append(i)
            kinds.append(kind)
    return products, np.asarray(owner), np.asarray(kinds)


def _spec(ctx: Context) -> dict[str, Any]:
    return model_spec(crop=ctx.sizes.train_crop, text_model=None, text=False, fusion=FUSION)


def _train(ctx: Context, catalog: Any) -> tuple[Any, float]:
    from fashion.training import OptimizerConfig, TrainConfig, Trainer

    s = ctx.sizes
    model = build_model(_spec(ctx), ctx.seed)
    config = TrainConfig(
        datasets=[dataset_config(catalog, d, "train", name=d) for d in DATASETS],
        validation=[dataset_config(catalog, d, "val", name=f"{d}-val") for d in DATASETS],
        epochs=s.mt_epochs, batch_size=s.batch_size, strategy=STRATEGY,
        cache_dir=ctx.work / f"retrieval-cache-{s.train_crop}", output_dir=ctx.work / "runs" / NAME,
        optimizer=OptimizerConfig(lr_head=1e-3), save_bundle=False, progress=False,
        device=str(ctx.device), precision="fp32", seed=ctx.seed,
    )
    with stopwatch() as seconds:
        Trainer(model, config).fit()
    return model, seconds[0]


def ranks(vectors: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Per photo, the 1-based rank of every gallery item by inner product: ``(N, N)`` ranks,
    ``inf`` for the photo itself and the ``excluded`` items (an ``(N, N)`` boolean)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    scores[excluded] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(len(order))[:, None], order] = np.arange(1, order.shape[1] + 1)
    out = rank.astype(float)
    out[np.isneginf(scores)] = np.inf
    return out


def scores_of(vectors: np.ndarray, relevant: np.ndarray, excluded: np.ndarray,
              queries: np.ndarray, ks: tuple[int, ...]) -> tuple[dict[str, float], np.ndarray]:
    """P@k (share of the top k that is relevant) and MRR over ``queries`` (row indices), and
    each query's reciprocal rank (for paired differences)."""
    r = ranks(vectors, excluded)[queries]
    hit = relevant[queries] & np.isfinite(r)
    first = np.where(hit, r, np.inf).min(axis=1)
    out = {f"p_at_{k}": float(((r <= k) & hit).sum(axis=1).mean() / k) for k in ks}
    reciprocal = np.where(np.isfinite(first), 1.0 / first, 0.0)
    out["mrr"] = float(np.mean(reciprocal))
    out["queries"] = int(len(queries))
    return out, reciprocal


def evaluate(vectors: np.ndarray, owner: np.ndarray, kinds: np.ndarray) -> dict[str, Any]:
    """Both protocols for one set of (L2-normalized) per-photo vectors (``reciprocal``: per
    query, for :func:`paired`)."""
    same = owner[:, None] == owner[None, :]
    photos = np.bincount(owner)[owner]
    product, rr_p = scores_of(vectors, same, np.zeros_like(same), np.flatnonzero(photos >= 2), (1,))
    shares = (kinds[:, None] == kinds[None, :]) & ~same
    attribute, rr_a = scores_of(vectors, shares, same, np.arange(len(owner)), (1, 10))
    return {"same_product": product, "attribute": attribute,
            "reciprocal": {"same_product": rr_p, "attribute": rr_a}}


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean difference of two vectors' reciprocal ranks over the same queries, and its
    standard error."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def _intrinsic(ctx: Context, fused: np.ndarray, raw: np.ndarray) -> dict[str, Any]:
    """Local intrinsic dimension of the product vectors beside the search row's stand-ins
    (same number of points, same estimator): how hard they are for a graph index."""
    from .search import LID_K, intrinsic_dimension, structured, unit

    rng = np.random.default_rng(ctx.seed)
    n, d = len(fused), ctx.sizes.search_dimension
    out = {"multi_task": intrinsic_dimension(fused, points=n), "imagenet": intrinsic_dimension(raw, points=n),
           "search_stand_in": intrinsic_dimension(structured(rng, n, d), points=n),
           "random_unit": intrinsic_dimension(unit(rng, n, d), points=n)}
    return {k: round(v, 1) for k, v in out.items()} | {"points": n, "k": LID_K}


def run(ctx: Context) -> dict[str, Any]:
    from fashion.predict.predictor import Predictor, l2_normalize

    catalog = ctx.catalog()
    ctx.log(f"  retrieval: training the multi-task model ({ctx.sizes.mt_epochs} epochs, {STRATEGY})")
    model, train_s = _train(ctx, catalog)
    products, owner, kinds = _photos(ctx, catalog)
    ctx.log(f"  retrieval: {len(products)} test photos of {owner.max() + 1} products")
    predictor = Predictor(model)
    with stopwatch() as seconds:
        fused = predictor.embed(products, batch_size=ctx.sizes.batch_size, normalize=True)
    # the baseline: the same backbone as it loads (ImageNet weights), before any training
    pretrained = Predictor(build_model(_spec(ctx), ctx.seed))
    inputs = pretrained.embed(products, batch_size=ctx.sizes.batch_size, per_input=True)
    (raw,) = (l2_normalize(v) for v in inputs.values())  # the image model's one input
    with stopwatch() as seconds_emphasized:
        emphasized = predictor.embed(products, batch_size=ctx.sizes.batch_size, normalize=True,
                                     space=EMPHASIS)
    metrics = {"multi_task": evaluate(fused, owner, kinds),
               "emphasized": evaluate(emphasized, owner, kinds),
               "imagenet": evaluate(raw, owner, kinds),
               "intrinsic_dimension": _intrinsic(ctx, fused, raw)}
    mt, base = metrics["multi_task"], metrics["imagenet"]
    comparisons = []
    for key, label in (("multi_task", "multi-task vector"),
                       ("emphasized", f"multi-task vector, {EMPHASIS.describe()}")):
        vec = metrics[key]
        for protocol, what, detail in (
                ("same_product", "same-product retrieval MRR (In-Shop protocol)", ("p_at_1",)),
                ("attribute", "attribute retrieval MRR (same category and pattern)", ("p_at_1", "p_at_10"))):
            delta, se = paired(vec["reciprocal"][protocol], base["reciprocal"][protocol])
            shown = ", ".join(f"{k.replace('p_at_', 'P@')} {vec[protocol][k]:.3f} vs "
                              f"{base[protocol][k]:.3f}" for k in detail)
            comparisons.append(compare(
                f"{what}: {label}", sdk=vec[protocol]["mrr"], baseline=base[protocol]["mrr"],
                unit="MRR", sdk_label=label, baseline_label="ImageNet features", kind="delta",
                target=0.0, note=f"{shown}; paired difference {delta:+.3f} +- {se:.3f} (one SE)"))
    for vec in metrics.values():  # per-query arrays stay out of the JSON
        if isinstance(vec, dict):
            vec.pop("reciprocal", None)
    queries = mt["same_product"]["queries"]
    return result(
        NAME, TITLE, ctx,
        settings={"train_crop": ctx.sizes.train_crop, "epochs": ctx.sizes.mt_epochs,
                  "fusion": FUSION, "backbone": "efficientnet_lite0 (ImageNet weights)",
                  "strategy": STRATEGY,
                  "embedding_dim": predictor.embedding_dim,
                  "emphasized": {"space": EMPHASIS.model_dump(),
                                 "embedding_dim": predictor.dimension(EMPHASIS)},
                  "photos": len(products)},
        metrics={**metrics, "train_s": round(train_s, 1), "embed_s": round(seconds[0], 1),
                 "embed_emphasized_s": round(seconds_emphasized[0], 1)},
        comparisons=comparisons,
        size=f"{len(products)} test photos of {int(owner.max()) + 1} products "
             f"({queries} same-product queries)",
        noise=f"P@1 over {queries} queries: about +-{100 * 0.5 / max(1, queries) ** 0.5:.1f} points "
              "(one standard error at p=0.5)",
        notes=["Metrics in points of 0-1; a delta row is multi-task minus ImageNet (paired "
               "difference of reciprocal ranks over the same queries in the note).",
               f"emphasized: the same model's vector with {EMPHASIS.describe()} "
               "(fashion.model.space), the attributes the relevance is defined by.",
               "intrinsic_dimension: Levina-Bickel over the test photos' vectors, beside the "
               "search row's stand-in and random unit vectors at as many points.",
               "Each photo is its own query; the query photo is never in its gallery."],
    )
