"""The training state: where a run is, and everything a checkpoint saves and restores.

:class:`TrainingState` owns its serialization, the way torch optimizers do: one
:meth:`~TrainingState.state_dict` (what a checkpoint's ``state-<step>.pt`` holds) and one
:meth:`~TrainingState.load_state_dict` (what ``resume`` restores). The model's tensors travel
beside it in ``model-<step>.safetensors``: :meth:`~TrainingState.model_tensors` gives the ones
training can change (fully frozen components are left out and recorded by fingerprint).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..model import FashionModel
from .checkpoint import rng_state, set_rng_state
from .losses import LossCombiner

VERSION = 1


@dataclass
class TrainingState:
    """Counters, history, best score and the stateful objects of one run."""

    model: FashionModel
    optimizer: torch.optim.Optimizer
    combiner: LossCombiner
    scaler: torch.amp.GradScaler | None
    fingerprint: str
    """Hash of the config fields a checkpoint depends on (model, data, sampler, loss, seed...)."""
    frozen: dict[str, str]
    """Fully frozen components: state-dict prefix -> fingerprint (their tensors are not saved)."""
    tasks: list[str]
    device: torch.device
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    loss_sums: Tensor = field(init=False)
    loss_counts: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.loss_sums = torch.zeros(len(self.tasks), device=self.device)
        self.loss_counts = torch.zeros(len(self.tasks), dtype=torch.long)

    # -------------------------------------------------------------- scores

    def record_score(self, score: float | None, epoch: int) -> bool:
        """Book an epoch's validation score; True when it is the best so far."""
        if score is None:
            return False
        if self.best_score is None or score > self.best_score + 1e-9:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    # -------------------------------------------------------------- serialization

    def state_dict(self) -> dict[str, Any]:
        """Everything ``resume`` restores except the model's tensors (torch-saveable, weights-only)."""
        return {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "frozen": json.dumps(self.frozen),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
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

    def load_state_dict(self, state: Mapping[str, Any], source: Path) -> None:
        """Restore a :meth:`state_dict`; refuse one made by another run (``source`` names it)."""
        if state.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"the checkpoint in {source} was made with a different model, data, sampler, loss, "
                "batch size, freeze or seed; train into a new output_dir or drop resume."
            )
        frozen = json.loads(state["frozen"]) if "frozen" in state else {}
        if any(self.frozen.get(prefix) != fp for prefix, fp in frozen.items()):
            raise ConfigError(
                f"the frozen components of the model differ from those the checkpoint in {source} "
                "was trained with (their weights are not in the checkpoint); resume with the same "
                "base weights, or train into a new output_dir."
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.combiner.load_state_dict(state["combiner"])
        set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.history = json.loads(state["history"])
        best = float(state["best_score"])
        self.best_score = None if math.isnan(best) else best
        self.best_epoch = None if int(state["best_epoch"]) < 0 else int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_early = bool(state.get("stopped_early", False))
        self.loss_sums = state["loss_sums"].to(self.device)
        self.loss_counts = state["loss_counts"].clone()

    # -------------------------------------------------------------- model tensors

    def model_tensors(self) -> dict[str, Tensor]:
        """The model's tensors that training can change (everything but frozen components)."""
        prefixes = tuple(self.frozen)
        return {k: v for k, v in self.model.state_dict().items() if not (prefixes and k.startswith(prefixes))}

    def load_model_tensors(self, tensors: Mapping[str, Tensor], source: Path) -> None:
        """Load a (possibly partial) state: every key not under a frozen component must be there."""
        result = self.model.load_state_dict(dict(tensors), strict=False)
        prefixes = tuple(self.frozen)
        missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
        if missing or result.unexpected_keys:
            raise ConfigError(
                f"{source} does not match the model (missing {missing[:5]}, unexpected "
                f"{list(result.unexpected_keys)[:5]}); train into a new output_dir or drop resume."
            )


__all__ = ["TrainingState"]
