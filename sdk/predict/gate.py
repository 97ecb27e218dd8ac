"""The accuracy gate: every optimized path against fp32 eager on labeled data.

For each path (``runtime:precision``, e.g. ``torch:bf16``, ``torch:int8``, ``onnxruntime:fp32``,
``onnxruntime:int8``) the gate runs the very same prepared batches as the fp32 eager reference
and reports, per attribute, the label agreement with the reference and the macro-F1 change
against the ground truth in points (100 x F1). A path that loses more than ``max_loss`` points on
any attribute is refused. The verdict (validated/refused paths, on which data) is recorded in
the bundle, where ``precision="auto"`` and ``fashion show`` read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fashion.errors import ConfigError
from fashion.model.inputs import Batch

REFERENCE = "torch:fp32"


@dataclass
class PathScore:
    """One path's comparison with the fp32 eager reference."""

    key: str
    agreement: dict[str, float]  # fraction of rows whose predicted labels equal the reference's
    f1: dict[str, float]  # macro-F1 against the ground truth, 0..1
    delta: dict[str, float]  # (f1 - reference f1) x 100: points, negative = worse
    passed: bool
    extra: dict[str, Any] = field(default_factory=dict)  # cpu, fix, calibration, products_per_s

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "agreement": _r(self.agreement), "macro_f1": _r(self.f1),
                "f1_delta_points": _r(self.delta), **self.extra}


def _r(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in values.items()}


@dataclass
class GateReport:
    """The gate's result: the reference scores and one :class:`PathScore` per path."""

    reference: dict[str, float]
    paths: list[PathScore]
    max_loss: float
    data: list[dict[str, Any]]
    rows: int
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def validated(self) -> list[str]:
        return [p.key for p in self.paths if p.passed]

    @property
    def refused(self) -> list[str]:
        return [p.key for p in self.paths if not p.passed]

    @property
    def passed(self) -> bool:
        return not self.refused

    def verdict(self, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What the bundle records; paths an earlier verdict judged on the same data are kept."""
        paths = {}
        if previous and previous.get("data") == self.data and previous.get("max_loss") == self.max_loss:
            paths.update(previous.get("paths", {}))
        paths.update({p.key: p.to_dict() for p in self.paths})
        return {
            "max_loss": self.max_loss,
            "data": self.data,
            "rows": self.rows,
            "created": self.created,
            "reference": {"path": REFERENCE, "macro_f1": _r(self.reference)},
            "paths": paths,
            "validated": sorted(k for k, v in paths.items() if v["passed"]),
            "refused": sorted(k for k, v in paths.items() if not v["passed"]),
        }

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"accuracy gate vs {REFERENCE} ({self.rows} rows, max loss "
                            f"{self.max_loss:g} macro-F1 points per attribute)")
        for column in ("path", "attribute", "agreement", "macro-F1", "delta (points)", "verdict"):
            table.add_column(column)
        for p in self.paths:
            for attribute in p.delta:
                lost = p.delta[attribute] < -self.max_loss
                table.add_row(p.key, attribute, f"{p.agreement[attribute]:.4f}",
                              f"{p.f1[attribute]:.4f} (ref {self.reference[attribute]:.4f})",
                              f"{p.delta[attribute]:+.2f}", "LOSS" if lost else "ok")
        return table


def _predicted(logits: Tensor, task: Any) -> Tensor:
    if task.multilabel:
        thresholds = task.label_thresholds() if hasattr(task, "label_thresholds") else None
        if thresholds is None:
            thresholds = torch.full((logits.shape[1],), 0.5)
        return logits.float().sigmoid() >= thresholds
    return logits.argmax(dim=-1)


def default_data(index: Any) -> list[Path]:
    """The validation manifests the bundle's provenance names, when they are still on disk."""
    extra = index.provenance.model_extra or {}
    paths = [Path(d["path"]) for d in extra.get("validation", []) if d.get("path")]
    present = [p for p in paths if p.is_file()]
    if not present:
        where = f" (it names {', '.join(map(str, paths))}, not found here)" if paths else ""
        raise ConfigError(
            "the accuracy gate needs labeled data: the bundle records no validation data that "
            f"is on this machine{where}; pass --data MANIFEST (CSV/JSONL/Parquet with labels)."
        )
    return present


def run_gate(
    bundle: Any,
    paths: Sequence[str],
    *,
    data: Sequence[str | Path] | None = None,
    max_loss: float = 0.5,
    batch_size: int = 32,
    limit: int | None = None,
) -> GateReport:
    """Compare each of ``paths`` (``runtime:precision``) with fp32 eager on ``data`` (default:
    the bundle's validation manifests). ``limit`` caps the rows read per manifest. Each path's
    score records the CPU it was validated on (model and flags)."""
    from fashion.predict.precision import cpu_record
    from fashion.predict.predictor import Predictor
    from fashion.training.data import label_normalizers, load_dataset
    from fashion.training.evaluation import _as_dataset_config, new_counts

    if max_loss < 0:
        raise ConfigError("--max-loss must be 0 or more (macro-F1 points)")
    model = bundle.model
    sources = [Path(d) for d in data] if data else default_data(bundle.index)
    normalizers = label_normalizers(model, None)
    datasets = [load_dataset(_as_dataset_config(s, "val"), model, normalizers=normalizers,
                             on_unknown_label="skip", on_bad_row="skip") for s in sources]
    datasets = [d.encode(model) for d in datasets]
    if not any(len(d) and d.attributes for d in datasets):
        raise ConfigError(
            f"the gate data {', '.join(map(str, sources))} has no readable labeled rows for the "
            f"model's attributes {model.attributes}; pass --data with labeled rows."
        )
    runners = {REFERENCE: Predictor(bundle, precision="fp32")}
    for key in paths:
        runtime, _, precision = key.partition(":")
        runners[key] = Predictor(bundle, precision=precision, runtime=runtime)  # type: ignore[arg-type]
    counts = {k: {a: new_counts(model, a) for a in model.attributes} for k in runners}
    agree = {k: {a: 0 for a in model.attributes} for k in runners}
    rows = {a: 0 for a in model.attributes}
    for dataset in datasets:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            batch: Batch = model.prepare(dataset.products[start:stop])
            outputs = {k: r.logits(batch) for k, r in runners.items()}
            for attribute in dataset.attributes:
                task = model.task(attribute)
                target, mask = dataset.targets[attribute]
                reference = _predicted(outputs[REFERENCE][attribute], task)
                rows[attribute] += stop - start
                for key, logits in outputs.items():
                    counts[key][attribute].update(logits[attribute], target[start:stop], mask[start:stop])
                    same = _predicted(logits[attribute], task) == reference
                    agree[key][attribute] += int(same.all(dim=1).sum() if same.dim() > 1 else same.sum())
    judged = [a for a in model.attributes if rows[a]]
    f1 = {k: {a: counts[k][a].metrics(a).macro_f1 for a in judged} for k in runners}
    scores = []
    for key in paths:
        delta = {a: 100.0 * (f1[key][a] - f1[REFERENCE][a]) for a in judged}
        scores.append(PathScore(
            key=key, agreement={a: agree[key][a] / rows[a] for a in judged}, f1=f1[key],
            delta=delta, passed=all(d >= -max_loss for d in delta.values()),
            extra={"cpu": cpu_record()},
        ))
    described = [{"path": str(d.path), "sha256": d.report.sha256, "rows": len(d)} for d in datasets]
    return GateReport(reference=f1[REFERENCE], paths=scores, max_loss=max_loss,
                      data=described, rows=sum(min(len(d), limit or len(d)) for d in datasets))


def print_verdict(console: Any, optimizations: Mapping[str, Any]) -> None:
    """``fashion show``: the bundle's ONNX artifacts and the gate's verdict, when there are any."""
    graphs = optimizations.get("onnx", {})
    for precision, entry in sorted(graphs.items()):
        console.print(f"onnx {precision}: {entry.get('file')} (opset {entry.get('opset')})")
        q = entry.get("quantization")
        if q:
            console.print(f"  {q['scheme']} {q['method']}, {'per-channel' if q['per_channel'] else 'per-tensor'} "
                          f"weights, fix: {q['fix']}, calibrated on {q['calibration']['products']} products "
                          f"({q['calibration']['fingerprint'][:19]}…) on {q['cpu']['model']}", soft_wrap=True)
    gate = optimizations.get("gate")
    if not gate:
        if graphs:
            console.print("accuracy gate: not run (`fashion optimize MODEL --data …`)")
        return
    data = ", ".join(Path(d["path"]).name for d in gate.get("data", []))
    console.print(f"accuracy gate ({gate.get('rows')} rows of {data}, max loss "
                  f"{gate.get('max_loss')} points)", soft_wrap=True)
    for verdict in ("validated", "refused"):
        console.print(f"  {verdict}: {', '.join(gate.get(verdict, [])) or 'none'}", soft_wrap=True)
    for key, path in sorted(gate.get("paths", {}).items()):
        if path.get("cpu"):
            speed = f", {path['products_per_s']:g} products/s" if path.get("products_per_s") else ""
            console.print(f"  {key}: on {path['cpu']['model']} ({' '.join(path['cpu']['flags']) or 'no flags'})"
                          f"{speed}", soft_wrap=True)
