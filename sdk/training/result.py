"""The end of a training run and what :meth:`Trainer.fit` returns.

After the last epoch the kept (best) weights are scored on the validation datasets (reusing
the metrics of their epoch when this process scored it), the history and evaluation are
written, the model is calibrated and scored on the `test` datasets when the config asks, and
the bundle is saved with the run's provenance. :class:`TrainResult` gathers it all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fashion.model.network import FashionModel
from fashion.training.data import DataReport, describe_datasets
from fashion.training.evaluation import EvaluationReport

if TYPE_CHECKING:
    from fashion.training.state import Run

log = logging.getLogger("fashion.training")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    history: list[dict[str, Any]]
    best_epoch: int | None
    best_score: float | None
    global_step: int
    stopped_early: bool
    output_dir: Path
    bundle_path: Path | None
    evaluation: EvaluationReport | None
    data_reports: list[DataReport]
    precision: str = "fp32"
    """What training ran in: ``fp32``, ``bf16`` or ``fp16`` (autocast)."""
    test_evaluation: EvaluationReport | None = None
    """The kept weights scored on the config's `test` datasets (``None`` without them)."""
    unvalidated: list[str] = field(default_factory=list)
    """Attributes trained without validation data: never evaluated, not in ``best_score``."""

    @property
    def final_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")


def finish_run(trainer: Run) -> TrainResult:
    """The end of a run: final evaluation, history, calibration, test scores, the bundle."""
    config, state = trainer.config, trainer.state
    model = trainer.model
    assert model is not None
    evaluation: EvaluationReport | None = None
    if trainer.val_sets:
        # The restored best weights were scored at their epoch: reuse those metrics. Only a
        # resumed run whose best epoch ran in an earlier process scores them again, and a
        # quantization-aware run, whose epochs scored the int8 simulation (the bundle is fp32).
        recorded = trainer.best_scores
        if (recorded is not None and recorded[0] == state.best_epoch and recorded[1] is not None
                and not config.quantization_aware):
            attributes, per_dataset = recorded[1]
        else:
            trainer.final_validation_passes += 1
            attributes, per_dataset = trainer.validate() or ({}, {})
        evaluation = EvaluationReport(attributes, per_dataset, [d.report for d in trainer.val_sets])
    model.eval()
    bundle_path: Path | None = None
    test_evaluation: EvaluationReport | None = None
    if trainer.is_main:
        trainer.write_history()
        plots: list[Path] = []
        if evaluation is not None:
            plots = [p for p in evaluation.save(config.output_dir / "evaluation") if p.suffix == ".png"]
        if config.calibrate and trainer.val_sets:
            from fashion.trust.fit import fit_and_report

            trust = fit_and_report(model, trainer.val_sets, evaluation, config.output_dir / "evaluation",
                                   min_precision=config.min_precision, features=trainer.val_features,
                                   batch_size=config.eval_batch_size or config.batch_size)
            plots += trust.reliability_plots()  # into the model card
            if evaluation is not None:  # metrics.json again, now with the calibration's numbers
                evaluation.to_json(config.output_dir / "evaluation" / "metrics.json")
        if config.test:
            from fashion.training.evaluation import evaluate

            test_evaluation = evaluate(
                model, config.test, batch_size=config.eval_batch_size or config.batch_size,
                taxonomies=config.taxonomies, on_unknown_label=config.on_unknown_label,
                on_bad_row=config.on_bad_row, device=trainer.device, trust=False,
            )
            test_evaluation.save(config.output_dir / "evaluation" / "test")
        if config.save_bundle:
            bundle_path = save_run_bundle(trainer, model, evaluation, plots, test_evaluation)
    trainer.barrier()
    return TrainResult(
        history=state.history,
        best_epoch=state.best_epoch,
        best_score=state.best_score,
        global_step=state.global_step,
        stopped_early=state.stopped_early,
        output_dir=config.output_dir,
        bundle_path=bundle_path,
        evaluation=evaluation,
        data_reports=trainer.data_reports,
        precision=trainer.precision,
        unvalidated=list(trainer.unvalidated),
        test_evaluation=test_evaluation,
    )


def run_provenance(trainer: Run) -> dict[str, Any]:
    """What the bundle records of how the run was made: data, seed, precision, cuts, versions."""
    from fashion._util.version import __version__

    return {
        "datasets": describe_datasets(trainer.train_sets),
        "validation": describe_datasets(trainer.val_sets),
        "data_reports": [
            {k: v for k, v in r.to_dict().items() if k != "problems"} | {"problems": len(r.problems)}
            for r in trainer.data_reports
        ],
        "seed": trainer.config.seed,
        "precision": trainer.precision,
        "batchnorm_fixed": list(trainer.fixed_batchnorm),
        "cuts": dict(trainer.cuts),
        "world_size": trainer.world_size,
        "epochs_run": len(trainer.state.history),
        "global_step": trainer.state.global_step,
        "best_epoch": trainer.state.best_epoch,
        "fashion_version": __version__,
        "torch_version": torch.__version__,
    }


def save_run_bundle(
    trainer: Run, model: FashionModel, evaluation: EvaluationReport | None, plots: list[Path],
    test_evaluation: EvaluationReport | None = None,
) -> Path | None:
    try:
        from fashion.registry.bundle import save_bundle
        from fashion.registry.model_card import plot_files
    except ModuleNotFoundError:
        log.warning("fashion.registry.bundle is not installed; no bundle was written")
        return None
    metrics = (
        {a: m.to_dict() for a, m in evaluation.attributes.items()} if evaluation is not None else {}
    )
    provenance = run_provenance(trainer)
    if trainer.config.name:
        provenance["name"] = trainer.config.name
    if test_evaluation is not None:
        provenance["test"] = [
            {"name": r.dataset, "path": str(r.path), "sha256": r.sha256, "rows": r.rows_used,
             "attributes": list(r.attributes)}
            for r in test_evaluation.data
        ]
        provenance["test_metrics"] = {a: m.to_dict() for a, m in test_evaluation.attributes.items()}
    return save_bundle(
        model,
        trainer.config.output_dir / "bundle",
        metrics=metrics,
        provenance=provenance,
        training_config=trainer.config.model_dump(mode="json"),
        plots=plot_files(plots) or None,
    )


__all__ = ["TrainResult", "finish_run", "run_provenance", "save_run_bundle"]
