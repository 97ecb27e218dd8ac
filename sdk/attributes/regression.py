"""The no-regression gate of ``fashion add-attribute``: before/after macro-F1 of every existing
attribute, and whether a new revision may be published."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table


@dataclass
class RegressionRow:
    attribute: str
    before: float | None
    after: float | None
    delta: float | None
    passed: bool


@dataclass
class RegressionReport:
    """Before/after macro-F1 of every existing attribute, and the new attribute's metrics."""

    attribute: str
    max_regression: float
    rows: list[RegressionRow] = field(default_factory=list)
    new_metrics: dict[str, Any] | None = None
    #: components of the base model that training changed; empty: the old attributes' outputs
    #: are bit-identical (fingerprints verified) and "after" was not evaluated again.
    changed_components: list[str] | None = None

    @property
    def unchanged(self) -> bool:
        return self.changed_components == []

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def table(self) -> Table:
        table = Table(
            title=f"no-regression gate (max drop {self.max_regression:.3f} macro-F1)",
            caption=(
                "old components bit-identical (fingerprints verified): after = before" if self.unchanged
                else f"retrained: {', '.join(self.changed_components)}" if self.changed_components else None
            ),
        )
        for column in ("attribute", "before", "after", "delta", "verdict"):
            table.add_column(column, justify="right" if column != "attribute" else "left")
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        for r in self.rows:
            verdict = "[green]ok[/]" if r.passed else "[red]REGRESSED[/]"
            table.add_row(r.attribute, fmt(r.before), fmt(r.after),
                          "-" if r.delta is None else f"{r.delta:+.3f}", verdict)
        if self.new_metrics is not None:
            table.add_row(
                f"{self.attribute} (new)", "-", f"{self.new_metrics.get('macro_f1', 0.0):.3f}",
                "-", "[cyan]new[/]",
            )
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "max_regression": self.max_regression,
            "passed": self.passed,
            "rows": [r.__dict__ for r in self.rows],
            "new_metrics": self.new_metrics,
            "changed_components": self.changed_components,
        }


def regression_report(
    before: Any, after: Any, attribute: str, max_regression: float, new_metrics: dict | None
) -> RegressionReport:
    """Compare every old attribute's macro-F1 in ``before`` and ``after`` evaluation reports."""
    report = RegressionReport(attribute, max_regression, new_metrics=new_metrics)
    for name in sorted(before.attributes):
        if name == attribute:
            continue
        b = before.attributes[name].macro_f1
        a = after.attributes[name].macro_f1 if name in after.attributes else None
        delta = None if a is None else a - b
        report.rows.append(
            RegressionRow(name, b, a, delta, a is not None and (b - a) <= max_regression + 1e-12)
        )
    return report


__all__ = ["RegressionReport", "RegressionRow", "regression_report"]
