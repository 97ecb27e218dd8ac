"""Training callbacks: what happens around the step loop (best weights, early stopping,
checkpoints, progress), each a small object with the same four hooks.

The trainer calls, in order of its ``callbacks`` list: :meth:`Callback.on_fit_start` once the
run is set up (after a resume), :meth:`Callback.on_step_end` after every optimizer step,
:meth:`Callback.on_epoch_end` after each epoch's history entry is written, and
:meth:`Callback.on_fit_end` when the loop is over (``completed`` is False when an exception
stopped it), before the final evaluation. A user callback may be a
:class:`Callback` or a plain function of a :class:`StepInfo` (called after every step); an
exception raised by any callback stops training at once (the last checkpoint stays).

The progress display (:class:`Progress`, under :class:`ProgressBar`) reads losses from the
device every ``every`` steps only, so showing progress costs one host synchronization per
``every`` steps; with progress off the loop never synchronizes per step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

from fashion.training.state import load_tensors, save_checkpoint, save_tensors

if TYPE_CHECKING:
    from fashion.training.state import Run
import torch


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
        state.stopped_early = entry["val_macro_f1"] is not None and state.bad_epochs >= self.patience


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
    """A rich progress bar on stderr (main process only); losses are read every 10 steps."""

    def __init__(self) -> None:
        self.bar: Progress | None = None

    @staticmethod
    def wanted(enabled: bool | None) -> bool:
        return sys.stderr.isatty() if enabled is None else enabled

    def on_fit_start(self, trainer: Run) -> None:
        if trainer.is_main:
            self.bar = Progress(trainer.config.epochs, trainer.steps_per_epoch)

    def on_step_end(self, trainer: Run, step: StepInfo) -> None:
        if self.bar is not None:
            self.bar.update(step.epoch, step.step, step.steps_per_epoch, step.losses)

    def on_epoch_end(self, trainer: Run, entry: dict[str, Any], improved: bool) -> None:
        if self.bar is not None:
            self.bar.epoch_done(entry)

    def on_fit_end(self, trainer: Run, completed: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Progress:
    """A rich progress bar with per-task smoothed losses (reads losses every few steps only)."""

    def __init__(self, epochs: int, steps_per_epoch: int, every: int = 10) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.console = Console(stderr=True)
        self.epochs = epochs
        self.every = every
        self.smoothed: dict[str, float] = {}
        self.progress = RichProgress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps_per_epoch, epoch=1, epochs=epochs, losses="")

    def update(self, epoch: int, done: int, total: int, losses: dict[str, Tensor]) -> None:
        if done % self.every and done != total:
            return
        if losses:
            values = torch.stack(list(losses.values())).tolist()
            for name, value in zip(losses, values, strict=True):
                old = self.smoothed.get(name)
                self.smoothed[name] = value if old is None else 0.9 * old + 0.1 * value
        text = " ".join(f"{k} {v:.3f}" for k, v in self.smoothed.items())
        self.progress.update(self.task, completed=done, total=total, epoch=epoch + 1, losses=text)

    def epoch_done(self, entry: dict[str, Any]) -> None:
        score = entry["val_macro_f1"]
        val = f", val macro-F1 {score:.3f}" if score is not None else ""
        self.console.print(f"epoch {entry['epoch']}: loss {entry['loss']:.4f}{val} ({entry['seconds']:.1f}s)")

    def close(self) -> None:
        self.progress.stop()


__all__ = ["BestWeights", "Callback", "Checkpointing", "EarlyStopping", "Progress", "ProgressBar", "StepFunction", "StepInfo"]
