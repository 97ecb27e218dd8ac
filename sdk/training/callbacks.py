"""Training callbacks: what happens around the step loop (best weights, early stopping,
checkpoints, progress), each a small object with the same four hooks.

The trainer calls, in order of its ``callbacks`` list: :meth:`Callback.on_fit_start` once the
run is set up (after a resume), :meth:`Callback.on_step_end` after every optimizer step,
:meth:`Callback.on_epoch_end` after each epoch's history entry is written, and
:meth:`Callback.on_fit_end` when the loop is over (``completed`` is False when an exception
stopped it), before the final evaluation. A user callback may be a
:class:`Callback` or a plain function of a :class:`TrainState` (called after every step); an
exception raised by any callback stops training at once (the last checkpoint stays).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

from .checkpoint import load_tensors, save_checkpoint, save_tensors
from .progress import Progress

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass
class TrainState:
    """Where training is; handed to step callbacks after every optimizer step."""

    epoch: int
    step: int  # steps done in this epoch
    global_step: int
    steps_per_epoch: int
    losses: dict[str, Tensor] = field(default_factory=dict)  # this step's losses (no sync)


class Callback:
    """Base class: override the hooks you need (each does nothing by default)."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """The run is set up (state restored when resuming); no step has run yet."""

    def on_step_end(self, trainer: Trainer, step: TrainState) -> None:
        """After every optimizer step."""

    def on_epoch_end(self, trainer: Trainer, entry: dict[str, Any], improved: bool) -> None:
        """After an epoch's history ``entry``; ``improved``: its validation score is the best."""

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        """The loop is over; ``completed`` is False when an exception stopped it (it propagates
        after every callback's ``on_fit_end``). The final evaluation has not run."""


class StepFunction(Callback):
    """A plain ``fn(TrainState)`` called after every step."""

    def __init__(self, fn: Callable[[TrainState], None]) -> None:
        self.fn = fn

    def on_step_end(self, trainer: Trainer, step: TrainState) -> None:
        self.fn(step)


class BestWeights(Callback):
    """Keep the weights of the best validation epoch (``best.safetensors``); load them at the end."""

    def __init__(self) -> None:
        self.best: dict[str, Tensor] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        path = trainer.config.output_dir / "best.safetensors"
        if trainer.config.resume and trainer.state.best_epoch is not None and path.is_file():
            self.best = load_tensors(path)

    def on_epoch_end(self, trainer: Trainer, entry: dict[str, Any], improved: bool) -> None:
        if not improved:
            return
        self.best = {k: v.detach().cpu().clone() for k, v in trainer.state.model_tensors().items()}
        if trainer.is_main:
            save_tensors(self.best, trainer.config.output_dir / "best.safetensors")

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        if completed and self.best is not None:
            trainer.state.load_model_tensors(self.best, trainer.config.output_dir / "best.safetensors")


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation score."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, trainer: Trainer, entry: dict[str, Any], improved: bool) -> None:
        state = trainer.state
        state.stopped_early = entry["val_macro_f1"] is not None and state.bad_epochs >= self.patience


class Checkpointing(Callback):
    """Write a checkpoint every ``every`` steps (when set) and at the end of every epoch."""

    def __init__(self, every: int | None) -> None:
        self.every = every

    def save(self, trainer: Trainer) -> None:
        if trainer.is_main:
            state = trainer.state
            save_checkpoint(trainer.checkpoint_dir, state.global_step, state.model_tensors(), state.state_dict())

    def on_step_end(self, trainer: Trainer, step: TrainState) -> None:
        if self.every and step.global_step % self.every == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer: Trainer, entry: dict[str, Any], improved: bool) -> None:
        self.save(trainer)


class ProgressBar(Callback):
    """A rich progress bar on stderr (main process only); losses are read every 10 steps."""

    def __init__(self) -> None:
        self.bar: Progress | None = None

    @staticmethod
    def wanted(enabled: bool | None) -> bool:
        return sys.stderr.isatty() if enabled is None else enabled

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.is_main:
            self.bar = Progress(trainer.config.epochs, trainer.steps_per_epoch)

    def on_step_end(self, trainer: Trainer, step: TrainState) -> None:
        if self.bar is not None:
            self.bar.update(step.epoch, step.step, step.steps_per_epoch, step.losses)

    def on_epoch_end(self, trainer: Trainer, entry: dict[str, Any], improved: bool) -> None:
        if self.bar is not None:
            self.bar.epoch_done(entry)

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = [
    "BestWeights",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "ProgressBar",
    "StepFunction",
    "TrainState",
]
