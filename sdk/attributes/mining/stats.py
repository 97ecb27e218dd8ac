"""What a team reads before trusting mined labels: per-function statistics and label counts.

Per labelling function, over the products of the run:

- ``coverage``: share of products it votes on;
- ``overlaps``: share of products it votes on where another function votes too;
- ``conflicts``: share of products it votes on where another function votes a different label;
- ``accuracy`` (gold): share of its votes equal to the gold label, on the products with a gold
  label (``None`` without gold), with ``gold_votes`` the number of such votes;
- ``estimated_accuracy`` and ``weight``: the label model's estimate and vote weight.

A function that never votes is listed with a warning: a rule that matches nothing (a regex
with a typo, a field that does not exist) does nothing, and says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fashion.attributes.mining.model import ABSTAIN


@dataclass
class FunctionStats:
    name: str
    kind: str
    votes: int
    coverage: float
    overlaps: float
    conflicts: float
    accuracy: float | None = None
    gold_votes: int = 0
    estimated_accuracy: float | None = None
    weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def function_stats(
    L: np.ndarray, names: Sequence[str], kinds: Sequence[str], labels: Sequence[str],
    gold: Sequence[str | None] | None = None, estimated: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> list[FunctionStats]:
    """The statistics of each function (columns of ``L``, named ``names``)."""
    n, m = L.shape
    voted = L != ABSTAIN
    gold_index = None
    if gold is not None:
        index = {label: k for k, label in enumerate(labels)}
        gold_index = np.array([index.get(g, ABSTAIN) if g else ABSTAIN for g in gold])
    out = []
    for j in range(m):
        mine = voted[:, j]
        others = np.delete(voted, j, axis=1).any(1) if m > 1 else np.zeros(n, dtype=bool)
        other_labels = np.delete(L, j, axis=1)
        conflict = np.array([
            bool(mine[i]) and any(v != ABSTAIN and v != L[i, j] for v in other_labels[i])
            for i in range(n)
        ]) if n else np.zeros(0, dtype=bool)
        count = int(mine.sum())
        stats = FunctionStats(
            name=names[j], kind=kinds[j], votes=count, coverage=count / n if n else 0.0,
            overlaps=float((mine & others).sum() / count) if count else 0.0,
            conflicts=float(conflict.sum() / count) if count else 0.0,
        )
        if gold_index is not None:
            scored = mine & (gold_index != ABSTAIN)
            stats.gold_votes = int(scored.sum())
            if stats.gold_votes:
                stats.accuracy = float((L[scored, j] == gold_index[scored]).mean())
        if estimated is not None:
            stats.estimated_accuracy = float(estimated[j])
        if weights is not None:
            stats.weight = float(weights[j])
        out.append(stats)
    return out


def label_counts(mined: Sequence[str | None], titles: Sequence[str],
                 examples: int = 3) -> dict[str, dict[str, Any]]:
    """Per mined label: how many products got it and the first ``examples`` titles."""
    counts = Counter(label for label in mined if label is not None)
    out: dict[str, dict[str, Any]] = {}
    for label, count in counts.most_common():
        shown = [t for t, m in zip(titles, mined, strict=True) if m == label][:examples]
        out[label] = {"count": count, "examples": shown}
    return out


def stats_table(stats: Sequence[FunctionStats], title: str = "labelling functions") -> Any:
    """The statistics as a rich table."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("function", "kind", "votes", "coverage", "overlaps", "conflicts",
                   "gold acc.", "est. acc.", "weight"):
        table.add_column(column, justify="left" if column in ("function", "kind") else "right")
    for s in stats:
        gold = f"{s.accuracy:.3f} ({s.gold_votes})" if s.accuracy is not None else "-"
        table.add_row(
            s.name, s.kind, str(s.votes), f"{s.coverage:.3f}", f"{s.overlaps:.3f}",
            f"{s.conflicts:.3f}", gold,
            "-" if s.estimated_accuracy is None else f"{s.estimated_accuracy:.3f}",
            "-" if s.weight is None else f"{s.weight:.2f}",
        )
    return table


def counts_table(counts: dict[str, dict[str, Any]], labels: Sequence[str]) -> Any:
    """The mined label counts (every label, 0 included) with example titles, as a rich table."""
    from rich.table import Table

    table = Table(title="mined labels")
    table.add_column("label")
    table.add_column("products", justify="right")
    table.add_column("examples")
    for label in labels:
        entry = counts.get(label, {"count": 0, "examples": []})
        table.add_row(label, str(entry["count"]), " | ".join(entry["examples"]))
    return table


__all__ = ["FunctionStats", "counts_table", "function_stats", "label_counts", "stats_table"]
