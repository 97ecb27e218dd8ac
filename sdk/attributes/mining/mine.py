"""One mining run: read the products, gather the functions, vote, combine, count, explain.

:func:`mine_labels` is what ``fashion add-attribute NAME --from-text MANIFEST`` runs before it
trains (and all that ``--dry-run`` runs): the taxonomy's keyword functions, the rules file's,
every plugin function registered for NAME and any extra ones (zero-shot votes) vote on each
product; the label model (Dawid-Skene by default, ``majority`` as the baseline) combines the
votes; a product keeps its mined label when the combined confidence reaches ``min_confidence``.
Gold labels, when the manifest has a NAME column for some rows, only score the functions.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fashion.attributes.mining.functions import labelling_rows, taxonomy_functions
from fashion.attributes.mining.model import ABSTAIN, DawidSkene, majority_vote, vote_matrix
from fashion.attributes.mining.rules import load_rules, plugin_functions
from fashion.attributes.mining.stats import (
    FunctionStats,
    counts_table,
    function_stats,
    label_counts,
    stats_table,
)
from fashion.attributes.mining.zeroshot import ZERO_SHOT
from fashion.contract.labelling import LabellingFunction, LabellingRow
from fashion.errors import ConfigError, DataError, FashionError, PluginError

LabelModel = Literal["dawid-skene", "majority"]


@dataclass
class MiningResult:
    """What a mining run found (see the module docstring); :meth:`provenance` is what a
    published revision records."""

    attribute: str
    labels: list[str]
    label_model: str
    min_confidence: float
    functions: list[LabellingFunction]
    rows: list[LabellingRow]
    votes: np.ndarray  # (products, functions) label indices, -1 = abstain
    mined: list[str | None]  # per product, after min_confidence
    confidence: np.ndarray
    stats: list[FunctionStats]
    counts: dict[str, dict[str, Any]]
    gold: list[str | None] | None = None
    accuracy: list[float] | None = None  # the label model's estimate per function
    prior: list[float] | None = None
    warnings: list[str] = field(default_factory=list)
    rules: str | None = None  # the rules file's text
    suspects: list[Any] = field(default_factory=list)
    audit_note: str | None = None  # why the audit could not run
    audited: bool = False

    @property
    def mined_count(self) -> int:
        return sum(1 for m in self.mined if m is not None)

    @property
    def coverage(self) -> float:
        return self.mined_count / len(self.rows) if self.rows else 0.0

    def precision_on_gold(self) -> float | None:
        """Share of mined labels equal to the gold label, over products with both."""
        if self.gold is None:
            return None
        pairs = [(m, g) for m, g in zip(self.mined, self.gold, strict=True) if m and g]
        return sum(m == g for m, g in pairs) / len(pairs) if pairs else None

    def tables(self) -> list[Any]:
        return [stats_table(self.stats, f"labelling functions for {self.attribute} "
                            f"({len(self.rows)} products, label model: {self.label_model})"),
                counts_table(self.counts, self.labels)]

    def provenance(self) -> dict[str, Any]:
        return {
            "source": "mined from text" + (" and zero-shot prompts" if any(
                type(f).name == ZERO_SHOT for f in self.functions) else ""),
            "label_model": self.label_model,
            "min_confidence": self.min_confidence,
            "products": len(self.rows),
            "mined": self.mined_count,
            "functions": [f.describe() for f in self.functions],
            "statistics": [s.to_dict() for s in self.stats],
            "label_model_weights": {
                "accuracy": dict(zip([f.name for f in self.functions], self.accuracy or [], strict=False)),
                "prior": dict(zip(self.labels, self.prior or [], strict=False)),
            },
            "counts": self.counts,
            "rules": self.rules,
            "labels": [{"id": r.id, "label": m, "confidence": round(float(c), 4)}
                       for r, m, c in zip(self.rows, self.mined, self.confidence, strict=True) if m],
            "suspects": [s.to_dict() for s in self.suspects],
            "audit": self.audit_note,
            "warnings": self.warnings,
        }

    def write_manifest(self, path: Path, *, text_dropout: float = 1.0, seed: int = 0) -> tuple[Path, int]:
        """The mined products as a training manifest (absolute image paths, NAME = the mined
        label); the text of a ``text_dropout`` share of them is left empty (modality dropout:
        the image branch must learn what the text said). Returns the path and the number of rows
        written; a product with no photo whose text is dropped has nothing left and is skipped."""
        rng = random.Random(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "images", "title", "description", "brand", self.attribute])
            for row, label in zip(self.rows, self.mined, strict=True):
                if label is None:
                    continue
                drop = rng.random() < text_dropout
                if drop and not row.images:
                    continue
                text = {} if drop else row.text
                images = "|".join(str(Path(p).resolve()) for p in row.images)
                writer.writerow([row.id or "", images, text.get("title", ""),
                                 text.get("description", ""), text.get("brand", ""), label])
                written += 1
        return path, written


def gather_functions(attribute: str, labels: Sequence[str], synonyms: dict[str, str],
                     rules: Path | None, extra: Sequence[LabellingFunction] = ()) -> list[LabellingFunction]:
    """The taxonomy's keyword functions, the rules file's, plugin functions for ``attribute``
    and ``extra``; two functions with one name are refused."""
    functions = [*taxonomy_functions(attribute, labels, synonyms)]
    if rules is not None:
        functions += load_rules(rules, attribute, labels)
    functions += plugin_functions(attribute, labels)
    functions += list(extra)
    names = [f.name for f in functions]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two labelling functions are named {', '.join(twice)}; rename the rule(s).")
    if not functions:
        raise ConfigError(f"no labelling function for {attribute}: its labels have no vendor words; "
                          "add synonyms to its taxonomy or give --rules FILE.")
    return functions


def _gold(rows: Sequence[LabellingRow], attribute: str, labels: Sequence[str],
          synonyms: dict[str, str]) -> list[str | None] | None:
    from fashion.model.spec import AttributeSpec

    if not any(str(r.values.get(attribute) or "").strip() for r in rows):
        return None
    spec = AttributeSpec(labels=list(labels), synonyms=synonyms)
    return [spec.normalize(str(r.values.get(attribute))) if r.values.get(attribute) else None
            for r in rows]


def combine(L: np.ndarray, labels: Sequence[str], label_model: LabelModel,
            min_confidence: float) -> tuple[list[str | None], np.ndarray, DawidSkene | None]:
    """Mined label (or ``None``) and confidence per product, and the fitted label model."""
    k = len(labels)
    fitted = None
    if label_model == "majority":
        index, confidence = majority_vote(L, k)
    else:
        fitted = DawidSkene(k).fit(L)
        index, confidence = fitted.predict(L)
    mined = [labels[i] if i != ABSTAIN and c >= min_confidence else None
             for i, c in zip(index, confidence, strict=True)]
    return mined, confidence, fitted


def mine_labels(
    attribute: str, labels: Sequence[str], synonyms: dict[str, str], inputs: Sequence[Path], *,
    rules: Path | None = None, min_confidence: float = 0.7, label_model: LabelModel = "dawid-skene",
    extra_functions: Sequence[LabellingFunction] = (),
) -> MiningResult:
    """Vote, combine and count (module docstring). Warnings (a function that never votes, no
    product mined) are in ``result.warnings``; nothing is raised for them here."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence must be between 0 and 1, got {min_confidence}.")
    functions = gather_functions(attribute, labels, synonyms, rules, extra_functions)
    rows = labelling_rows(inputs)
    if not rows:
        raise DataError(f"{', '.join(map(str, inputs))} holds no product; nothing to mine.")
    columns = []
    for f in functions:
        try:
            votes = list(f.votes(rows))
        except FashionError:
            raise
        except Exception as exc:  # a plugin's function must say who failed
            raise PluginError(f"labelling function '{f.name}' ({type(f).name}) failed on "
                              f"{len(rows)} products: {type(exc).__name__}: {exc}") from exc
        if len(votes) != len(rows):
            raise DataError(f"labelling function '{f.name}' returned {len(votes)} votes for "
                            f"{len(rows)} products; it must vote (or abstain) once per product.")
        bad = sorted({v for v in votes if v is not None and v not in labels})
        if bad:
            raise ConfigError(f"labelling function '{f.name}' voted {bad}, not labels of {attribute} "
                              f"({', '.join(labels)}).")
        columns.append(votes)
    L = vote_matrix(columns, list(labels))
    mined, confidence, fitted = combine(L, labels, label_model, min_confidence)
    gold = _gold(rows, attribute, labels, synonyms)
    stats = function_stats(
        L, [f.name for f in functions], [type(f).name for f in functions], labels, gold,
        fitted.accuracy if fitted else None, fitted.weights() if fitted else None,
    )
    titles = [r.text.get("title") or r.id or r.where for r in rows]
    result = MiningResult(
        attribute, list(labels), label_model, min_confidence, functions, rows, L, mined,
        confidence, stats, label_counts(mined, titles), gold=gold,
        accuracy=fitted.accuracy.tolist() if fitted and fitted.accuracy is not None else None,
        prior=fitted.prior.tolist() if fitted and fitted.prior is not None else None,
        rules=rules.read_text(encoding="utf-8") if rules is not None else None,
    )
    for s in stats:
        if s.votes == 0:
            result.warnings.append(f"labelling function '{s.name}' ({s.kind}) voted on no product "
                                   "of the input: check its keywords, pattern and field.")
    if result.mined_count == 0:
        result.warnings.append(
            f"no product was mined for {attribute} (of {len(rows)}, at confidence >= "
            f"{min_confidence}): add rules (--rules) or lower --min-confidence.")
    return result


__all__ = ["LabelModel", "MiningResult", "combine", "gather_functions", "mine_labels"]
