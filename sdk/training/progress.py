"""The training progress display: a rich bar with per-attribute smoothed losses.

Losses are read from the device every ``every`` steps only, so showing progress costs one host
synchronization per ``every`` steps; with progress off the loop never synchronizes per step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


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


__all__ = ["Progress"]
