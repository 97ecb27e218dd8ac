"""Labels mined from vendor text: how precise, how many, and how good a head they train.

The catalog's sleeved products get vendor claims about ``sleeve_length``
(:func:`fashion.catalog.claims.write_claims`: about half mention it, in five languages and
vendor slang, with negations, care tails and 12% wrong claims; the generator knows the truth).
Mining runs on the train split twice, with the taxonomy's keyword functions alone and with a
rules file for the slang, each combined by the Dawid-Skene label model and by majority vote;
precision (against the truth) and coverage (share of products labeled) are reported for each.

Then the head add-attribute trains (head-only: a linear classifier over frozen features) is
trained on the photos alone (the text masked, as ``--from-text`` trains it) twice: from the
mined labels, and from the same number of gold labels (random train products). Both are scored
on the test products whose text does not mention the attribute. Target: mined >= 80% of gold.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from .common import Context, build_model, compare, load_products, model_spec

NAME = "mining"
TITLE = "add-attribute --from-text: mined labels vs gold labels"
ATTRIBUTE = "sleeve_length"
RULES = """
[[rule]]
name = "slang-sleeveless"
label = "sleeveless"
keywords = ["muscle tee", "racerback"]
field = "title"

[[rule]]
name = "slang-short"
label = "short"
keywords = ["elbow grazing sleeves"]
field = "description"

[[rule]]
name = "slang-long"
label = "long"
keywords = ["cuffed sleeves", "thumbhole sleeves"]
field = "description"
"""


def _fit_head(x: torch.Tensor, y: torch.Tensor, classes: int, seed: int) -> torch.nn.Linear:
    """The linear head, trained to convergence (LBFGS, light weight decay) on standardized features."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def measure(catalog: Path, *, crop: int, text_model: str | None, seed: int = 0, repeats: int = 3,
            log: Any = print) -> dict[str, Any]:
    from fashion.attributes.config import AddAttributeConfig
    from fashion.attributes.labels import resolve_labels
    from fashion.attributes.mining.mine import mine_labels
    from fashion.catalog.claims import read_truth, write_claims
    from fashion.trust.features import encode_products

    paths = write_claims(catalog, ATTRIBUTE, dataset=None, seed=seed)
    truth = read_truth(paths["truth"])
    rules = paths["truth"].parent / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    labels, synonyms, _ = resolve_labels(ATTRIBUTE, AddAttributeConfig.parse({"project_dir": paths["truth"].parent}))

    runs: dict[str, Any] = {}
    for functions, rules_file in (("taxonomy", None), ("taxonomy+rules", rules)):
        for model in ("dawid-skene", "majority"):
            mined = mine_labels(ATTRIBUTE, labels, synonyms, [paths["train"]], rules=rules_file,
                                label_model=model)  # type: ignore[arg-type]
            pairs = [(m, truth[r.id or ""]["truth"]) for r, m in zip(mined.rows, mined.mined, strict=True) if m]
            runs[f"{functions}, {model}"] = {
                "precision": round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else 0.0,
                "coverage": round(mined.coverage, 4), "mined": mined.mined_count,
                "products": len(mined.rows),
                "mentioned": sum(truth[r.id or ""]["mentioned"] == "1" for r in mined.rows),
                "result": mined,
            }
            log(f"  mining ({functions}, {model}): precision {runs[f'{functions}, {model}']['precision']}, "
                f"coverage {mined.coverage:.3f}")

    # the head on the photos alone: image features of an image-only model (frozen backbone)
    model = build_model(model_spec(crop=crop, text_model=text_model, attributes=[ATTRIBUTE], text=False), seed)
    train = load_products([paths["train"]])
    test = load_products([paths["test"]])
    silent = [p for p in test if truth[p.id]["mentioned"] == "0"]
    log(f"  encoding {len(train)} train and {len(silent)} text-silent test products")

    def photos(products: list[Any]) -> torch.Tensor:
        for p in products:
            p.title = p.description = p.brand = None  # the text masked
        encoded = encode_products(model, products)
        return torch.cat([encoded.features[k] for k in sorted(encoded.features)], dim=1)

    x_train, x_test = photos(train), photos(silent)
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    index = {label: k for k, label in enumerate(labels)}
    y_test = torch.tensor([index[truth[p.id]["truth"]] for p in silent])
    row_of = {p.id: i for i, p in enumerate(train)}

    def accuracy(rows: list[int], ys: list[int], s: int) -> float:
        head = _fit_head(x_train[rows], torch.tensor(ys), len(labels), s)
        with torch.no_grad():
            return float((head(x_test).argmax(1) == y_test).float().mean())

    heads: dict[str, Any] = {}
    if len({m for m in runs["taxonomy+rules, dawid-skene"]["result"].mined if m}) < 2 or not silent:
        for run in runs.values():  # (smoke sizes: too few products to train and score a head)
            run.pop("result")
        empty = {"rows": 0, "accuracy": 0.0}
        return {"mining": runs, "heads": {k: empty for k in ("taxonomy+rules, dawid-skene", "gold")},
                "silent_test": len(silent), "train": len(train)}
    for key in ("taxonomy+rules, dawid-skene", "taxonomy+rules, majority", "taxonomy, dawid-skene"):
        mined = runs[key]["result"]
        rows = [row_of[r.id] for r, m in zip(mined.rows, mined.mined, strict=True) if m]
        ys = [index[m] for m in mined.mined if m]
        heads[key] = {"rows": len(rows), "accuracy": round(sum(accuracy(rows, ys, seed + k) for k in range(repeats)) / repeats, 4)}
    n = heads["taxonomy+rules, dawid-skene"]["rows"]
    gold = []
    for k in range(repeats):
        rows = random.Random(seed + k).sample(range(len(train)), n)
        gold.append(accuracy(rows, [index[truth[train[i].id]["truth"]] for i in rows], seed + k))
    heads["gold"] = {"rows": n, "accuracy": round(sum(gold) / len(gold), 4), "each": [round(g, 4) for g in gold]}
    log(f"  heads on text-silent test products: {heads}")
    for run in runs.values():
        run.pop("result")
    return {"mining": runs, "heads": heads, "silent_test": len(silent), "train": len(train)}


def run(ctx: Context) -> dict[str, Any]:
    from .common import result

    s = ctx.sizes
    out = measure(ctx.catalog(), crop=s.train_crop, text_model=ctx.text_model(), seed=ctx.seed,
                  repeats=1 if s.profile == "smoke" else 3, log=ctx.log)
    return result(NAME, TITLE, ctx, settings={"attribute": ATTRIBUTE, "crop": s.train_crop,
                                              "head": "linear on frozen image features"},
                  metrics=out, comparisons=comparisons(out), notes=notes(out),
                  size=f"{out['train']} train products, {out['silent_test']} text-silent test products",
                  noise="gold heads: mean of 3 random subsamples (1 in smoke)")


def comparisons(out: dict[str, Any]) -> list[dict[str, Any]]:
    heads, mining = out["heads"], out["mining"]
    ds, mv = mining["taxonomy+rules, dawid-skene"], mining["taxonomy+rules, majority"]
    return [
        compare("text-silent accuracy: head from mined labels / head from as many gold labels",
                sdk=heads["taxonomy+rules, dawid-skene"]["accuracy"], baseline=heads["gold"]["accuracy"],
                unit="accuracy", sdk_label="mined", baseline_label="gold", target=0.8),
        compare("mined-label precision: Dawid-Skene minus majority vote",
                sdk=ds["precision"], baseline=mv["precision"], unit="precision", kind="delta",
                sdk_label="dawid-skene", baseline_label="majority", target=0.0),
        compare("mined-label coverage: Dawid-Skene / majority vote", sdk=ds["coverage"],
                baseline=mv["coverage"], unit="coverage", sdk_label="dawid-skene",
                baseline_label="majority"),
    ]


def notes(out: dict[str, Any]) -> list[str]:
    return [f"{k}: precision {v['precision']}, coverage {v['coverage']} ({v['mined']} of "
            f"{v['products']} products; {v['mentioned']} mention the attribute)"
            for k, v in out["mining"].items()]
