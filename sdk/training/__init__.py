"""Multi-data multi-task training: datasets, samplers, loss combination, trainer, feature cache,
evaluation, checkpoints.

>>> from fashion.training import Trainer, TrainConfig
>>> result = Trainer(None, TrainConfig.load("train.toml")).fit()   # doctest: +SKIP

May import: ``fashion.registry`` (the run's bundle), ``fashion.trust`` (calibration at the end of
a run), ``fashion.model`` and the layers below. Exports the trainer, its config and callbacks,
``evaluate``; names load on first use so ``import fashion.training`` stays quick. See
``docs/training.md`` and ``docs/evaluation.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fashion.training.cache import CachedFeatures, FeatureCache
    from fashion.training.callbacks import (
        BestWeights,
        Callback,
        Checkpointing,
        EarlyStopping,
        ProgressBar,
    )
    from fashion.training.config import DatasetConfig, OptimizerConfig, ScheduleConfig, TrainConfig
    from fashion.training.data import (
        DataReport,
        LabeledDataset,
        Problem,
        label_normalizers,
        load_dataset,
    )
    from fashion.training.evaluation import (
        AttributeMetrics,
        ClassMetrics,
        EvaluationReport,
        evaluate,
    )
    from fashion.training.losses import LossCombiner, get_loss, list_losses
    from fashion.training.result import TrainResult
    from fashion.training.samplers import Sampler, get_sampler, list_samplers
    from fashion.training.state import TrainingState
    from fashion.training.trainer import StepInfo, Trainer, TrainingError

_LAZY = {
    "CachedFeatures": "cache",
    "FeatureCache": "cache",
    "BestWeights": "callbacks",
    "Callback": "callbacks",
    "Checkpointing": "callbacks",
    "EarlyStopping": "callbacks",
    "ProgressBar": "callbacks",
    "DatasetConfig": "config",
    "OptimizerConfig": "config",
    "ScheduleConfig": "config",
    "TrainConfig": "config",
    "DataReport": "data",
    "LabeledDataset": "data",
    "Problem": "data",
    "label_normalizers": "data",
    "load_dataset": "data",
    "AttributeMetrics": "evaluation",
    "ClassMetrics": "evaluation",
    "EvaluationReport": "evaluation",
    "evaluate": "evaluation",
    "LossCombiner": "losses",
    "get_loss": "losses",
    "list_losses": "losses",
    "Sampler": "samplers",
    "get_sampler": "samplers",
    "list_samplers": "samplers",
    "TrainingState": "state",
    "Trainer": "trainer",
    "TrainingError": "trainer",
    "TrainResult": "result",
    "StepInfo": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AttributeMetrics",
    "BestWeights",
    "CachedFeatures",
    "Callback",
    "Checkpointing",
    "ClassMetrics",
    "DataReport",
    "DatasetConfig",
    "EarlyStopping",
    "EvaluationReport",
    "FeatureCache",
    "LabeledDataset",
    "LossCombiner",
    "OptimizerConfig",
    "Problem",
    "ProgressBar",
    "Sampler",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "StepInfo",
    "Trainer",
    "TrainingError",
    "TrainingState",
    "evaluate",
    "get_loss",
    "get_sampler",
    "label_normalizers",
    "list_losses",
    "list_samplers",
    "load_dataset",
]
