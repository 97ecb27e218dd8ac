"""The multi-data multi-task trainer.

``Trainer(model, config).fit()`` trains one model on several datasets that each label some of
its attributes. Every step reads a batch (or, with ``all_tasks``, one batch per dataset), runs
only the heads of the attributes that batch labels, combines their losses, and takes one AdamW
step. See ``docs/training.md`` for samplers, losses, the feature cache and checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..components import Head
from ..errors import ConfigError, FashionError
from ..model import FashionModel
from .cache import CachedFeatures, FeatureCache
from .checkpoint import (
    load_checkpoint,
    load_tensors,
    rng_state,
    save_checkpoint,
    save_tensors,
    set_rng_state,
)
from .config import TrainConfig, check_compatible
from .data import (
    BatchCollator,
    DataReport,
    describe_datasets,
    label_normalizers,
    load_dataset,
    stratified_split,
)
from .evaluation import EvaluationReport, iterate_steps, score_datasets
from .losses import LossCombiner, PCGradLoss, balanced_class_weights, get_loss
from .progress import Progress
from .samplers import Step, get_sampler, make_generator, shard_step

log = logging.getLogger("fashion.training")
IGNORE = -100


class TrainingError(FashionError, RuntimeError):
    """Training cannot go on (the loss diverged, a process failed)."""


@dataclass
class TrainState:
    """Where training is; handed to callbacks after every optimizer step."""

    epoch: int
    step: int  # steps done in this epoch
    global_step: int
    steps_per_epoch: int
    losses: dict[str, Tensor] = field(default_factory=dict)  # this step's losses (no sync)


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

    @property
    def final_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")


Callback = Callable[[TrainState], None]


# ------------------------------------------------------------------------------ helpers


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resolve_device(name: str, local_rank: int) -> torch.device:
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


def _precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
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


def _config_fingerprint(config: TrainConfig) -> str:
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


def _masked_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor, weight: Tensor | None) -> Tensor:
    """``Head.loss`` for plain cross-entropy heads, without its host sync.

    The (weighted) mean over labeled rows; exactly zero, still connected to the graph, when no
    row is labeled (a shard of a distributed step may hold none).
    """
    total = F.cross_entropy(
        logits.float(), target.masked_fill(~mask, IGNORE), weight=weight, ignore_index=IGNORE,
        reduction="sum",
    )
    if weight is None:
        denominator = mask.sum()
    else:
        denominator = (weight.index_select(0, target) * mask).sum()
    return total / denominator.clamp(min=1e-12)


class _StepModule(nn.Module):
    """Forward of one training step: per-attribute losses and their combination.

    Only the heads of attributes present in a part's targets run, so a batch from a dataset that
    does not label an attribute gives that head no loss and no gradient.
    """

    def __init__(
        self, model: FashionModel, combiner: LossCombiner, class_weights: dict[str, Tensor],
        cached: bool, frozen_backbones: bool,
    ) -> None:
        super().__init__()
        self.model = model
        self.combiner = combiner
        self.class_weights = class_weights
        self.cached = cached
        self.frozen_backbones = frozen_backbones
        self.fast_ce = {a: type(model.task(a)).loss is Head.loss for a in model.attributes}

    def forward(self, parts: Sequence[tuple[Any, dict[str, tuple[Tensor, Tensor]]]]) -> tuple[Tensor, dict[str, Tensor]]:
        per_task: dict[str, list[Tensor]] = {}
        for inputs, targets in parts:
            if self.cached:
                features, masks = inputs
            elif self.frozen_backbones:
                with torch.no_grad():
                    features, masks = self.model.encode(inputs)
            else:
                features, masks = self.model.encode(inputs)
            logits = self.model.head_logits(features, masks, list(targets))
            for attribute, (target, mask) in targets.items():
                x = logits[attribute]
                weight = self.class_weights.get(attribute)
                if self.fast_ce[attribute]:
                    loss = _masked_cross_entropy(x, target, mask, weight)
                else:
                    loss = self.model.task(attribute).loss(x, target, mask, weight)
                per_task.setdefault(attribute, []).append(loss)
        losses = {a: v[0] if len(v) == 1 else torch.stack(v).mean() for a, v in per_task.items()}
        return self.combiner(losses), losses


# ------------------------------------------------------------------------------ trainer


class Trainer:
    """Train a :class:`~fashion.FashionModel` on several partially labeled datasets.

    ``model`` may be ``None``: it is then built from ``config.model`` (after seeding).
    ``callbacks`` are called with a :class:`TrainState` after every optimizer step; an exception
    raised by one stops training at once (the last checkpoint stays, ``resume=True`` goes on).
    """

    def __init__(
        self,
        model: FashionModel | None,
        config: TrainConfig | dict[str, Any],
        *,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        if isinstance(config, dict):
            config = TrainConfig.parse(config)
        check_compatible(config.sampler, config.loss)
        if model is None and config.model is None:
            raise ConfigError("give the Trainer a model or set `model` (a model spec) in the config.")
        self.config = config
        self.model = model
        self.callbacks = list(callbacks)
        self.history: list[dict[str, Any]] = []
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self._owns_process_group = False
        self.cache: FeatureCache | None = None
        self.data_reports: list[DataReport] = []

    # -------------------------------------------------------------- distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _setup_distributed(self) -> None:
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return
        if not dist.is_initialized():
            use_cuda = self.config.device != "cpu" and torch.cuda.is_available()
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            self._owns_process_group = True
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # -------------------------------------------------------------- setup

    def _load_data(self, model: FashionModel) -> None:
        config = self.config
        normalizers = label_normalizers(model, config.taxonomies)
        options = {
            "normalizers": normalizers, "on_unknown_label": config.on_unknown_label,
            "on_bad_row": config.on_bad_row, "verify_images": config.verify_images,
        }
        train = [load_dataset(d, model, **options) for d in config.datasets]  # type: ignore[arg-type]
        names = [d.name for d in train]
        if len(set(names)) != len(names):
            raise ConfigError(f"dataset names must be unique, got {names}; rename one of them.")
        self.data_reports = [d.report for d in train]
        if config.validation is not None:
            validation = [load_dataset(d, model, **options) for d in config.validation]  # type: ignore[arg-type]
            self.data_reports += [d.report for d in validation]
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
        for report in self.data_reports:
            if report.problems and self.is_main:
                log.warning("%s", report.summary())
        self.train_sets = train
        self.val_sets = [v for v in validation if len(v)]

    def _class_weights(self, model: FashionModel, device: torch.device) -> dict[str, Tensor]:
        if self.config.class_weights != "balanced":
            return {}
        weights: dict[str, Tensor] = {}
        for attribute in model.attributes:
            labels = model.task(attribute).labels
            counts = torch.zeros(len(labels), dtype=torch.long)
            for dataset in self.train_sets:
                if attribute in dataset.attributes:
                    for label, n in dataset.label_counts(attribute).items():
                        counts[labels.index(label)] += n
            if counts.sum() > 0:
                weights[attribute] = balanced_class_weights(counts).to(device)
        return weights

    def _build_optimizer(self, model: FashionModel, combiner: LossCombiner, device: torch.device) -> torch.optim.Optimizer:
        opt = self.config.optimizer
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
                f"nothing to train: every parameter is frozen (freeze={self.config.freeze}); "
                "unfreeze a group."
            )
        param_groups = [
            {
                "params": params,
                "lr": opt.lr_backbone if kind == "backbone" else opt.lr_head,
                "weight_decay": opt.weight_decay if decay else 0.0,
            }
            for (kind, decay), params in groups.items()
        ]
        self._base_lrs = [g["lr"] for g in param_groups]
        extra = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.AdamW(param_groups, betas=opt.betas, **extra)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._amp_dtype)

    # -------------------------------------------------------------- checkpoints

    def _checkpoint_dir(self) -> Path:
        return self.config.output_dir / "checkpoints"

    def _save(self, epoch: int, step_in_epoch: int) -> None:
        if not self.is_main:
            return
        state = {
            "version": 1,
            "fingerprint": self._fingerprint,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "combiner": self.combiner.state_dict(),
            "rng": rng_state(),
            "history": json.dumps(self.history),
            "best_score": self.best_score if self.best_score is not None else float("nan"),
            "best_epoch": self.best_epoch if self.best_epoch is not None else -1,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "loss_sums": self.loss_sums.detach().cpu(),
            "loss_counts": self.loss_counts.clone(),
        }
        state["frozen"] = json.dumps(self._frozen)
        save_checkpoint(self._checkpoint_dir(), self.global_step, self._trainable_state(), state)

    def _frozen_components(self, model: FashionModel) -> dict[str, str]:
        """Fully frozen components (state-dict prefix -> fingerprint): training cannot change
        them (no gradients, eval mode), so checkpoints and best weights leave them out."""
        paths = [
            path for path, module in model.component_modules().items()
            if (params := list(module.parameters())) and not any(p.requires_grad for p in params)
        ]
        return {path.replace("/", ".") + ".": fp for path, fp in model.component_fingerprints_of(paths).items()}

    def _trainable_state(self) -> dict[str, Tensor]:
        """The model's tensors that training can change (everything but frozen components)."""
        assert self.model is not None
        prefixes = tuple(self._frozen)
        return {k: v for k, v in self.model.state_dict().items() if not (prefixes and k.startswith(prefixes))}

    def _load_trainable(self, tensors: Mapping[str, Tensor], source: Path) -> None:
        """Load a (possibly partial) state: every key not under a frozen component must be there."""
        assert self.model is not None
        result = self.model.load_state_dict(dict(tensors), strict=False)
        prefixes = tuple(self._frozen)
        missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
        if missing or result.unexpected_keys:
            raise ConfigError(
                f"{source} does not match the model (missing {missing[:5]}, unexpected "
                f"{list(result.unexpected_keys)[:5]}); train into a new output_dir or drop resume."
            )

    def _restore(self) -> tuple[int, int] | None:
        found = load_checkpoint(self._checkpoint_dir())
        if found is None:
            log.info("resume: no checkpoint in %s; starting from scratch", self._checkpoint_dir())
            return None
        model_state, state = found
        if state.get("fingerprint") != self._fingerprint:
            raise ConfigError(
                f"the checkpoint in {self._checkpoint_dir()} was made with a different model, data, "
                "sampler, loss, batch size, freeze or seed; train into a new output_dir or drop resume."
            )
        frozen = json.loads(state["frozen"]) if "frozen" in state else {}
        if any(self._frozen.get(prefix) != fp for prefix, fp in frozen.items()):
            raise ConfigError(
                f"the frozen components of the model differ from those the checkpoint in "
                f"{self._checkpoint_dir()} was trained with (their weights are not in the "
                "checkpoint); resume with the same base weights, or train into a new output_dir."
            )
        self._load_trainable(model_state, self._checkpoint_dir())
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.combiner.load_state_dict(state["combiner"])
        set_rng_state(state["rng"])
        self.global_step = int(state["global_step"])
        self.history = json.loads(state["history"])
        best = float(state["best_score"])
        self.best_score = None if math.isnan(best) else best
        self.best_epoch = None if int(state["best_epoch"]) < 0 else int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_early = bool(state.get("stopped_early", False))
        self.loss_sums = state["loss_sums"].to(self.device)
        self.loss_counts = state["loss_counts"].clone()
        best_file = self.config.output_dir / "best.safetensors"
        if best_file.is_file():
            self.best_state = load_tensors(best_file)
        log.info("resumed from epoch %d step %d", state["epoch"], state["step_in_epoch"])
        return int(state["epoch"]), int(state["step_in_epoch"])

    # -------------------------------------------------------------- the loop

    def _present(self, step: Step) -> list[list[str]]:
        """Per part, the attributes labeled in at least one of the step's rows.

        Decided on the whole step before it is sharded, so every process runs the same heads.
        """
        present = []
        for d, rows in step:
            index = torch.as_tensor(rows, dtype=torch.long)
            targets = self.train_sets[d].targets
            present.append([a for a, (_, m) in targets.items() if bool(m.index_select(0, index).any())])
        return present

    def _steps(
        self, items: Sequence[tuple[Step, list[list[str]]]], features: Sequence[CachedFeatures] | None
    ) -> Iterator[list[tuple[Any, dict[str, tuple[Tensor, Tensor]]]]]:
        """Device-ready parts ``(inputs, targets)`` of each (sharded) step, in order."""
        device = self.device
        if features is not None:
            for step, present in items:
                parts = []
                for (d, rows), attributes in zip(step, present, strict=True):
                    index = torch.as_tensor(rows, dtype=torch.long)
                    targets = self.train_sets[d].targets
                    kept = {
                        a: (targets[a][0].index_select(0, index).to(device, non_blocking=True),
                            targets[a][1].index_select(0, index).to(device, non_blocking=True))
                        for a in attributes
                    }
                    parts.append((features[d].gather(index.to(device)), kept))
                yield parts
            return
        collate = BatchCollator(self.model, self.train_sets)  # type: ignore[arg-type]
        steps = [step for step, _ in items]
        for collated, (_, present) in zip(iterate_steps(steps, collate, self.config.num_workers), items, strict=True):
            parts = []
            for (_, batch, targets), attributes in zip(collated, present, strict=True):
                kept = {
                    a: (targets[a][0].to(device, non_blocking=True), targets[a][1].to(device, non_blocking=True))
                    for a in attributes
                }
                parts.append((batch.to(device), kept))
            yield parts

    def _optimizer_step(self, parts: list[tuple[Any, dict[str, tuple[Tensor, Tensor]]]]) -> dict[str, Tensor]:
        factor = self.lr_factor(self.global_step)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
            group["lr"] = base * factor
        with self._autocast():
            total, losses = self.step_module(parts)
        if not losses:
            return losses
        if self.combiner.gradient_surgery:
            self._pcgrad_backward(losses)
        elif self.scaler is not None:
            self.scaler.scale(total).backward()
        else:
            total.backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses

    def _pcgrad_backward(self, losses: dict[str, Tensor]) -> None:
        params = self.trainable
        sizes = [p.numel() for p in params]
        grads = torch.zeros(len(self.tasks), sum(sizes), device=self.device)
        names = list(losses)
        for i, name in enumerate(names):
            pieces = torch.autograd.grad(
                losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True
            )
            grads[self.task_index[name]] = torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(pieces, params, strict=True)]
            )
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(grads)
            grads /= self.world_size
        flat = PCGradLoss.project(grads, make_generator(self.config.seed, "pcgrad", self.global_step))
        for p, g in zip(params, flat.split(sizes), strict=True):
            p.grad = g.view_as(p).to(p.dtype)

    def _validate(self) -> tuple[dict[str, Any], float | None]:
        if not self.val_sets:
            return {}, None
        attributes, _ = score_datasets(
            self.model,  # type: ignore[arg-type]
            self.val_sets,
            batch_size=self.config.eval_batch_size or self.config.batch_size,
            num_workers=self.config.num_workers,
            features=self.val_features,
            autocast=self._autocast if self._amp_dtype is not None else None,
        )
        report = EvaluationReport(attributes)
        return report.summary()["attributes"], report.mean_macro_f1

    def _set_train_mode(self, model: FashionModel) -> None:
        model.train()
        model.croppers.eval()  # croppers run in prepare, always as in inference
        for module in model.component_modules().values():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()  # frozen: BatchNorm statistics and dropout stay fixed

    def fit(self) -> TrainResult:
        """Train; returns the history, best epoch and score, the final evaluation and bundle path."""
        self._setup_distributed()
        try:
            return self._fit()
        finally:
            if self._owns_process_group:
                import torch.distributed as dist

                dist.destroy_process_group()
                self._owns_process_group = False

    def _fit(self) -> TrainResult:
        config = self.config
        _seed_everything(config.seed)
        self.device = _resolve_device(config.device, self.local_rank)
        if self.model is None:
            self.model = FashionModel(config.model, pretrained=config.pretrained)  # type: ignore[arg-type]
        elif config.model is not None and config.model != self.model.spec:
            log.warning("the config's model spec differs from the model given to the Trainer; "
                        "training the given model (its spec is what the bundle records)")
        if config.model != self.model.spec:
            self.config = config = config.model_copy(update={"model": self.model.spec})
        model = self.model.to(self.device)
        if config.freeze:
            model.freeze(config.freeze)
        self._amp_dtype = _precision(config, self.device)
        if self._amp_dtype is not None and config.loss == "pcgrad" and self._amp_dtype == torch.float16:
            raise ConfigError("loss 'pcgrad' does not support fp16; set precision = \"bf16\" or \"fp32\".")
        self._fingerprint = _config_fingerprint(config)
        self._frozen = self._frozen_components(model)
        self._load_data(model)

        frozen_backbones = not any(p.requires_grad for p in model.backbones.parameters())
        cached = frozen_backbones and config.feature_cache
        self.train_features: list[CachedFeatures] | None = None
        self.val_features: list[CachedFeatures] | None = None
        if cached:
            self._prepare_cache(model)

        self.tasks = model.attributes
        self.task_index = {a: i for i, a in enumerate(self.tasks)}
        self._positions: dict[tuple[str, ...], tuple[Tensor, Tensor]] = {}
        self.combiner = get_loss(config.loss, self.tasks, config.loss_options).to(self.device)
        class_weights = self._class_weights(model, self.device)
        self.optimizer = self._build_optimizer(model, self.combiner, self.device)
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.scaler = torch.amp.GradScaler("cuda") if self._amp_dtype == torch.float16 else None
        sampler = get_sampler(config.sampler, config.sampler_options)
        sizes = [len(d) for d in self.train_sets]
        steps_per_epoch = len(sampler.schedule(sizes, config.batch_size, epoch=0, seed=config.seed))
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        s = config.schedule
        self.lr_factor = WarmupCosine(s.warmup_steps, total_steps, s.cosine, s.min_lr_ratio)

        self.global_step = 0
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.loss_sums = torch.zeros(len(self.tasks), device=self.device)
        self.loss_counts = torch.zeros(len(self.tasks), dtype=torch.long)
        start_epoch, start_step = 0, 0
        if config.resume:
            restored = self._restore()
            if restored is not None:
                start_epoch, start_step = restored
        elif self.is_main and (self._checkpoint_dir() / "checkpoint.json").exists():
            log.warning("%s holds a checkpoint; starting over (set resume = true to continue it)", config.output_dir)

        module = _StepModule(model, self.combiner, class_weights, cached, frozen_backbones)
        if self.world_size > 1 and not self.combiner.gradient_surgery:
            from torch.nn.parallel import DistributedDataParallel

            self.step_module: nn.Module = DistributedDataParallel(module, find_unused_parameters=True)
        else:
            self.step_module = module
            if self.world_size > 1:
                import torch.distributed as dist

                for tensor in (*model.state_dict().values(), *self.combiner.state_dict().values()):
                    dist.broadcast(tensor, src=0)

        if self.is_main:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            (config.output_dir / "data_report.json").write_text(
                json.dumps([r.to_dict() for r in self.data_reports], indent=2, default=str) + "\n"
            )
        progress = self._progress(steps_per_epoch)
        try:
            epoch = start_epoch
            while epoch < config.epochs and not self._budget_spent() and not self.stopped_early:
                schedule = sampler.schedule(sizes, config.batch_size, epoch=epoch, seed=config.seed)
                self._run_epoch(epoch, schedule, start_step if epoch == start_epoch else 0, progress)
                epoch += 1
        finally:
            if progress is not None:
                progress.close()
        return self._finish(self.stopped_early)

    def _run_epoch(self, epoch: int, schedule: list[Step], first: int, progress: Progress | None) -> None:
        """Steps ``first..`` of an epoch's schedule (this process's shard), then the epoch end."""
        config = self.config
        if first == 0:
            self.loss_sums.zero_()
            self.loss_counts.zero_()
        mine = [
            (shard_step(step, self.rank, self.world_size), self._present(step))
            for step in schedule[first:]
        ]
        started = time.perf_counter()
        self._set_train_mode(self.model)  # type: ignore[arg-type]
        done = first
        for parts in self._steps(mine, self.train_features):
            losses = self._optimizer_step(parts)
            self.global_step += 1
            done += 1
            if losses:
                on_device, on_cpu = self._task_positions(tuple(losses))
                self.loss_sums.index_add_(0, on_device, torch.stack(list(losses.values())).detach().float())
                self.loss_counts[on_cpu] += 1
            if config.checkpoint_every and self.global_step % config.checkpoint_every == 0:
                self._save(epoch, done)
            if progress is not None:
                progress.update(epoch, done, len(schedule), losses)
            if self.callbacks:
                detached = {a: v.detach() for a, v in losses.items()}
                state = TrainState(epoch, done, self.global_step, len(schedule), detached)
                for callback in self.callbacks:
                    callback(state)
            if self._budget_spent():
                break
        self._end_epoch(epoch, done, time.perf_counter() - started, progress)

    def _task_positions(self, names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """Positions of attributes in ``self.tasks`` on the device and on the CPU (cached)."""
        found = self._positions.get(names)
        if found is None:
            cpu = torch.tensor([self.task_index[a] for a in names])
            found = (cpu.to(self.device), cpu)
            self._positions[names] = found
        return found

    def _budget_spent(self) -> bool:
        return self.config.max_steps is not None and self.global_step >= self.config.max_steps

    def _end_epoch(self, epoch: int, steps: int, seconds: float, progress: Progress | None) -> None:
        """Epoch mean losses, validation, history, best weights, early stopping, checkpoint."""
        config = self.config
        sums = self.loss_sums.clone()
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
            sums /= self.world_size
        counts = self.loss_counts.clamp(min=1).to(self.device)
        means = (sums / counts).tolist()
        mean_losses = {
            a: (means[i] if self.loss_counts[i] > 0 else float("nan")) for i, a in enumerate(self.tasks)
        }
        bad = [a for a, v in mean_losses.items() if not math.isfinite(v) and self.loss_counts[self.task_index[a]] > 0]
        if bad:
            raise TrainingError(
                f"the loss of {bad} is not finite at epoch {epoch + 1}; lower optimizer.lr_head / "
                "lr_backbone, set grad_clip, or check the labels."
            )
        seen = [v for v in mean_losses.values() if math.isfinite(v)]
        val_metrics, score = self._validate()
        self.combiner.end_epoch(mean_losses)
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "steps": steps,
            "global_step": self.global_step,
            "loss": sum(seen) if seen else float("nan"),
            "losses": {a: v for a, v in mean_losses.items() if math.isfinite(v)},
            "loss_weights": self.combiner.weights(),
            "lr_head": self.config.optimizer.lr_head * self.lr_factor(max(0, self.global_step - 1)),
            "val": val_metrics,
            "val_macro_f1": score,
            "seconds": round(seconds, 3),
        }
        self.history.append(entry)
        improved = score is None or self.best_score is None or score > self.best_score + 1e-9
        if score is not None and improved:
            self.best_score, self.best_epoch = score, epoch + 1
            self.bad_epochs = 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self._trainable_state().items()}
            if self.is_main:
                save_tensors(self.best_state, config.output_dir / "best.safetensors")
        elif score is not None:
            self.bad_epochs += 1
        self.stopped_early = (
            config.early_stopping_patience is not None
            and score is not None
            and self.bad_epochs >= config.early_stopping_patience
        )
        if self.is_main:
            (config.output_dir / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")
        self._save(epoch + 1, 0)
        if progress is not None:
            progress.epoch_done(entry)

    def _prepare_cache(self, model: FashionModel) -> None:
        config = self.config
        directory = config.cache_dir or (config.output_dir / "feature-cache")
        cache = FeatureCache(directory, model)
        batch_size = config.eval_batch_size or max(config.batch_size, 64)
        datasets = [*self.train_sets, *self.val_sets]
        if self.is_main:
            for dataset in datasets:
                cache.fill(dataset, batch_size=batch_size, autocast=self._autocast)
        self._barrier()
        loaded = [cache.load(d).to(self.device) for d in datasets]
        self.train_features = loaded[: len(self.train_sets)]
        self.val_features = loaded[len(self.train_sets) :]
        self.cache = cache
        log.info("feature cache %s: %d hits, %d computed", directory, cache.hits, cache.misses)

    def _finish(self, stopped_early: bool) -> TrainResult:
        config = self.config
        model = self.model
        assert model is not None
        if self.best_state is not None:
            self._load_trainable(self.best_state, config.output_dir / "best.safetensors")
        evaluation: EvaluationReport | None = None
        if self.val_sets:
            attributes, per_dataset = score_datasets(
                model, self.val_sets, batch_size=config.eval_batch_size or config.batch_size,
                num_workers=config.num_workers, features=self.val_features,
                autocast=self._autocast if self._amp_dtype is not None else None,
            )
            evaluation = EvaluationReport(attributes, per_dataset, [d.report for d in self.val_sets])
        model.eval()
        bundle_path: Path | None = None
        if self.is_main:
            (config.output_dir / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")
            plots: list[Path] = []
            if evaluation is not None:
                plots = [p for p in evaluation.save(config.output_dir / "evaluation") if p.suffix == ".png"]
            if config.save_bundle:
                bundle_path = self._save_bundle(model, evaluation, plots)
        self._barrier()
        return TrainResult(
            history=self.history,
            best_epoch=self.best_epoch,
            best_score=self.best_score,
            global_step=self.global_step,
            stopped_early=stopped_early,
            output_dir=config.output_dir,
            bundle_path=bundle_path,
            evaluation=evaluation,
            data_reports=self.data_reports,
        )

    def provenance(self) -> dict[str, Any]:
        import fashion

        return {
            "datasets": describe_datasets(self.train_sets),
            "validation": describe_datasets(self.val_sets),
            "data_reports": [
                {k: v for k, v in r.to_dict().items() if k != "problems"} | {"problems": len(r.problems)}
                for r in self.data_reports
            ],
            "seed": self.config.seed,
            "world_size": self.world_size,
            "epochs_run": len(self.history),
            "global_step": self.global_step,
            "best_epoch": self.best_epoch,
            "fashion_version": fashion.__version__,
            "torch_version": torch.__version__,
        }

    def _save_bundle(self, model: FashionModel, evaluation: EvaluationReport | None, plots: list[Path]) -> Path | None:
        try:
            from fashion.registry.bundle import save_bundle
        except ModuleNotFoundError:
            log.warning("fashion.registry.bundle is not installed; no bundle was written")
            return None
        metrics = (
            {a: m.to_dict() for a, m in evaluation.attributes.items()} if evaluation is not None else {}
        )
        plot_files = {p.stem.removeprefix("confusion_"): p for p in plots}
        return save_bundle(
            model,
            self.config.output_dir / "bundle",
            metrics=metrics,
            provenance=self.provenance(),
            training_config=self.config.model_dump(mode="json"),
            plots=plot_files or None,
        )

    def _progress(self, steps_per_epoch: int) -> Progress | None:
        enabled = self.config.progress
        if enabled is None:
            enabled = sys.stderr.isatty()
        if not enabled or not self.is_main:
            return None
        return Progress(self.config.epochs, steps_per_epoch)


__all__ = ["Callback", "TrainResult", "TrainState", "Trainer", "TrainingError", "WarmupCosine"]
