"""What a run is set up with: seeds, device, precision, datasets, the optimizer, its schedule,
class weights."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..model import FashionModel
from .config import TrainConfig
from .data import DataReport, LabeledDataset, label_normalizers, load_dataset, stratified_split
from .losses import LossCombiner, balanced_class_weights
from .samplers import make_generator

log = logging.getLogger("fashion.training")


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but CUDA is not available; use device = \"cpu\".")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (``None``: fp32)."""
    if device.type != "cuda":
        if config.precision in ("bf16", "fp16"):
            log.warning("precision %s is used on CUDA only; training in fp32 on %s", config.precision, device)
        return None
    if config.precision == "fp32":
        return None
    if config.precision == "fp16":
        return torch.float16
    if config.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def config_fingerprint(config: TrainConfig) -> str:
    """Hash of the config fields a checkpoint depends on (resume refuses another)."""
    keys = (
        "model", "datasets", "validation", "val_fraction", "sampler", "sampler_options", "loss",
        "loss_options", "class_weights", "batch_size", "freeze", "seed",
    )
    data = config.model_dump(mode="json", include=set(keys))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class WarmupCosine:
    """Learning-rate factor: linear warmup, then cosine decay to ``min_ratio`` (or constant)."""

    def __init__(self, warmup: int, total: int, cosine: bool, min_ratio: float) -> None:
        self.warmup, self.total, self.cosine, self.min_ratio = warmup, max(1, total), cosine, min_ratio

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if not self.cosine:
            return 1.0
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    config: TrainConfig, model: FashionModel, combiner: LossCombiner, device: torch.device
) -> torch.optim.AdamW:
    """AdamW: backbones at ``lr_backbone``, the rest at ``lr_head``; no decay on biases/norms."""
    opt = config.optimizer
    backbone_params = {id(p) for p in model.backbones.parameters()}
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("croppers.")]
    named += [(f"loss.{n}", p) for n, p in combiner.named_parameters()]
    for name, param in named:
        if not param.requires_grad:
            continue
        kind = "backbone" if id(param) in backbone_params else "head"
        decay = param.ndim >= 2 and not name.startswith("loss.")
        groups.setdefault((kind, decay), []).append(param)
    if not groups:
        raise ConfigError(
            f"nothing to train: every parameter is frozen (freeze={config.freeze}); unfreeze a group."
        )
    param_groups = [
        {
            "params": params,
            "lr": opt.lr_backbone if kind == "backbone" else opt.lr_head,
            "weight_decay": opt.weight_decay if decay else 0.0,
        }
        for (kind, decay), params in groups.items()
    ]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(param_groups, betas=opt.betas, **extra)


def class_weights(
    config: TrainConfig, model: FashionModel, datasets: Sequence[LabeledDataset], device: torch.device
) -> dict[str, Tensor]:
    """``class_weights = "balanced"``: n / (C · n_c) per attribute over the training rows."""
    if config.class_weights != "balanced":
        return {}
    weights: dict[str, Tensor] = {}
    for attribute in model.attributes:
        labels = model.task(attribute).labels
        counts = torch.zeros(len(labels), dtype=torch.long)
        for dataset in datasets:
            if attribute in dataset.attributes:
                for label, n in dataset.label_counts(attribute).items():
                    counts[labels.index(label)] += n
        if counts.sum() > 0:
            weights[attribute] = balanced_class_weights(counts).to(device)
    return weights


def load_run_datasets(
    config: TrainConfig, model: FashionModel, *, is_main: bool = True
) -> tuple[list[LabeledDataset], list[LabeledDataset], list[DataReport]]:
    """The run's training and validation datasets (encoded for ``model``) and their reports.

    Without ``validation`` datasets, ``val_fraction`` of each training dataset is held out
    (stratified, seeded by ``seed`` and the dataset's name).
    """
    normalizers = label_normalizers(model, config.taxonomies)
    options: dict[str, Any] = {
        "normalizers": normalizers, "on_unknown_label": config.on_unknown_label,
        "on_bad_row": config.on_bad_row, "verify_images": config.verify_images,
    }
    train = [load_dataset(d, model, **options) for d in config.datasets]
    names = [d.name for d in train]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset names must be unique, got {names}; rename one of them.")
    reports = [d.report for d in train]
    if config.validation is not None:
        validation = [load_dataset(d, model, **options) for d in config.validation]
        reports += [d.report for d in validation]
    elif config.val_fraction > 0:
        validation = []
        for i, dataset in enumerate(train):
            generator = make_generator(config.seed, "validation-split", dataset.name)
            keep, held = stratified_split(dataset, config.val_fraction, generator)
            validation.append(dataset.subset(held, f"{dataset.name}:val"))
            train[i] = dataset.subset(keep, dataset.name)
    else:
        validation = []
    for dataset in (*train, *validation):
        dataset.encode(model)
    for report in reports:
        if report.problems and is_main:
            log.warning("%s", report.summary())
    return train, [v for v in validation if len(v)], reports


def frozen_components(model: FashionModel) -> dict[str, str]:
    """Fully frozen components (state-dict prefix -> fingerprint): training cannot change them
    (no gradients, eval mode), so checkpoints and best weights leave them out."""
    paths = [
        path for path, module in model.component_modules().items()
        if (params := list(module.parameters())) and not any(p.requires_grad for p in params)
    ]
    return {path.replace("/", ".") + ".": fp for path, fp in model.component_fingerprints_of(paths).items()}


def set_train_mode(model: FashionModel) -> None:
    """Train mode, except croppers (they run in prepare) and fully frozen components."""
    model.train()
    model.croppers.eval()
    for module in model.component_modules().values():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()  # frozen: BatchNorm statistics and dropout stay fixed


__all__ = [
    "WarmupCosine",
    "autocast_dtype",
    "build_optimizer",
    "class_weights",
    "config_fingerprint",
    "frozen_components",
    "load_run_datasets",
    "resolve_device",
    "seed_everything",
    "set_train_mode",
]
