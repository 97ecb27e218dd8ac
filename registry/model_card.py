"""The bundle's README.md: a Hugging Face model card built with ``huggingface_hub.ModelCard``.

The metadata (``library_name``, ``tags``, ``model-index`` with one result per attribute metric)
goes through ``ModelCardData`` and ``EvalResult``, which validate it, so the Hub reads the card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fashion.registry.bundle_format import BundleManifest


def _numeric(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _card_data(manifest: BundleManifest) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    results = [
        EvalResult(
            task_type="image-classification",
            task_name=f"{attribute} classification",
            dataset_type="fashion-validation",
            dataset_name="validation",
            metric_type=metric,
            metric_value=value,
            metric_name=f"{attribute} {metric}",
        )
        for attribute, values in manifest.metrics.items()
        for metric, value in _numeric(values).items()
    ]
    tags = ["fashion", "product-attributes", "multi-task"]
    tags += [f"attribute:{a}" for a in manifest.attributes]
    return ModelCardData(
        library_name="fashion",
        tags=tags,
        model_name="fashion-model" if results else None,
        eval_results=results or None,
    )


def _body(manifest: BundleManifest, plots: Mapping[str, str] | None) -> list[str]:
    attributes = list(manifest.attributes)
    lines = ["# fashion product-attribute model", "",
             f"Predicts {', '.join(attributes) or 'no attributes yet'} from product photos and "
             "text. Load it with:", "", "```python", "from fashion import Predictor", "",
             'predictor = Predictor.from_pretrained("path/or/hf://org/name")',
             'print(predictor.predict([{"images": ["shoe.jpg"], "title": "Red sneaker"}]))',
             "```", "", "## Attributes", "", "| attribute | labels | head | threshold |",
             "|---|---|---|---|"]
    for a, entry in manifest.attributes.items():
        labels = ", ".join(entry.labels[:12]) + (" …" if len(entry.labels) > 12 else "")
        lines.append(f"| {a} | {labels} | {entry.head} | {entry.threshold} |")
    lines += ["", "## Components", "", "| path | component | plugin distribution |", "|---|---|---|"]
    for path, c in manifest.components.items():
        dist = f"{c.distribution} {c.version or ''}".strip() if c.distribution else "(not packaged)"
        lines.append(f"| {path} | {c.name} | {dist} |")
    if manifest.metrics:
        lines += ["", "## Metrics", ""]
        for attribute, values in manifest.metrics.items():
            shown = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                              for k, v in values.items() if not isinstance(v, (list, dict)))
            lines.append(f"- **{attribute}**: {shown}")
    for attribute, rel in (plots or {}).items():
        lines += ["", f"### {attribute} confusion matrix", "", f"![{attribute} confusion matrix]({rel})"]
    if manifest.provenance.datasets:
        lines += ["", "## Training data", ""]
        for d in manifest.provenance.datasets:
            lines.append(f"- {d.get('name', '?')}: {d.get('rows', '?')} rows"
                         + (f", sha256 {str(d['sha256'])[:12]}" if d.get("sha256") else ""))
    lines += ["", f"Bundle format {manifest.format_version}, written by fashion-sdk "
              f"{manifest.sdk_version}. See docs/bundle-format.md.", ""]
    return lines


def model_card(manifest: BundleManifest, plots: Mapping[str, str] | None = None) -> str:
    """README.md with Hugging Face front matter (library_name, tags, model-index metrics)."""
    from huggingface_hub import ModelCard

    content = f"---\n{_card_data(manifest).to_yaml()}\n---\n\n" + "\n".join(_body(manifest, plots))
    return str(ModelCard(content))


__all__ = ["model_card"]
