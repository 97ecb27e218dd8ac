"""Trust numbers and their pictures: per-attribute calibration and abstention numbers
(``AttributeTrust``), the report of one split (``TrustReport``: ``trust_<split>.json``), its
reliability diagrams and precision/coverage curves (PNG)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AttributeTrust:
    """Calibration and abstention numbers of one attribute on one set of rows."""

    rows: int
    temperature: float
    ece_before: float
    ece_after: float
    accuracy: float
    abstention: dict[str, Any] | None = None  # threshold, min_precision, precision, coverage
    curve: list[dict[str, float]] = field(default_factory=list)  # calibrated precision/coverage
    bins_before: list[dict[str, float]] = field(default_factory=list)
    bins_after: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrustReport:
    """Per-attribute trust numbers; ``split`` says which data they were measured on."""

    split: str
    attributes: dict[str, AttributeTrust]
    applicability: dict[str, dict[str, Any]] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list, repr=False)
    """The files :meth:`save` wrote last (empty until it is called)."""

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split,
                "attributes": {a: asdict(t) for a, t in self.attributes.items()},
                "applicability": self.applicability}

    def summary(self) -> dict[str, dict[str, Any]]:
        """The headline numbers per attribute (no curves), for metrics and model cards."""
        out: dict[str, dict[str, Any]] = {}
        for a, t in self.attributes.items():
            row: dict[str, Any] = {"temperature": round(t.temperature, 4),
                                   "ece_before": round(t.ece_before, 4),
                                   "ece_after": round(t.ece_after, 4)}
            if t.abstention is not None:
                row.update({f"abstain_{k}": v for k, v in t.abstention.items() if v is not None})
            out[a] = row
        for a, values in self.applicability.items():
            out.setdefault(a, {}).update({f"applicability_{k}": v for k, v in values.items()})
        return out

    def lines(self) -> list[str]:
        """One line per attribute, for the terminal."""
        text = []
        for a, row in self.summary().items():
            text.append(f"{a}: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        return text

    def save(self, directory: str | Path) -> list[Path]:
        """``trust_<split>.json``, ``reliability_<attribute>.png`` and ``coverage_<attribute>.png``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"trust_{self.split}.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        written = [path]
        for a, t in self.attributes.items():
            written.append(plot_reliability(a, t, directory / f"reliability_{a}.png"))
            if t.curve:
                written.append(plot_coverage(a, t, directory / f"coverage_{a}.png"))
        self.saved = written
        return written

    def reliability_plots(self) -> list[Path]:
        """The reliability diagrams :meth:`save` drew (for the model card)."""
        return [p for p in self.saved if p.name.startswith("reliability_")]


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


__all__ = ["AttributeTrust", "TrustReport", "plot_coverage", "plot_reliability"]
