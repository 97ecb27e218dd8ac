"""Evaluation: per-attribute accuracy, macro-F1, per-class precision/recall/F1, confusion matrices.

:func:`evaluate` runs a model over labeled datasets and returns an :class:`EvaluationReport`
(JSON-able with :meth:`~EvaluationReport.to_dict`, printable as a rich table, savable with PNG
confusion matrices). Only the attributes a dataset labels are scored on it; unlabeled cells
are left out. Predictions are the arg-max label (abstain thresholds are not applied), so the
numbers describe the classifier itself. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fashion.model.network import FashionModel
from fashion.training.config import DatasetConfig
from fashion.training.data import DataReport, LabeledDataset, load_dataset
from fashion.training.loader import BatchCollator, iterate_steps


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "f1": round(self.f1, 6),
            "support": self.support,
        }


@dataclass
class AttributeMetrics:
    """Scores of one attribute. ``confusion[i][j]``: true label i predicted as j (single-label)."""

    attribute: str
    labels: list[str]
    accuracy: float
    macro_f1: float
    support: int
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]] | None
    multilabel: bool = False
    loss: float | None = None
    """Mean loss per scored row (cross-entropy; multilabel: binary cross-entropy averaged over
    labels) of the raw logits: the validation loss curve of training."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 6),
            "macro_f1": round(self.macro_f1, 6),
            "support": self.support,
            "multilabel": self.multilabel,
            "labels": self.labels,
            "per_class": {k: v.to_dict() for k, v in self.per_class.items()},
            "confusion": self.confusion,
        } | ({"loss": round(self.loss, 6)} if self.loss is not None else {})


class AttributeCounts:
    """Running counts for one attribute (on the model's device; read once at the end)."""

    def __init__(self, labels: Sequence[str], multilabel: bool, thresholds: Tensor | None = None) -> None:
        self.labels = list(labels)
        self.multilabel = multilabel
        self.thresholds = thresholds
        n = len(self.labels)
        self.counts: Tensor | None = None  # (n, n) confusion, or (4, n) tp/fp/fn/exact
        self.loss_sum: Tensor | None = None  # summed per-row loss (read once at the end)
        self.n = n

    def _zeros(self, device: torch.device) -> Tensor:
        shape = (4, self.n) if self.multilabel else (self.n, self.n)
        return torch.zeros(shape, dtype=torch.long, device=device)

    def update(self, logits: Tensor, targets: Tensor, mask: Tensor) -> None:
        device = logits.device
        if self.counts is None:
            self.counts = self._zeros(device)
        mask = mask.to(device)
        targets = targets.to(device)[mask]
        logits = logits[mask]
        if logits.shape[0]:
            if self.multilabel:
                loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none").mean(1).sum()
            else:
                loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            self.loss_sum = loss.detach() if self.loss_sum is None else self.loss_sum + loss.detach()
        if self.multilabel:
            thresholds = (self.thresholds if self.thresholds is not None else torch.full((self.n,), 0.5))
            pred = logits.float().sigmoid() >= thresholds.to(device)
            truth = targets > 0.5
            self.counts[0] += (pred & truth).sum(0)
            self.counts[1] += (pred & ~truth).sum(0)
            self.counts[2] += (~pred & truth).sum(0)
            self.counts[3, 0] += (pred == truth).all(dim=1).sum()
            self.counts[3, 1] += truth.shape[0]
        else:
            pred = logits.argmax(dim=-1)
            flat = targets * self.n + pred
            self.counts += torch.bincount(flat, minlength=self.n * self.n).view(self.n, self.n)

    def merge(self, other: AttributeCounts) -> None:
        if other.counts is None:
            return
        if self.counts is None:
            self.counts = other.counts.clone()
        else:
            self.counts += other.counts.to(self.counts.device)
        if other.loss_sum is not None:
            theirs = other.loss_sum.to(self.counts.device)
            self.loss_sum = theirs.clone() if self.loss_sum is None else self.loss_sum + theirs

    def metrics(self, attribute: str) -> AttributeMetrics:
        counts = (self.counts if self.counts is not None else self._zeros(torch.device("cpu"))).cpu()
        if self.multilabel:
            tp, fp, fn = counts[0].double(), counts[1].double(), counts[2].double()
            support = (tp + fn).long()
            predicted = tp + fp
            rows = int(counts[3, 1])
            accuracy = float(counts[3, 0]) / rows if rows else 0.0
            confusion = None
        else:
            tp = counts.diag().double()
            support = counts.sum(1)
            predicted = counts.sum(0).double()
            rows = int(counts.sum())
            accuracy = float(tp.sum()) / rows if rows else 0.0
            confusion = counts.tolist()
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
        recall = torch.where(support > 0, tp / support.double().clamp(min=1), torch.zeros_like(tp))
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
        active = (support > 0) | (predicted > 0)
        macro = float(f1[active].mean()) if bool(active.any()) else 0.0
        per_class = {
            label: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, label in enumerate(self.labels)
        }
        loss = float(self.loss_sum) / rows if self.loss_sum is not None and rows else None
        return AttributeMetrics(attribute, self.labels, accuracy, macro, rows, per_class, confusion,
                                self.multilabel, loss)


def new_counts(model: FashionModel, attribute: str) -> AttributeCounts:
    task = model.task(attribute)
    thresholds = task.label_thresholds() if hasattr(task, "label_thresholds") else None
    return AttributeCounts(task.labels, bool(task.multilabel), thresholds)


# ------------------------------------------------------------------------------- reports


@dataclass
class EvaluationReport:
    """Metrics per attribute (all datasets together) and per dataset, plus the data reports."""

    attributes: dict[str, AttributeMetrics]
    per_dataset: dict[str, dict[str, AttributeMetrics]] = field(default_factory=dict)
    data: list[DataReport] = field(default_factory=list)
    trust: Any = None
    """A :class:`fashion.trust.TrustReport`: ECE before/after calibration, precision/coverage at
    the abstention threshold, applicability (``evaluate`` on a calibrated or scoped model)."""

    @property
    def mean_macro_f1(self) -> float:
        """The mean of the attributes' macro-F1 (the model-selection score of training)."""
        if not self.attributes:
            return 0.0
        return sum(m.macro_f1 for m in self.attributes.values()) / len(self.attributes)

    @property
    def mean_accuracy(self) -> float:
        if not self.attributes:
            return 0.0
        return sum(m.accuracy for m in self.attributes.values()) / len(self.attributes)

    def summary(self) -> dict[str, Any]:
        """The short form kept in training histories: accuracy and macro-F1 per attribute."""
        return {
            "mean_macro_f1": round(self.mean_macro_f1, 6),
            "attributes": {
                a: {"accuracy": round(m.accuracy, 6), "macro_f1": round(m.macro_f1, 6), "support": m.support}
                | ({"loss": round(m.loss, 6)} if m.loss is not None else {})
                for a, m in self.attributes.items()
            },
        }

    @property
    def mean_loss(self) -> float | None:
        """The mean over attributes of their mean validation loss (``None``: nothing scored)."""
        losses = [m.loss for m in self.attributes.values() if m.loss is not None]
        return sum(losses) / len(losses) if losses else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_macro_f1": round(self.mean_macro_f1, 6),
            "mean_accuracy": round(self.mean_accuracy, 6),
            "attributes": {a: m.to_dict() for a, m in self.attributes.items()},
            "datasets": {
                name: {
                    a: {"accuracy": round(m.accuracy, 6), "macro_f1": round(m.macro_f1, 6), "support": m.support}
                    for a, m in metrics.items()
                }
                for name, metrics in self.per_dataset.items()
            },
            "data": [
                {k: v for k, v in r.to_dict().items() if k != "problems"} | {"problems": len(r.problems)}
                for r in self.data
            ],
        } | ({"trust": self.trust.summary()} if self.trust is not None else {})

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def table(self, title: str = "evaluation") -> Any:
        """A rich table: one row per attribute, under ``title`` (the split it scores)."""
        from rich.table import Table

        table = Table(title=f"{title} (mean macro-F1 {self.mean_macro_f1:.3f})")
        for column in ("attribute", "n", "accuracy", "macro-F1", "weakest class (F1)"):
            table.add_column(column, justify="left" if column in ("attribute", "weakest class (F1)") else "right")
        for name, m in self.attributes.items():
            scored = [(c.f1, label) for label, c in m.per_class.items() if c.support > 0]
            weakest = min(scored)[1] if scored else "-"
            weakest_text = f"{weakest} ({m.per_class[weakest].f1:.2f})" if scored else "-"
            table.add_row(name, str(m.support), f"{m.accuracy:.3f}", f"{m.macro_f1:.3f}", weakest_text)
        return table

    def class_table(self, attribute: str) -> Any:
        """A rich table of one attribute's per-class precision, recall, F1 and support."""
        from rich.table import Table

        m = self.attributes[attribute]
        table = Table(title=f"{attribute}: per class")
        for column in ("label", "precision", "recall", "F1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label, c in m.per_class.items():
            table.add_row(label, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support))
        return table

    def print(self, console: Any | None = None) -> None:
        from rich.console import Console

        (console or Console()).print(self.table())

    def plot_confusion(self, attribute: str, path: str | Path) -> Path:
        """Write the attribute's confusion matrix (row-normalized colors, counts written) as PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        m = self.attributes[attribute]
        if m.confusion is None:
            raise ValueError(f"attribute {attribute!r} is multilabel: it has no confusion matrix")
        counts = torch.tensor(m.confusion, dtype=torch.float64)
        rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
        n = len(m.labels)
        size = max(4.0, 0.55 * n + 2.0)
        figure = Figure(figsize=(size, size * 0.9))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        axes.set_xticks(range(n), m.labels, rotation=45, ha="right")
        axes.set_yticks(range(n), m.labels)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        # two short lines: one long line ran past the figure's edge on small matrices
        axes.set_title(f"{attribute}\naccuracy {m.accuracy:.3f}, macro-F1 {m.macro_f1:.3f}", fontsize=10)
        for i in range(n):
            for j in range(n):
                value = int(counts[i, j])
                if value:
                    axes.text(j, i, str(value), ha="center", va="center",
                              color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
        figure.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        return path

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``metrics.json`` and ``confusion_<attribute>.png`` files; returns their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json(directory / "metrics.json")
        written = [directory / "metrics.json"]
        for attribute, m in self.attributes.items():
            if m.confusion is not None:
                written.append(self.plot_confusion(attribute, directory / f"confusion_{attribute}.png"))
        if self.trust is not None:  # trust_<split>.json, reliability and coverage diagrams
            written += self.trust.save(directory)
        return written


# ---------------------------------------------------------------------------- running


def score_datasets(
    model: FashionModel,
    datasets: Sequence[LabeledDataset],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    features: Sequence[Any | None] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> tuple[dict[str, AttributeMetrics], dict[str, dict[str, AttributeMetrics]]]:
    """Run the model (eval mode, no gradients) and count; ``features``: cached features per dataset.
    ``on_rows(n)`` is called as each batch of ``n`` rows is scored (progress)."""
    was_training = model.training
    model.eval()
    device = model.device
    overall: dict[str, AttributeCounts] = {}
    per_dataset: dict[str, dict[str, AttributeMetrics]] = {}
    try:
        with torch.inference_mode():
            for d, dataset in enumerate(datasets):
                if not dataset.targets:
                    dataset.encode(model)
                counts = {a: new_counts(model, a) for a in dataset.attributes}
                rows = list(range(len(dataset)))
                steps = [((d, rows[i : i + batch_size]),) for i in range(0, len(rows), batch_size)]
                cached = features[d] if features is not None else None
                if cached is not None:
                    for ((_, part),) in steps:
                        index = torch.tensor(part)
                        gathered = cached.gather(index.to(device))
                        with autocast() if autocast else contextlib.nullcontext():
                            feats, masks = gathered.resolve(model)
                            logits = model.head_logits(feats, masks, dataset.attributes)
                        for a in dataset.attributes:
                            t, m = dataset.targets[a]
                            counts[a].update(logits[a], t.index_select(0, index), m.index_select(0, index))
                        if on_rows is not None:
                            on_rows(len(part))
                else:
                    collate = BatchCollator(model, datasets)
                    for parts in iterate_steps(steps, collate, num_workers):
                        for _, batch, targets in parts:
                            with autocast() if autocast else contextlib.nullcontext():
                                logits = model(batch, dataset.attributes)
                            for a, (t, m) in targets.items():
                                counts[a].update(logits[a], t, m)
                            if on_rows is not None:
                                on_rows(batch.size)
                per_dataset[dataset.name] = {a: c.metrics(a) for a, c in counts.items()}
                for a, c in counts.items():
                    overall.setdefault(a, new_counts(model, a)).merge(c)
    finally:
        model.train(was_training)
    attributes = {a: overall[a].metrics(a) for a in model.attributes if a in overall}
    return attributes, per_dataset


def _as_dataset_config(item: Any, split: str) -> DatasetConfig:
    if isinstance(item, DatasetConfig):
        return item
    if isinstance(item, Mapping):
        return DatasetConfig.model_validate(dict(item))
    path = Path(item)
    return DatasetConfig(name=path.stem if path.is_file() else path.name, path=path, split=split)


def evaluate(
    model: FashionModel,
    datasets: Iterable[LabeledDataset | DatasetConfig | str | Path | Mapping[str, Any]],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    split: str = "test",
    taxonomies: str | Path | None = None,
    on_unknown_label: Literal["error", "skip"] = "skip",
    on_bad_row: Literal["error", "skip"] = "skip",
    plots_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    trust: bool | None = None,
) -> EvaluationReport:
    """Score ``model`` on labeled datasets (manifest paths, dataset folders, configs or loaded).

    A folder means ``<folder>/<split>.csv`` (``split`` defaults to ``test``). Unknown labels and
    bad rows are skipped and listed in ``report.data`` (pass ``on_unknown_label="error"`` to
    stop instead). With ``plots_dir``, ``metrics.json`` and confusion-matrix PNGs are written
    there. ``device`` moves the model first (default: where it is). ``trust`` (default: when
    an attribute has a calibration, abstention threshold or ``applies_to``) adds
    ``report.trust``: ECE before/after calibration, precision and coverage at the abstention
    threshold and applicability scores (``fashion.trust``, docs/trust.md), with reliability
    diagrams among the plots.
    """
    if device is not None:
        model.to("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    loaded: list[LabeledDataset] = []
    normalizers = None
    for item in datasets:
        if isinstance(item, LabeledDataset):
            loaded.append(item)
            continue
        if normalizers is None:
            from fashion.training.data import label_normalizers

            normalizers = label_normalizers(model, taxonomies)
        loaded.append(
            load_dataset(
                _as_dataset_config(item, split), model, normalizers=normalizers,
                on_unknown_label=on_unknown_label, on_bad_row=on_bad_row,
            )
        )
    from fashion._util.progress import progress

    with progress("evaluate", total=sum(len(d) for d in loaded)) as bar:
        attributes, per_dataset = score_datasets(
            model, loaded, batch_size=batch_size, num_workers=num_workers, on_rows=bar.update
        )
    report = EvaluationReport(attributes, per_dataset, [d.report for d in loaded])
    if trust is None:
        trust = any(s.calibration or s.abstention or s.applies_to for s in model.spec.attributes.values())
    if trust:
        from fashion.trust.fit import assess_applicability, assess_trust, collect_outputs

        report.trust = assess_trust(model, collect_outputs(model, loaded, batch_size=batch_size), split=split)
        report.trust.applicability = assess_applicability(model, loaded, batch_size=batch_size)
    if plots_dir is not None:
        report.save(plots_dir)
    return report


__all__ = [
    "AttributeCounts",
    "AttributeMetrics",
    "ClassMetrics",
    "EvaluationReport",
    "evaluate",
    "score_datasets",
]
