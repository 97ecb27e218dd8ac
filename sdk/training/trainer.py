"""The multi-data multi-task trainer: the step loop.

``Trainer(model, config).fit()`` trains one model on several datasets that each label some of
its attributes. Every step reads a batch (or, with ``all_tasks``, one batch per dataset), runs
only the heads of the attributes that batch labels, combines their losses, and takes one AdamW
step. Around the loop: the step loader (:mod:`.loader`), the state and its checkpoints
(:mod:`.state`), the callbacks for best weights, early stopping, checkpoints and progress
(:mod:`.callbacks`), the run's setup (:mod:`.runtime`) and its end: final evaluation, test
scores, the bundle, :class:`TrainResult` (:mod:`.result`). See ``docs/training.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fashion.errors import ConfigError, FashionError
from fashion.model.network import FashionModel
from fashion.model.precision import autocast_dtype
from fashion.training.cache import CachedFeatures, FeatureCache
from fashion.training.callbacks import Callback, StepFunction, StepInfo, default_callbacks
from fashion.training.config import TrainConfig, check_compatible
from fashion.training.data import DataReport
from fashion.training.evaluation import EvaluationReport, score_datasets
from fashion.training.loader import LoadedPart, StepLoader, fill_and_load_cache
from fashion.training.losses import get_loss, get_loss_class
from fashion.training.result import TrainResult, finish_run, run_provenance
from fashion.training.runtime import (
    WarmupCosine,
    apply_freeze,
    batchnorm_fixed,
    build_optimizer,
    check_augmentations,
    class_weights,
    config_fingerprint,
    freeze_for_one_fit,
    frozen_components,
    load_run_datasets,
    resolve_device,
    seed_everything,
    set_train_mode,
    start_lines,
    unvalidated_attributes,
    unvalidated_message,
)
from fashion.training.samplers import Step, get_sampler, make_generator
from fashion.training.state import TrainingState, load_checkpoint
from fashion.training.step import (
    StepModule,
    auto_precision,
    autocast,
    depthwise_convolutions,
    pcgrad_backward,
    precision_candidates,
    training_precision,
)

log = logging.getLogger("fashion.training")


class TrainingError(FashionError, RuntimeError):
    """Training cannot go on (the loss diverged, a process failed)."""


class Trainer:
    """Train a :class:`~fashion.FashionModel` on several partially labeled datasets.

    ``model`` may be ``None``: it is then built from ``config.model`` (after seeding).
    ``callbacks`` are :class:`~fashion.training.Callback` objects or functions called with a
    :class:`StepInfo` after every optimizer step; an exception raised by one stops training at
    once (the last checkpoint stays, ``resume=True`` goes on).
    """

    def __init__(
        self,
        model: FashionModel | None,
        config: TrainConfig | dict[str, Any],
        *,
        callbacks: Sequence[Callback | Callable[[StepInfo], None]] = (),
    ) -> None:
        if isinstance(config, dict):
            config = TrainConfig.parse(config)
        check_compatible(config.sampler, config.loss)
        if model is None and config.model is None:
            raise ConfigError("give the Trainer a model or set `model` (a model spec) in the config.")
        self.config = config
        self.model = model
        self.user_callbacks = [c if isinstance(c, Callback) else StepFunction(c) for c in callbacks]
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self._owns_process_group = False
        self.cache: FeatureCache | None = None
        self.data_reports: list[DataReport] = []
        self.best_scores: tuple[int, Any] | None = None
        """``(epoch, (per attribute, per dataset))`` metrics of the best epoch scored by this process."""
        self.unvalidated: list[str] = []
        self.final_validation_passes = 0
        """Validation passes the final evaluation ran (0 unless the best epoch ran before a resume)."""

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history if hasattr(self, "state") else []

    @property
    def checkpoint_dir(self) -> Path:
        return self.config.output_dir / "checkpoints"

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

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # -------------------------------------------------------------- setup

    def _load_data(self, model: FashionModel) -> None:
        self.train_sets, self.val_sets, self.data_reports = load_run_datasets(self.config, model, is_main=self.is_main)
        self.unvalidated = unvalidated_attributes(self.train_sets, self.val_sets)
        if self.unvalidated and self.is_main:
            log.warning("%s", unvalidated_message(self.unvalidated))

    def _prepare_cache(self, model: FashionModel) -> None:
        self.cache, self.train_variants, self.val_features = fill_and_load_cache(self, model)
        self.train_features = self.train_variants[0]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self._amp_dtype, self._depthwise)

    def _setup(self) -> tuple[FashionModel, list[Callback]]:
        """Model on the device, data, optimizer, state (restored when resuming), step module."""
        config = self.config
        seed_everything(config.seed)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device, self.local_rank)
        for dataset in [*config.datasets, *(config.validation or []), *(config.test or [])]:
            dataset.manifest_path()  # a missing file or folder is reported before the model loads
        if self.model is None:
            self.model = FashionModel(config.model, pretrained=config.pretrained)  # type: ignore[arg-type]
        elif config.model is not None and config.model != self.model.spec:
            log.warning("the config's model spec differs from the model given to the Trainer; "
                        "training the given model (its spec is what the bundle records)")
        if config.model != self.model.spec:
            self.config = config = config.model_copy(update={"model": self.model.spec})
        model = self.model.to(self.device)
        groups = config.frozen_groups()
        self.cuts = apply_freeze(model, groups) if groups else {}
        check_augmentations(model)
        self.fixed_batchnorm = batchnorm_fixed(config.batchnorm_statistics, model)  # before a restore
        self.candidates = precision_candidates(config, self.device, model)
        self._set_precision(self.candidates[0] if len(self.candidates) > 1 else training_precision(config, self.device))
        if self._amp_dtype == torch.float16 and get_loss_class(config.loss).gradient_surgery:
            raise ConfigError(f"loss {config.loss!r} does not support fp16; set precision = \"bf16\" or \"fp32\".")
        frozen = frozen_components(model)
        self._load_data(model)

        frozen_backbones = not any(p.requires_grad for p in model.backbones.parameters())
        # every backbone fully frozen or frozen below a cut: train on cached features/activations
        cacheable = all(key in self.cuts or not any(p.requires_grad for p in b.parameters())
                        for key, b in model.backbones.items())
        cached = cacheable and config.feature_cache
        self.train_features: list[CachedFeatures] | None = None
        self.val_features: list[CachedFeatures] | None = None
        if cached:
            self._prepare_cache(model)

        self.tasks = model.attributes
        self.task_index = {a: i for i, a in enumerate(self.tasks)}
        self._positions: dict[tuple[str, ...], tuple[Tensor, Tensor]] = {}
        combiner = get_loss(config.loss, self.tasks, config.loss_options).to(self.device)
        optimizer = build_optimizer(config, model, combiner, self.device)
        self._base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.trainable = [p for g in optimizer.param_groups for p in g["params"]]
        scaler = torch.amp.GradScaler("cuda") if self._amp_dtype == torch.float16 else None
        self.state = TrainingState(
            model, optimizer, combiner, scaler, config_fingerprint(config), frozen, self.tasks, self.device
        )
        self.sampler = get_sampler(config.sampler, config.sampler_options)
        self.sizes = [len(d) for d in self.train_sets]
        self.steps_per_epoch = len(self.sampler.schedule(self.sizes, config.batch_size, epoch=0, seed=config.seed))
        total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        s = config.schedule
        self.lr_factor = WarmupCosine(s.warmup_steps, total_steps, s.cosine, s.min_lr_ratio)
        if config.resume:
            self._restore()
        elif self.is_main and (self.checkpoint_dir / "checkpoint.json").exists():
            log.warning("%s holds a checkpoint; starting over (set resume = true to continue it)", config.output_dir)

        module = StepModule(model, combiner, class_weights(config, model, self.train_sets, self.device), cached, frozen_backbones,
                            modality_dropout=config.modality_dropout)
        if self.world_size > 1 and not combiner.gradient_surgery:
            from torch.nn.parallel import DistributedDataParallel

            self.step_module: nn.Module = DistributedDataParallel(module, find_unused_parameters=True)
        else:
            self.step_module = module
            if self.world_size > 1:
                import torch.distributed as dist

                for tensor in (*model.state_dict().values(), *combiner.state_dict().values()):
                    dist.broadcast(tensor, src=0)
        self.loader = StepLoader(
            model, self.train_sets, self.device, features=self.train_features,
            num_workers=config.num_workers, rank=self.rank, world_size=self.world_size,
        )
        if len(self.candidates) > 1:
            self._set_precision(auto_precision(self))
        self.state.precision = self.candidate
        if self.is_main:
            for line in start_lines(config, self.device, self.precision, self.memory_format, model, self.fixed_batchnorm):
                log.info("%s", line)
        return model, [*default_callbacks(config, cached), *self.user_callbacks]

    def _set_precision(self, candidate: str) -> None:
        """Autocast dtype and the weights' memory format of a precision candidate (``fp32``,
        ``fp32+channels_last``, ``bf16``...): on the CPU bf16 convolutions run channels_last
        (fastest NHWC), and fp32 ones where ``auto`` timed that layout faster."""
        precision, _, layout = candidate.partition("+")
        self.candidate = candidate
        self._amp_dtype = autocast_dtype(precision)
        self.precision = precision
        self._depthwise = depthwise_convolutions(self.model) if self.model is not None else []
        self.memory_format = "contiguous"
        if self.device.type == "cpu":
            if self._amp_dtype is not None or layout == "channels_last":
                self.memory_format = "channels_last"
            self.model.to(memory_format=torch.channels_last if self.memory_format == "channels_last"  # type: ignore[union-attr]
                          else torch.contiguous_format)

    def _restore(self) -> None:
        found = load_checkpoint(self.checkpoint_dir)
        if found is None:
            log.info("resume: no checkpoint in %s; starting from scratch", self.checkpoint_dir)
            return
        model_state, saved = found
        self.state.load_state_dict(saved, self.checkpoint_dir)
        self.state.load_model_tensors(model_state, self.checkpoint_dir)
        log.info("resumed from epoch %d step %d", self.state.epoch, self.state.step_in_epoch)

    # -------------------------------------------------------------- the loop

    def fit(self) -> TrainResult:
        """Train; returns the history, best epoch and score, the final evaluation and bundle path.
        The config's ``freeze`` holds for this fit: each parameter's ``requires_grad`` ends as it began."""
        self._setup_distributed()
        try:
            with freeze_for_one_fit(self.model):
                return self._fit()
        finally:
            if self._owns_process_group:
                import torch.distributed as dist

                dist.destroy_process_group()
                self._owns_process_group = False

    def _fit(self) -> TrainResult:
        model, callbacks = self._setup()
        self.callbacks = callbacks
        config, state = self.config, self.state
        if self.is_main:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            (config.output_dir / "data_report.json").write_text(
                json.dumps([r.to_dict() for r in self.data_reports], indent=2, default=str) + "\n"
            )
        completed = False
        try:
            for callback in callbacks:
                callback.on_fit_start(self)
            while state.epoch < config.epochs and not self._budget_spent() and not state.stopped_early:
                schedule = self.sampler.schedule(self.sizes, config.batch_size, epoch=state.epoch, seed=config.seed)
                self._run_epoch(schedule)
            completed = True
        finally:
            for callback in callbacks:
                callback.on_fit_end(self, completed)
        return finish_run(self)

    def _run_epoch(self, schedule: list[Step]) -> None:
        """Steps ``state.step_in_epoch..`` of an epoch's schedule (this process's shard), then its end."""
        state = self.state
        epoch, first = state.epoch, state.step_in_epoch
        if first == 0:
            state.loss_sums.zero_()
            state.loss_counts.zero_()
        started = time.perf_counter()
        set_train_mode(self.model, fixed_batchnorm=self.fixed_batchnorm)  # type: ignore[arg-type]
        if self.train_features is not None:  # augmented cache: epoch e trains on variant e mod K
            self.loader.features = self.train_variants[epoch % len(self.train_variants)]
        for parts in self.loader(schedule[first:]):
            losses = self._optimizer_step(parts)
            state.global_step += 1
            state.step_in_epoch += 1
            if losses:
                on_device, on_cpu = self._task_positions(tuple(losses))
                state.loss_sums.index_add_(0, on_device, torch.stack(list(losses.values())).detach().float())
                state.loss_counts[on_cpu] += 1
            if self.callbacks:
                detached = {a: v.detach() for a, v in losses.items()}
                info = StepInfo(epoch, state.step_in_epoch, state.global_step, len(schedule), detached)
                for callback in self.callbacks:
                    callback.on_step_end(self, info)
            if self._budget_spent():
                break
        self._end_epoch(time.perf_counter() - started)

    def _task_positions(self, names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """Positions of attributes in ``self.tasks`` on the device and on the CPU (cached)."""
        found = self._positions.get(names)
        if found is None:
            cpu = torch.tensor([self.task_index[a] for a in names])
            found = (cpu.to(self.device), cpu)
            self._positions[names] = found
        return found

    def _budget_spent(self) -> bool:
        return self.config.max_steps is not None and self.state.global_step >= self.config.max_steps

    def _optimizer_step(self, parts: list[LoadedPart]) -> dict[str, Tensor]:
        state = self.state
        factor = self.lr_factor(state.global_step)
        for group, base in zip(state.optimizer.param_groups, self._base_lrs, strict=True):
            group["lr"] = base * factor
        with self._autocast():
            total, losses = self.step_module(parts)
        if not losses:
            return losses
        scaler = state.scaler
        if state.combiner.gradient_surgery:
            generator = make_generator(self.config.seed, "pcgrad", state.global_step)
            pcgrad_backward(losses, self.trainable, self.task_index, generator, self.world_size)
        elif scaler is not None:
            scaler.scale(total).backward()
        else:
            total.backward()
        if scaler is not None:
            scaler.unscale_(state.optimizer)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip)
        if scaler is not None:
            scaler.step(state.optimizer)
            scaler.update()
        else:
            state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        return losses

    def _end_epoch(self, seconds: float) -> None:
        """Epoch mean losses, validation, the history entry, then the callbacks' epoch end."""
        state = self.state
        sums = state.loss_sums.clone()
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
            sums /= self.world_size
        counts = state.loss_counts.clamp(min=1).to(self.device)
        means = (sums / counts).tolist()
        seen_counts = state.loss_counts.tolist()
        mean_losses = {a: (means[i] if seen_counts[i] > 0 else float("nan")) for i, a in enumerate(self.tasks)}
        bad = [a for a, v in mean_losses.items() if not math.isfinite(v) and seen_counts[self.task_index[a]] > 0]
        if bad:
            raise TrainingError(
                f"the loss of {bad} is not finite at epoch {state.epoch + 1}; lower optimizer.lr_head / "
                "lr_backbone, set grad_clip, or check the labels."
            )
        seen = [v for v in mean_losses.values() if math.isfinite(v)]
        scores = self.validate()
        report = None if scores is None else EvaluationReport(scores[0])
        val_metrics, score = ({}, None) if report is None else (report.summary()["attributes"], report.mean_macro_f1)
        state.combiner.end_epoch(mean_losses)
        entry: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "steps": state.step_in_epoch,
            "global_step": state.global_step,
            "loss": sum(seen) if seen else float("nan"),
            "losses": {a: v for a, v in mean_losses.items() if math.isfinite(v)},
            "loss_weights": state.combiner.weights(),
            "lr_head": self.config.optimizer.lr_head * self.lr_factor(max(0, state.global_step - 1)),
            "val": val_metrics,
            "val_macro_f1": score,
            "val_loss": None if report is None else report.mean_loss,
            "seconds": round(seconds, 3),
            "precision": self.precision,
            "memory_format": self.memory_format,
        }
        state.history.append(entry)
        improved = state.record_score(score, state.epoch + 1)
        if improved:
            self.best_scores = (state.epoch + 1, scores)  # reused by the final evaluation
        state.epoch, state.step_in_epoch = state.epoch + 1, 0
        self.write_history()
        for callback in self.callbacks:
            callback.on_epoch_end(self, entry, improved)

    def validate(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Score the validation datasets once: ``(per attribute, per dataset)`` metrics."""
        if not self.val_sets:
            return None
        return score_datasets(
            self.model,  # type: ignore[arg-type]
            self.val_sets,
            batch_size=self.config.eval_batch_size or self.config.batch_size,
            num_workers=self.config.num_workers,
            features=self.val_features,
            autocast=self._autocast if self._amp_dtype is not None else None,
        )

    def write_history(self) -> None:
        """``history.json`` (main process only)."""
        if self.is_main:
            (self.config.output_dir / "history.json").write_text(json.dumps(self.state.history, indent=2) + "\n")

    def provenance(self) -> dict[str, Any]:
        """What the bundle records of how this run was made (see :func:`.result.run_provenance`)."""
        return run_provenance(self)


__all__ = ["Callback", "TrainResult", "StepInfo", "Trainer", "TrainingError", "WarmupCosine"]
