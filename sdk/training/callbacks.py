"""Training callbacks: what happens around the step loop (best weights, early stopping,
checkpoints, progress), each a small object with the same four hooks.

The trainer calls, in order of its ``callbacks`` list: :meth:`Callback.on_fit_start` once the
run is set up (after a resume), :meth:`Callback.on_step_end` after every optimizer step,
:meth:`Callback.on_epoch_end` after each epoch's history entry is written, and
:meth:`Callback.on_fit_end` when the loop is over (``completed`` is False when an exception
stopped it), before the final evaluation. A user callback may be a
:class:`Callback` or a plain function of a :class:`StepInfo` (called after every step); an
exception raised by any callback stops training at once (the last checkpoint stays).

The progress report (:class:`ProgressBar`: plain lines, and a live bar on a terminal) reads
losses from the device only when it writes a line or redraws the bar, so following a run costs
one host synchronization per ``log_every`` steps.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fashion._util.progress import format_seconds
from fashion.errors import ConfigError
from fashion.model.quantization import Simulation, simulate
from fashion.training.state import load_tensors, save_checkpoint, save_tensors

if TYPE_CHECKING:
    from fashion.training.config import TrainConfig
    from fashion.training.state import Run

log = logging.getLogger("fashion.training")


@dataclass
class StepInfo:
    """One optimizer step as a step callback sees it (the run's whole state is
    :class:`~fashion.training.state.TrainingState`)."""

    epoch: int
    step: int  # steps done in this epoch
    global_step: int
    steps_per_epoch: int
    losses: dict[str, Tensor] = field(default_factory=dict)  # this step's losses (no sync)


class Callback:
    """Base class: override the hooks you need (each does nothing by default)."""

    def on_fit_start(self, trainer: Run) -> None:
        """The run is set up (state restored when resuming); no step has run yet."""

    def on_step_end(self, trainer: Run, step: StepInfo) -> None:
        """After every optimizer step."""

    def on_epoch_end(self, trainer: Run, entry: dict[str, Any], improved: bool) -> None:
        """After an epoch's history ``entry``; ``improved``: its validation score is the best."""

    def on_fit_end(self, trainer: Run, completed: bool) -> None:
        """The loop is over; ``completed`` is False when an exception stopped it (it propagates
        after every callback's ``on_fit_end``). The final evaluation has not run."""


class StepFunction(Callback):
    """A plain ``fn(StepInfo)`` called after every step."""

    def __init__(self, fn: Callable[[StepInfo], None]) -> None:
        self.fn = fn

    def on_step_end(self, trainer: Run, step: StepInfo) -> None:
        self.fn(step)


class BestWeights(Callback):
    """Keep the weights of the best validation epoch (``best.safetensors``); load them at the end."""

    def __init__(self) -> None:
        self.best: dict[str, Tensor] | None = None

    def on_fit_start(self, trainer: Run) -> None:
        path = trainer.config.output_dir / "best.safetensors"
        if trainer.config.resume and trainer.state.best_epoch is not None and path.is_file():
            self.best = load_tensors(path)

    def on_epoch_end(self, trainer: Run, entry: dict[str, Any], improved: bool) -> None:
        if not improved:
            return
        self.best = {k: v.detach().cpu().clone() for k, v in trainer.state.model_tensors().items()}
        if trainer.is_main:
            save_tensors(self.best, trainer.config.output_dir / "best.safetensors")

    def on_fit_end(self, trainer: Run, completed: bool) -> None:
        if completed and self.best is not None:
            trainer.state.load_model_tensors(self.best, trainer.config.output_dir / "best.safetensors")


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation score."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, trainer: Run, entry: dict[str, Any], improved: bool) -> None:
        state = trainer.state
        state.stopped_early = (entry["val_macro_f1"] is not None and state.bad_epochs >= self.patience
                               and entry["epoch"] < trainer.config.epochs)  # the last epoch ends anyway


class Checkpointing(Callback):
    """Write a checkpoint every ``every`` steps (when set) and at the end of every epoch."""

    def __init__(self, every: int | None) -> None:
        self.every = every

    def save(self, trainer: Run) -> None:
        if trainer.is_main:
            state = trainer.state
            save_checkpoint(trainer.checkpoint_dir, state.global_step, state.model_tensors(), state.state_dict())

    def on_step_end(self, trainer: Run, step: StepInfo) -> None:
        if self.every and step.global_step % self.every == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer: Run, entry: dict[str, Any], improved: bool) -> None:
        self.save(trainer)


class ProgressBar(Callback):
    """What a person watching the run sees (main process only): plain lines through the
    ``fashion.training`` logger, and on a terminal a live bar.

    - every epoch: one line with its loss, throughput, validation metrics, the time it took
      and the run's ETA;
    - without a live bar (a CI job, ``nohup``, a log file): also one line every ``every`` steps
      with the loss, throughput, the epoch's ETA and the run's ETA;
    - with ``live``: a bar on stderr with the epoch's and the run's ETA (from this run's own
      measured step and validation times; rich's own estimate restarts at every epoch).

    Losses are read from the device only when a line is written or every 10 steps for the bar.
    """

    def __init__(self, live: bool = False, every: int | None = 50) -> None:
        self.live, self.every = live, every
        self.bar: Any = None
        self.sums: dict[str, Tensor] = {}  # per attribute, on the device: no sync per step
        self.counts: dict[str, int] = {}
        self.shown: dict[str, float] = {}  # the last mean shown per attribute

    @staticmethod
    def wanted(enabled: bool | None) -> bool:
        """Whether the live bar is shown: ``progress`` in the config, default: stderr is a terminal."""
        return sys.stderr.isatty() if enabled is None else enabled

    def on_fit_start(self, trainer: Run) -> None:
        if not trainer.is_main:
            return
        config = trainer.config
        total = trainer.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        self.total_steps, self.epochs = total, config.epochs
        self.batch_rows = config.batch_size
        self.first_step = self._global = trainer.state.global_step  # > 0 after a resume
        self.started = self.epoch_started = time.perf_counter()
        self.epoch_first = trainer.state.step_in_epoch
        self.train_seconds = 0.0  # time in steps (this process, since start), validation apart
        self.val_seconds: list[float] = []
        self.last_step = self.started
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[losses]}"),
                console=Console(stderr=True), transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=trainer.steps_per_epoch, epoch=1,
                                          epochs=config.epochs, eta="", losses="")

    # the clock ------------------------------------------------------------------------------

    def step_seconds(self) -> float | None:
        """Mean seconds per optimizer step in this run so far (validation excluded)."""
        done = self.done_steps
        return self.train_seconds / done if done > 0 else None

    def etas(self, epoch_left: int, global_step: int, steps_per_epoch: int) -> tuple[float, float] | None:
        """(epoch ETA, run ETA) in seconds: steps left times the mean step time, plus the mean
        validation pass for this epoch (while it runs) and for every epoch still to come."""
        per_step = self.step_seconds()
        if per_step is None:
            return None
        validation = sum(self.val_seconds) / len(self.val_seconds) if self.val_seconds else 0.0
        left = max(0, self.total_steps - global_step)
        passes = math.ceil(max(0, left - epoch_left) / max(1, steps_per_epoch)) + (1 if epoch_left else 0)
        return epoch_left * per_step + (validation if epoch_left else 0.0), left * per_step + passes * validation

    @property
    def done_steps(self) -> int:
        return self._global - self.first_step

    # the hooks ------------------------------------------------------------------------------

    def on_step_end(self, trainer: Run, step: StepInfo) -> None:
        if not trainer.is_main:
            return
        now = time.perf_counter()
        self.train_seconds += now - self.last_step
        self.last_step = now
        self._global = step.global_step
        for name, value in step.losses.items():  # every step's, not only the shown step's: an
            # attribute's batches may never fall on a logged step (MDMT batches one dataset each)
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1
        line_due = not self.live and self.every and step.global_step % self.every == 0
        bar_due = self.bar is not None and (step.step % 10 == 0 or step.step == step.steps_per_epoch)
        if not (line_due or bar_due):
            return
        if self.sums:  # the mean of each attribute's losses since the last line or redraw
            values = torch.stack(list(self.sums.values())).tolist()
            for name, value in zip(self.sums, values, strict=True):
                self.shown[name] = value / self.counts[name]
            self.sums, self.counts = {}, {}
        etas = self.etas(step.steps_per_epoch - step.step, step.global_step, step.steps_per_epoch)
        eta = "" if etas is None else f"ETA epoch {format_seconds(etas[0])}, run {format_seconds(etas[1])}"
        losses = " ".join(f"{k} {v:.3f}" for k, v in self.shown.items())
        if bar_due:
            self.bar.update(self.task, completed=step.step, total=step.steps_per_epoch,
                            epoch=step.epoch + 1, eta=eta, losses=losses)
        if line_due:
            per_step = self.step_seconds() or 0.0
            rate = f"{1 / per_step:.2f} steps/s ({self.batch_rows / per_step:.1f} rows/s)" if per_step else "-"
            log.info("epoch %d/%d step %d/%d: loss %s; %s; %s", step.epoch + 1, self.epochs, step.step,
                     step.steps_per_epoch, losses or "-", rate, eta)

    def on_epoch_end(self, trainer: Run, entry: dict[str, Any], improved: bool) -> None:
        if not trainer.is_main:
            return
        now = time.perf_counter()
        self._global = entry["global_step"]
        self.val_seconds.append(max(0.0, now - self.last_step))
        self.last_step = now
        steps = entry["steps"] - self.epoch_first
        self.epoch_first = 0
        rate = f"{steps / entry['seconds']:.2f} steps/s" if entry["seconds"] > 0 and steps > 0 else "-"
        score = entry["val_macro_f1"]
        val = "" if score is None else f"; val macro-F1 {score:.3f}" + "".join(
            f", {a} acc {m['accuracy']:.3f}" for a, m in entry["val"].items() if m.get("accuracy") is not None
        )
        etas = self.etas(0, entry["global_step"], trainer.steps_per_epoch)
        run_eta = "" if etas is None else f"; ETA run {format_seconds(etas[1])}"
        log.info("epoch %d/%d done: loss %.4f%s; %.1fs (validation %.1fs), %s%s%s", entry["epoch"], self.epochs,
                 entry["loss"], val, now - self.epoch_started, self.val_seconds[-1], rate,
                 " (best so far)" if improved and score is not None else "", run_eta)
        self.epoch_started = now

    def on_fit_end(self, trainer: Run, completed: bool) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def early_stopping_patience(config: TrainConfig, cached: bool) -> int | None:
    """``early_stopping_patience``, with ``auto`` resolved: 3 epochs for a run over cached
    features or activations (it memorizes them within a few epochs), none otherwise."""
    patience = config.early_stopping_patience
    if patience == "auto":
        return 3 if cached else None
    return patience


class QuantizationAware(Callback):
    """The trainer's callback for ``quantization_aware = true``: simulation on every image
    backbone from the first step, removed when the loop ends (before the final evaluation and
    the bundle)."""

    def __init__(self, weight_bits: int = 7) -> None:
        self.weight_bits = weight_bits
        self.simulations: list[Simulation] = []

    def on_fit_start(self, trainer: Any) -> None:
        if trainer.train_features is not None:
            raise ConfigError(
                "quantization_aware = true simulates int8 inside the image backbones, which "
                "training on cached features skips; set feature_cache = false (the frozen part "
                "then runs, simulated, every step) or train the backbones (strategy = \"full\")."
            )
        images = [b for b in trainer.model.backbones.values() if getattr(b, "modality", None) == "image"]
        if not images:
            raise ConfigError("quantization_aware = true needs an image backbone: int8-static "
                              "quantizes the image backbones only.")
        self.simulations = [simulate(b, weight_bits=self.weight_bits) for b in images]

    def on_fit_end(self, trainer: Any, completed: bool) -> None:
        for simulation in self.simulations:
            simulation.remove()
        self.simulations = []


def default_callbacks(config: TrainConfig, cached: bool) -> list[Callback]:
    """The trainer's own callbacks: best weights, early stopping, checkpoints, the progress report."""
    callbacks: list[Callback] = [QuantizationAware()] if config.quantization_aware else []
    callbacks.append(BestWeights())
    patience = early_stopping_patience(config, cached)
    if patience is not None:
        callbacks.append(EarlyStopping(patience))
    callbacks.append(Checkpointing(config.checkpoint_every))
    callbacks.append(ProgressBar(live=ProgressBar.wanted(config.progress), every=config.log_every))
    return callbacks


__all__ = ["BestWeights", "Callback", "Checkpointing", "EarlyStopping", "ProgressBar", "QuantizationAware", "StepFunction", "StepInfo", "default_callbacks", "early_stopping_patience"]
