"""What a run is set up with: seeds, device, precision, datasets, the optimizer, its schedule,
class weights."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from fashion.contract.training import LossCombiner
from fashion.errors import ConfigError
from fashion.model.network import FashionModel
from fashion.model.precision import cpu_bf16_native, cpu_flags, cpu_model
from fashion.training.config import TrainConfig, cut_backbones
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


def start_lines(config: TrainConfig, device: torch.device, precision: str, memory_format: str = "contiguous",
                model: FashionModel | None = None, fixed_batchnorm: Collection[str] = ()) -> list[str]:
    """What a run logs before its first step: the precision asked and used, the threads, the
    CPU and the instruction sets that decide which precision is fast; for the backbones whose
    BatchNorm layers train, whether their statistics update or stay fixed (and why)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")
    flags = [f for f in wanted if f in cpu_flags()]
    threads = f"{torch.get_num_threads()} torch intra-op threads" + (
        f" (threads = {config.threads})" if config.threads else " (torch's default; set `threads` or --threads)")
    lines = [
        f"precision: asked {config.precision}, training in {precision} on {device}"
        + (", channels_last weights" if memory_format == "channels_last" else ""),
        f"{threads}, {os.cpu_count()} CPUs visible",
        f"CPU: {cpu_model()}; features: {', '.join(flags) or 'none of ' + '/'.join(wanted[:3])}; "
        f"torch capability {torch.backends.cpu.get_cpu_capability()}; native bf16: "
        f"{'yes' if cpu_bf16_native() else 'no'}",
    ]
    if model is not None:
        lines += batchnorm_lines(config.batchnorm_statistics, model, fixed_batchnorm)
    return lines


def config_fingerprint(config: TrainConfig) -> str:
    """Hash of the config fields a checkpoint depends on (resume refuses another)."""
    keys = (
        "model", "datasets", "validation", "val_fraction", "sampler", "sampler_options", "loss",
        "loss_options", "class_weights", "batch_size", "freeze", "seed",
    )
    data = config.model_dump(mode="json", include=set(keys))
    data["freeze"] = config.frozen_groups()  # `strategy` spelled out: the same run either way
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


@contextmanager
def freeze_for_one_fit(model: nn.Module | None) -> Iterator[None]:
    """A fit's ``freeze`` holds for that fit: each parameter's ``requires_grad`` is put back as
    the fit found it when it returns, so a second Trainer on the same model trains what its own
    config leaves unfrozen (not also what the first froze), and a parameter a plugin froze stays
    frozen."""
    given = [(p, p.requires_grad) for p in model.parameters()] if model is not None else []
    try:
        yield
    finally:
        for parameter, flag in given:
            parameter.requires_grad_(flag)


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
        keys = cut_backbones(model.spec, group, lambda k: model.backbones[k].modality)
        if keys is None:
            raise ConfigError(
                f"freeze entry {entry!r}: a cut applies to image-backbone, text-backbone or one of "
                f"{[f'backbones/{k}' for k in model.backbones]}, e.g. \"image-backbone@1\" (its top block trains)."
            )
        for key in keys:
            cuts[key] = model.backbones[key].freeze_below(cut)
    return cuts


def label_changing(name: str, spec: Any) -> list[str]:
    """The augmentations that change attribute ``name``'s label: its ``changed_by``, by default
    ``["hue"]`` for a color attribute (``color``, ``colour``, ``*_color``)."""
    if spec.changed_by is not None:
        return list(spec.changed_by)
    return ["hue"] if name in ("color", "colour") or name.endswith(("_color", "_colour")) else []


def check_augmentations(model: FashionModel) -> dict[str, list[str]]:
    """The train-time augmentations of each view (a cropper's ``augmentations()``); refuses
    one that an attribute declares would change its label (``changed_by``)."""
    views: dict[str, list[str]] = {}
    for view, cropper in model.croppers.items():
        active = list(getattr(cropper, "augmentations", list)())
        if not active:
            continue
        views[view] = active
        for name, spec in model.spec.attributes.items():
            clash = [a for a in active if a in label_changing(name, spec)]
            if clash:
                raise ConfigError(
                    f"view {view!r} augments with {', '.join(clash)}, which changes the label of "
                    f"attribute {name!r} (its changed_by: {label_changing(name, spec)}); remove "
                    f"{', '.join(clash)} from [model.views.{view}.options.augment], or set the "
                    f"attribute's changed_by if it does not."
                )
    return views


def set_train_mode(model: FashionModel, *, fixed_batchnorm: Collection[str] = ()) -> None:
    """Train mode, except croppers without train-time augmentation (they run in prepare),
    fully frozen components and the BatchNorm layers of the backbones named in
    ``fixed_batchnorm`` (they normalize with their running statistics, which stay)."""
    model.train()
    for cropper in model.croppers.values():
        cropper.train(bool(getattr(cropper, "augmentations", list)()))
    for module in model.component_modules().values():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()  # frozen: BatchNorm statistics and dropout stay fixed
    for norm in batchnorm_layers(model, fixed_batchnorm):
        norm.eval()


def batchnorm_layers(model: FashionModel, backbones: Collection[str] | None = None) -> list[torch.nn.Module]:
    """The BatchNorm layers of the model's backbones (of those named in ``backbones``, when given):
    what ``batchnorm_statistics`` governs."""
    return [m for key, backbone in model.backbones.items() if backbones is None or key in backbones
            for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def loaded_statistics(norm: torch.nn.Module) -> bool:
    """Whether a BatchNorm layer holds statistics other than PyTorch's initial ones (mean 0,
    variance 1): weights that were trained, by us or by whoever made the pretrained file."""
    mean, var = getattr(norm, "running_mean", None), getattr(norm, "running_var", None)
    if mean is None or var is None:
        return False
    return bool(mean.detach().abs().max() > 0 or (var.detach() - 1).abs().max() > 0)


def batchnorm_fixed(setting: str, model: FashionModel) -> list[str]:
    """The backbones (their keys) whose BatchNorm statistics stay fixed while they train, under
    ``batchnorm_statistics = setting``: ``fixed`` every backbone with a BatchNorm layer,
    ``update`` none, ``auto`` those whose BatchNorm layers carry loaded statistics (pretrained
    weights, a ``weights_path``, a bundle), not those randomly initialised. Decided once, on the
    model as built, before a checkpoint is restored (a resumed run decides as its start did)."""
    if setting == "update":
        return []
    keys = [key for key in model.backbones if batchnorm_layers(model, [key])]
    if setting == "fixed":
        return keys
    return [key for key in keys if any(loaded_statistics(n) for n in batchnorm_layers(model, [key]))]


def batchnorm_lines(setting: str, model: FashionModel, fixed: Collection[str]) -> list[str]:
    """Start lines: for each backbone with BatchNorm layers that train, whether their statistics
    update or stay fixed under ``batchnorm_statistics = setting``, and why."""
    lines = []
    for key, backbone in model.backbones.items():
        norms = [n for n in batchnorm_layers(model, [key]) if any(p.requires_grad for p in n.parameters())]
        if not norms:
            continue
        if key in fixed:
            why = "they were loaded trained" if setting == "auto" else "as asked"
            lines.append(f"batchnorm_statistics = {setting}: {key} ({backbone.name}) keeps the statistics of its "
                         f"{len(norms)} BatchNorm layers fixed ({why}): they normalize every batch with their "
                         "running statistics, which stay")
        else:
            why = " (they are PyTorch's initial ones: randomly initialised)" if setting == "auto" else ""
            lines.append(f"batchnorm_statistics = {setting}: {key} ({backbone.name}) updates the statistics of its "
                         f"{len(norms)} BatchNorm layers from each batch{why}")
    if setting == "fixed" and not batchnorm_layers(model):
        lines.append("batchnorm_statistics = fixed: the backbones have no BatchNorm layer; nothing to fix")
    return lines


__all__ = [
    "check_augmentations",
    "label_changing",
    "WarmupCosine",
    "apply_freeze",
    "batchnorm_fixed",
    "batchnorm_layers",
    "batchnorm_lines",
    "loaded_statistics",
    "start_lines",
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
