"""The audit's rules side by side on the trust bench catalog: top-k recall / precision of the
flipped train labels per attribute (k = 1.5 x flipped), self-confidence vs cleanlab's filters.

``python -m benchmarks.audit_rankings [--profile full|quick] [--seed 0]``: the trust bench's
catalog (10% of train labels flipped) and model spec; the audit reads the frozen backbones'
features, not the heads, so nothing is trained. The cross-fitted probabilities are computed once
and every rule ranks the same ones. Prints one markdown row per rule.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import trust
from .common import (
    ATTRIBUTES,
    DATASETS,
    PROFILES,
    Context,
    build_model,
    dataset_config,
    quiet_libraries,
)

FILTERS = ("prune_by_noise_rate", "both", "confident_learning")
SCORES = ("self_confidence", "normalized_margin")


def main(argv: Sequence[str] | None = None) -> None:
    from fashion.training.data import label_normalizers, load_dataset
    from fashion.trust import audit

    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_rankings", description=__doc__)
    parser.add_argument("--profile", choices=["full", "quick"], default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fashion-bench")
    args = parser.parse_args(argv)
    quiet_libraries()
    ctx = Context(sizes=PROFILES[args.profile], out=args.work, work=args.work, device=torch.device("cpu"),
                  threads=torch.get_num_threads(), seed=args.seed)
    size = trust.sizes(ctx)
    catalog = trust._catalog(ctx, size)
    model = build_model(trust._spec(ctx, size, ATTRIBUTES), args.seed).eval()
    normalizers = label_normalizers(model)
    datasets = [load_dataset(dataset_config(catalog, d, "train"), model, normalizers=normalizers,
                             verify_images=False) for d in DATASETS]
    started = time.perf_counter()
    with torch.no_grad():
        scores = audit.audit_scores(model, datasets)
    print(f"{catalog}: cross-fitted probabilities in {time.perf_counter() - started:.0f} s")
    with (catalog / "label_noise.csv").open(encoding="utf-8", newline="") as f:
        flipped = {(r["id"], r["attribute"]) for r in csv.DictReader(f)}
    print("| rule | " + " | ".join(ATTRIBUTES) + " | all flipped in top-k |")
    print("|---" * (len(ATTRIBUTES) + 2) + "|")
    rules = [("self-confidence", None, None)] + [("cleanlab", f, s) for f in FILTERS for s in SCORES]
    for ranking, filter_by, score in rules:
        if filter_by:
            audit.CLEANLAB_FILTER, audit.CLEANLAB_SCORE = filter_by, score
        suspects = audit.rank_suspects(model, scores, ranking)
        cells, found_all = [], 0
        for a in ATTRIBUTES:
            truth = {key for key in flipped if key[1] == a}
            listed = [(s.id, s.attribute) for s in suspects if s.attribute == a]
            top = listed[: round(1.5 * len(truth))]
            found = len(set(top) & truth)
            found_all += found
            cells.append(f"{found / len(truth):.3f} / {found / max(1, len(top)):.3f} ({len(listed)})")
        name = ranking if not filter_by else f"cleanlab {filter_by}, {score}"
        print(f"| {name} | " + " | ".join(cells) + f" | {found_all} / {len(flipped)} |")


if __name__ == "__main__":
    main()
