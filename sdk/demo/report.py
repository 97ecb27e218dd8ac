"""The demo's report: training curves (PNG) and ``report.md`` (see :mod:`fashion.demo.run`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fashion.demo.settings import DemoResult


def plot_history(history: list[dict[str, Any]], path: Path) -> Path:
    """Training curves: loss per attribute (training solid, validation dashed) and validation
    macro-F1 per attribute (the thick line: their mean, what picks the kept epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] for h in history]
    attributes = sorted({a for h in history for a in (*h["losses"], *(h.get("val") or {}))})
    colors = {a: f"C{i}" for i, a in enumerate(attributes)}
    for attribute in attributes:
        ax1.plot(epochs, [h["losses"].get(attribute, float("nan")) for h in history],
                 color=colors[attribute], label=f"{attribute} (train)")
        val = [(h.get("val") or {}).get(attribute, {}).get("loss", float("nan")) for h in history]
        ax1.plot(epochs, val, color=colors[attribute], linestyle="--", label=f"{attribute} (val)")
        ax2.plot(epochs, [(h.get("val") or {}).get(attribute, {}).get("macro_f1", float("nan"))
                          for h in history], color=colors[attribute], label=attribute)
    ax2.plot(epochs, [h.get("val_macro_f1") or float("nan") for h in history], color="black",
             linewidth=2.2, label="mean")
    ax1.set_title("loss per attribute (dashed: validation)")
    ax1.set_ylabel("cross-entropy")
    ax2.set_title("validation macro-F1")
    ax2.set_ylim(0.0, 1.02)
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.legend(fontsize=6, ncol=2)
    ax2.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(demo: DemoResult, report_dir: Path) -> Path:
    """``report_dir/report.md``: the demo's measurements, example predictions and plots."""
    lines = ["# fashion demo report", "", f"Backbones: {demo.backbones}", "",
             "## Test metrics (held-out test splits)", "",
             "| attribute | accuracy | macro-F1 | chance (1/labels) |", "|---|---|---|---|"]
    for attribute, m in demo.test_metrics.items():
        chance = 1.0 / max(1, len(m.get("labels", [])))
        lines.append(f"| {attribute} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {chance:.3f} |")
    if demo.ablation:
        a = demo.ablation
        lines += ["", "## Center-view ablation (pattern)", "", "| views | accuracy | macro-F1 |",
                  "|---|---|---|",
                  f"| full | {a['pattern_accuracy_full_only']:.3f} | {a['pattern_macro_f1_full_only']:.3f} |",
                  f"| full + center | {a['pattern_accuracy_full_center']:.3f} | {a['pattern_macro_f1_full_center']:.3f} |"]
    if demo.modalities:
        kinds = list(next(iter(demo.modalities.values())))
        lines += ["", "## Modality dropout (mean test accuracy of the base attributes)", "",
                  "Test sets copied with the images removed (text only) or the text removed "
                  "(image only), scored by the model trained without and with modality dropout.",
                  "", "| model | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
        for model, scores in demo.modalities.items():
            lines.append(f"| {model} | " + " | ".join(f"{scores[k]:.3f}" for k in kinds) + " |")
    if demo.gate:
        lines += ["", "## add-attribute gate", "", "| attribute | before | after | passed |",
                  "|---|---|---|---|"]
        for row in demo.gate["rows"]:
            lines.append(f"| {row['attribute']} | {row['before']:.3f} | {row['after']:.3f} | {row['passed']} |")
    if demo.predictions:
        attributes = [k for k in demo.predictions[0] if k not in ("id", "title", "images")]
        lines += ["", "## Example predictions (test products, the published model)", "",
                  "| photo | title | " + " | ".join(attributes) + " |", "|---" * (len(attributes) + 2) + "|"]
        for example in demo.predictions:
            photos = " ".join(
                f'<img src="{Path(os.path.relpath(image, report_dir)).as_posix()}" width="96">'
                for image in example["images"][:2] if isinstance(image, (str, Path))
            )
            cells = [f"{example[a]['label']} ({example[a]['score']:.2f})" for a in attributes]
            title = str(example.get("title") or "").replace("|", "/")
            lines.append(f"| {photos} | {title} | " + " | ".join(cells) + " |")
    lines += ["", "## Published", ""] + [f"- `{uri}`" for uri in demo.published]
    lines += ["", "## Plots", "", "![training curves](training_curves.png)", ""]
    for png in sorted(report_dir.rglob("confusion_*.png")):
        rel = png.relative_to(report_dir)
        lines.append(f"![{png.stem}]({rel})")
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in demo.seconds.items()]
    path = report_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
