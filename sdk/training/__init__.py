"""Multi-data multi-task training: datasets, samplers, loss combination, trainer, evaluation.

>>> from fashion.training import Trainer, TrainConfig
>>> result = Trainer(None, TrainConfig.load("train.toml")).fit()   # doctest: +SKIP

See ``docs/training.md`` and ``docs/evaluation.md``.
"""

from __future__ import annotations

from .cache import CachedFeatures, FeatureCache
from .config import DatasetConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from .data import DataReport, LabeledDataset, Problem, label_normalizers, load_dataset
from .evaluation import AttributeMetrics, ClassMetrics, EvaluationReport, evaluate
from .losses import LossCombiner, get_loss
from .samplers import Sampler, get_sampler, list_samplers, register_sampler
from .trainer import Trainer, TrainingError, TrainResult, TrainState

__all__ = [
    "AttributeMetrics",
    "CachedFeatures",
    "ClassMetrics",
    "DataReport",
    "DatasetConfig",
    "EvaluationReport",
    "FeatureCache",
    "LabeledDataset",
    "LossCombiner",
    "OptimizerConfig",
    "Problem",
    "Sampler",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingError",
    "evaluate",
    "get_loss",
    "get_sampler",
    "label_normalizers",
    "list_samplers",
    "load_dataset",
    "register_sampler",
]
