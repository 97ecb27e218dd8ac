"""The evaluation's trust plots: reliability diagrams and precision/coverage curves (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fit import AttributeTrust


def _figure(width: float = 5.0, height: float = 4.2) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_reliability(attribute: str, trust: AttributeTrust, path: str | Path) -> Path:
    """Accuracy against confidence per bin, raw and calibrated, with the diagonal."""
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for bins, name, color in ((trust.bins_before, f"raw (ECE {trust.ece_before:.3f})", "tab:red"),
                              (trust.bins_after, f"calibrated (ECE {trust.ece_after:.3f})", "tab:blue")):
        shown = [b for b in bins if b["count"]]
        axes.plot([b["confidence"] for b in shown], [b["accuracy"] for b in shown],
                  marker="o", color=color, label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{attribute}: reliability (T = {trust.temperature:.2f}, {trust.rows} rows)")
    axes.legend(loc="upper left", fontsize=8)
    return _save(figure, Path(path))


def plot_coverage(attribute: str, trust: AttributeTrust, path: str | Path) -> Path:
    """Precision of published labels against coverage; the chosen operating point marked."""
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([p["coverage"] for p in trust.curve], [p["precision"] for p in trust.curve],
              color="tab:blue")
    if trust.abstention and trust.abstention.get("precision") is not None:
        a = trust.abstention
        axes.scatter([a["coverage"]], [a["precision"]], color="tab:red", zorder=3,
                     label=f"threshold {a['threshold']:.2f}: precision {a['precision']:.3f}, "
                           f"coverage {a['coverage']:.2f}")
        axes.axhline(a["min_precision"], color="grey", linestyle="--", linewidth=1)
        axes.legend(loc="lower left", fontsize=8)
    axes.set_xlim(0, 1.02)
    axes.set_xlabel("coverage (share of products labeled)")
    axes.set_ylabel("precision of published labels")
    axes.set_title(f"{attribute}: precision / coverage")
    return _save(figure, Path(path))


__all__ = ["plot_coverage", "plot_reliability"]
