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

from fashion.contract.training import LossCombiner
from fashion.errors import ConfigError
from fashion.model.network import FashionModel
from fashion.model.precision import cpu_bf16_native
from fashion.training.config import TrainConfig
from fashion.training.data import (
    DataReport,
    LabeledDataset,
    label_normalizers,
    load_dataset,
    stratified_split,
)
from fashion.training.losses import balanced_class_weights
from fashion.training.samplers import make_generator

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


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """The precision a run trains in (``fp32``, ``bf16`` or ``fp16``: autocast with fp32 master
    weights; :func:`fashion.model.precision.autocast_dtype` gives its dtype), with one log line
    saying why.

    On the CPU, ``precision = "auto"`` trains in fp32: bf16 autocast training was measured at
    0.65x the steps/s of fp32 on an AVX512-BF16 CPU (EfficientNet-Lite0 at 96 px, full
    fine-tuning, batch 32), although bf16 + channels_last *inference* of the same backbone ran
    ~2.6x fp32 there (prediction's ``auto`` keeps bf16 where native). A forced ``bf16`` trains
    with bf16 autocast (fp32 master weights, channels_last convolutions) where the CPU has native
    bf16 (AVX512-BF16/AMX) and falls back to fp32 elsewhere, since emulated bf16 is slower still.
    fp16 is CUDA only.
    """
    if device.type != "cuda":
        if config.precision == "fp32":
            return "fp32"
        capability = torch.backends.cpu.get_cpu_capability()
        if config.precision == "fp16":
            log.warning("precision fp16 is used on CUDA only; training in fp32 on %s", device)
            return "fp32"
        if config.precision == "auto":
            log.info(
                "precision auto: fp32 on the CPU (capability %s; bf16 autocast training measured "
                "0.65x fp32 on an AVX512-BF16 CPU; set precision = \"bf16\" to train in bf16 anyway)",
                capability,
            )
            return "fp32"
        if cpu_bf16_native():
            log.info("precision bf16: bf16 autocast on this CPU (native bf16, %s)", capability)
            return "bf16"
        log.warning(
            "precision bf16 asked for, but this CPU has no native bf16 (no AVX512-BF16/AMX; "
            "capability %s): emulated bf16 is slower than fp32, so training in fp32", capability,
        )
        return "fp32"
    if config.precision == "fp32":
        return "fp32"
    if config.precision == "fp16":
        return "fp16"
    if config.precision == "bf16" or torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp16"


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
    if is_main:
        for message in single_class_warnings(train):
            log.warning("%s", message)
    return train, [v for v in validation if len(v)], reports


def single_class_warnings(datasets: Sequence[LabeledDataset]) -> list[str]:
    """One line per (dataset, attribute) whose labeled rows all carry the same label: the head
    learns nothing from that dataset but "always say X"."""
    messages = []
    for dataset in datasets:
        for attribute in dataset.attributes:
            counts = {label: n for label, n in dataset.label_counts(attribute).items() if n}
            if len(counts) == 1:
                (label, n), = counts.items()
                messages.append(
                    f"dataset {dataset.name!r}: every labeled row ({n}) of {attribute!r} is "
                    f"{label!r}, so it teaches the {attribute!r} head a single class; add rows of "
                    "other labels, or train it with another dataset that has them."
                )
    return messages


def unvalidated_attributes(train: Sequence[LabeledDataset], validation: Sequence[LabeledDataset]) -> list[str]:
    """The attributes the training data labels that no validation row labels (in training order):
    they train but are never evaluated and do not count in the validation score."""
    validated = {
        a for d in validation for a in d.attributes if any(label is not None for label in d.labels[a])
    }
    return list(dict.fromkeys(a for d in train for a in d.attributes if a not in validated))


def unvalidated_message(attributes: Sequence[str]) -> str:
    """The warning for :func:`unvalidated_attributes`: what it means and what to do."""
    names = ", ".join(repr(a) for a in attributes)
    return (
        f"no validation data for {names}: trained but never evaluated, and left out of the "
        "validation score; add a [[validation]] dataset that labels it, or leave `validation` "
        "out to hold out `val_fraction` of each training dataset."
    )


def frozen_components(model: FashionModel) -> dict[str, str]:
    """Fully frozen components, and the stages below a backbone's cut (state-dict prefix ->
    fingerprint): training cannot change them (no gradients, eval mode), so checkpoints and best
    weights leave them out."""
    paths = [
        path for path, module in model.component_modules().items()
        if (params := list(module.parameters())) and not any(p.requires_grad for p in params)
    ]
    frozen = {path.replace("/", ".") + ".": fp for path, fp in model.component_fingerprints_of(paths).items()}
    for key, backbone in model.backbones.items():
        cut = getattr(backbone, "train_from", None)
        if cut is None or f"backbones.{key}." in frozen:
            continue
        names = {id(m): n for n, m in backbone.named_modules()}
        fingerprint = backbone.below_fingerprint(cut)

        def add(module: nn.Module, key: str = key, names: dict[int, str] = names, fingerprint: str = fingerprint) -> None:
            name = names.get(id(module))
            if name:
                frozen[f"backbones.{key}.{name}."] = fingerprint
            else:  # a stage built of registered modules (e.g. a Sequential of the stem's layers)
                for child in module.children():
                    add(child)

        for module in backbone.modules_below(cut):
            add(module)
    return frozen


def apply_freeze(model: FashionModel, entries: Sequence[str]) -> dict[str, str]:
    """``freeze``: groups go to ``model.freeze``; ``<backbone group>@<cut>`` freezes a backbone
    below a cut point (a stage name, or the number of top blocks that train). Returns the cuts
    (backbone key -> cut point)."""
    plain = [e for e in entries if "@" not in e]
    if plain:
        model.freeze(plain)
    cuts: dict[str, str] = {}
    for entry in entries:
        if "@" not in entry:
            continue
        group, _, cut = entry.partition("@")
        if group in ("image-backbone", "text-backbone"):
            keys = [k for k, b in model.backbones.items() if b.modality == group.split("-")[0]]
        elif group == "backbones":
            keys = list(model.backbones)
        elif group.startswith("backbones/") and group.removeprefix("backbones/") in model.backbones:
            keys = [group.removeprefix("backbones/")]
        else:
            raise ConfigError(
                f"freeze entry {entry!r}: a cut applies to image-backbone, text-backbone, backbones "
                f"or one of {[f'backbones/{k}' for k in model.backbones]}, e.g. \"image-backbone@layer4\"."
            )
        for key in keys:
            cuts[key] = model.backbones[key].freeze_below(cut)
    return cuts


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
    "apply_freeze",
    "training_precision",
    "build_optimizer",
    "class_weights",
    "config_fingerprint",
    "frozen_components",
    "load_run_datasets",
    "unvalidated_attributes",
    "unvalidated_message",
    "resolve_device",
    "seed_everything",
    "set_train_mode",
]
