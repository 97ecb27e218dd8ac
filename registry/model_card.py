"""The bundle's README.md: a Hugging Face model card built with ``huggingface_hub.ModelCard``.

The metadata (``library_name``, ``tags``, ``model-index`` with one result per attribute metric)
goes through ``ModelCardData`` and ``EvalResult``, which validate it, so the Hub reads the card.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fashion.registry.bundle_format import BundleIndex

METRICS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
"""The per-attribute scores a card reports (counts, labels and confusion matrices are not)."""


def _scores(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if k in METRICS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _splits(index: BundleIndex) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"validation": {attribute: metrics}, "test": {...}}``: the bundle's ``metrics`` are
    scored on validation data; ``provenance.test_metrics`` (when recorded) on held-out test data."""
    test = getattr(index.provenance, "test_metrics", None) or {}
    return {name: m for name, m in (("validation", index.metrics), ("test", test)) if m}


def model_name(index: BundleIndex) -> str:
    """The model's name: ``provenance.name`` (the URI it is published under, without a scheme),
    else one made from its attributes."""
    name = getattr(index.provenance, "name", None)
    if name:
        return str(name).split("://", 1)[-1].split("@", 1)[0]
    return "fashion-" + "-".join(index.attributes) if index.attributes else "fashion-model"


def _card_data(index: BundleIndex) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    results = [
        EvalResult(
            task_type="image-classification",
            task_name=f"{attribute} classification",
            dataset_type=f"fashion-{split}",
            dataset_name=_data_names(index, split) or split,
            dataset_split=split,
            metric_type=metric,
            metric_value=value,
            metric_name=f"{attribute} {METRICS[metric]} ({split})",
        )
        for split, metrics in _splits(index).items()
        for attribute, values in metrics.items()
        for metric, value in _scores(values).items()
    ]
    tags = ["fashion", "product-attributes", "multi-task"]
    tags += [f"attribute:{a}" for a in index.attributes]
    return ModelCardData(
        library_name="fashion",
        tags=tags,
        model_name=model_name(index) if results else None,
        eval_results=results or None,
    )


def _data_names(index: BundleIndex, split: str) -> str:
    key = {"validation": "validation", "test": "test"}[split]
    entries = getattr(index.provenance, key, None) or []
    return ", ".join(str(d.get("name")) for d in entries if isinstance(d, Mapping) and d.get("name"))


def _load_uri(index: BundleIndex) -> str | None:
    name = getattr(index.provenance, "name", None)
    if not name:
        return None
    name = str(name)
    if "://" not in name:
        name = f"local://{name}"
    return name if name.startswith("hf://") or "@" in name else f"{name}@latest"


def _example(index: BundleIndex) -> str:
    """A product title made of labels the model knows ("red striped dress")."""
    words = [entry.labels[0].replace("_", " ") for entry in index.attributes.values() if entry.labels]
    return " ".join(words[:4]) or "Red cotton shirt"


RELIABILITY = ".reliability"
"""Suffix of a plot key (and of its file under ``plots/``) holding an attribute's reliability
diagram; a key without it is the attribute's confusion matrix."""


def reliability_key(attribute: str) -> str:
    """The plot key of ``attribute``'s reliability diagram: ``color.reliability``."""
    return attribute + RELIABILITY


def plot_key(stem: str) -> str:
    """The plot key for a run's PNG named ``stem``: ``confusion_color`` -> ``color``,
    ``reliability_color`` -> ``color.reliability``; a bundle's own ``plots/`` stems pass through."""
    if stem.startswith("reliability_"):
        return reliability_key(stem.removeprefix("reliability_"))
    return stem.removeprefix("confusion_")


def plot_files(paths: Iterable[Path]) -> dict[str, Path]:
    """``save_bundle``'s ``plots`` mapping for PNG files, keyed by :func:`plot_key`."""
    return {plot_key(p.stem): p for p in paths}


def _body(index: BundleIndex, plots: Mapping[str, str] | None) -> list[str]:
    attributes = list(index.attributes)
    uri = _load_uri(index)
    where = (f'"{uri}"' if uri else '"path/to/this/bundle"  # this folder, or the URI it is published under')
    lines = [f"# {model_name(index)}", "",
             f"A fashion product-attribute model: predicts {', '.join(attributes) or 'no attributes yet'} "
             "from product photos and text. Load it with:", "", "```python",
             "from fashion import Predictor", "",
             f"predictor = Predictor.from_pretrained({where})",
             f'print(predictor.predict([{{"title": "{_example(index)}"}}]))',
             "```", "",
             'A product is a mapping with `images` (a list of paths or URLs) and/or `title` and '
             "`description`.", "", "## Attributes", "", "| attribute | labels | head | threshold |",
             "|---|---|---|---|"]
    for a, entry in index.attributes.items():
        labels = ", ".join(entry.labels[:12]) + (" …" if len(entry.labels) > 12 else "")
        lines.append(f"| {a} | {labels} | {entry.head.name} | {entry.threshold} |")
    lines += _trust_section(index, plots or {})
    lines += ["", "## Components", "", "| path | component | plugin distribution |", "|---|---|---|"]
    for path, c in index.components.items():
        dist = f"{c.distribution} {c.version or ''}".strip() if c.distribution else "(not packaged)"
        lines.append(f"| {path} | {c.name} | {dist} |")
    splits = _splits(index)
    if splits:
        header = [f"{split} {label}" for split in splits for label in METRICS.values()]
        lines += ["", "## Metrics", "",
                  "Scored with the kept weights; validation data chose them (best epoch), test "
                  "data was held out from training and model selection.", "",
                  "| attribute | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
        for attribute in dict.fromkeys(a for m in splits.values() for a in m):
            cells = []
            for metrics in splits.values():
                scores = _scores(metrics.get(attribute) or {})
                cells += [f"{scores[k]:.3f}" if k in scores else "—" for k in METRICS]
            lines.append(f"| {attribute} | " + " | ".join(cells) + " |")
    for attribute, rel in (plots or {}).items():
        if not attribute.endswith(RELIABILITY):
            lines += ["", f"### {attribute} confusion matrix", "", f"![{attribute} confusion matrix]({rel})"]
    for title, entries in (("Training data", index.provenance.datasets),
                           ("Validation data", getattr(index.provenance, "validation", None)),
                           ("Test data", getattr(index.provenance, "test", None))):
        entries = [d for d in entries or [] if isinstance(d, Mapping)]
        if entries:
            lines += ["", f"## {title}", ""]
            for d in entries:
                lines.append(f"- {d.get('name', '?')}: {d.get('rows', '?')} rows"
                             + (f", sha256 {str(d['sha256'])[:12]}" if d.get("sha256") else ""))
    lines += ["", f"Bundle format {index.format_version}, written by fashion-sdk "
              f"{index.sdk_version}; `fashion show` describes a bundle, `fashion predict` runs it.", ""]
    return lines


def _trust_section(index: BundleIndex, plots: Mapping[str, str]) -> list[str]:
    """Calibration, abstention and applicability per attribute (fashion.trust; docs/trust.md),
    with the reliability diagrams the calibration drew."""
    rows = []
    for a, entry in index.attributes.items():
        c, t = entry.calibration, entry.abstention
        if c is None and t is None and not entry.applies_to:
            continue
        ece = (f"{c.ece_before:.3f} → {c.ece_after:.3f}" if c and c.ece_before is not None
               and c.ece_after is not None else "—")
        abstain = (f"{t.threshold:.3f} (precision {t.precision:.3f}, coverage {t.coverage:.2f})"
                   if t and t.precision is not None and t.coverage is not None else "—")
        scope = "; ".join(f"{k} in {', '.join(v)}" for k, v in entry.applies_to.items()) or "always"
        rows.append(f"| {a} | {f'{c.temperature:.3f}' if c else '—'} | {ece} | "
                    f"{t.min_precision if t else '—'} | {abstain} | {scope} |")
    if not rows:
        return []
    return ["", "## Calibration and abstention", "",
            "Fitted on validation data: scores are calibrated probabilities; "
            "`abstain=True` gives no label under the threshold.", "",
            "| attribute | temperature | ECE raw → calibrated | target precision | threshold | applies to |",
            "|---|---|---|---|---|---|", *rows, *_reliability_figures(index, plots)]


def _reliability_figures(index: BundleIndex, plots: Mapping[str, str]) -> list[str]:
    lines = []
    for a in index.attributes:
        rel = plots.get(reliability_key(a))
        if rel:
            lines += ["", f"### {a} reliability", "",
                      "Accuracy against confidence on the validation rows calibration was fitted on, "
                      "raw and calibrated (the diagonal is perfect calibration).", "",
                      f"![{a} reliability diagram]({rel})"]
    return lines


def model_card(index: BundleIndex, plots: Mapping[str, str] | None = None) -> str:
    """README.md with Hugging Face front matter (library_name, tags, model-index metrics)."""
    from huggingface_hub import ModelCard

    content = f"---\n{_card_data(index).to_yaml()}\n---\n\n" + "\n".join(_body(index, plots))
    return str(ModelCard(content))


__all__ = ["METRICS", "RELIABILITY", "model_card", "model_name", "plot_files", "plot_key", "reliability_key"]
