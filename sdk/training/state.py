"""The training state: where a run is, and everything a checkpoint saves and restores.

:class:`TrainingState` owns its serialization, the way torch optimizers do: one
:meth:`~TrainingState.state_dict` (what a checkpoint's ``state-<step>.pt`` holds) and one
:meth:`~TrainingState.load_state_dict` (what ``resume`` restores). The model's tensors travel
beside it in ``model-<step>.safetensors``: :meth:`~TrainingState.model_tensors` gives the ones
training can change (fully frozen components are left out and recorded by fingerprint).

A checkpoint is two files and a pointer, written atomically:

- ``model-<step>.safetensors``: the model's ``state_dict``;
- ``state-<step>.pt``: optimizer, scaler, loss-combiner and RNG states, counters and history,
  written with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors, numbers,
  strings, lists and dicts only: nothing is unpickled as code);
- ``checkpoint.json``: names the current pair. It is replaced last, with ``os.replace``, so a run
  killed at any moment leaves the previous checkpoint readable.

:class:`Run` is the trainer as callbacks and the end of a run see it.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from fashion.contract.training import LossCombiner
from fashion.errors import ConfigError
from fashion.model.network import FashionModel

if TYPE_CHECKING:
    from fashion.training.config import TrainConfig
    from fashion.training.data import DataReport, LabeledDataset

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
    precision: str = ""
    """The precision the run trains in (``auto``'s timed choice is kept by a resume)."""
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
            "precision": self.precision,
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
        self.precision = str(state.get("precision", ""))
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


POINTER = "checkpoint.json"


class Run(Protocol):
    """The trainer as callbacks and the end of a run see it: its config, model and state, the
    loaded data and three actions. :class:`~fashion.training.trainer.Trainer` is one."""

    config: TrainConfig
    model: FashionModel | None
    state: TrainingState
    device: torch.device
    precision: str
    is_main: bool
    world_size: int
    steps_per_epoch: int
    checkpoint_dir: Path
    cuts: Mapping[str, Any]
    fixed_batchnorm: list[str]
    train_sets: list[LabeledDataset]
    val_sets: list[LabeledDataset]
    val_features: list[Any] | None
    data_reports: list[DataReport]
    unvalidated: list[str]
    best_scores: tuple[int, Any] | None
    final_validation_passes: int

    def validate(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Score the validation datasets once: ``(per attribute, per dataset)`` metrics."""

    def write_history(self) -> None:
        """``history.json`` (main process only)."""

    def barrier(self) -> None:
        """Wait for every process of a distributed run."""


def _atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` then rename over ``path``; the file gets the umask's permissions."""
    from fashion._util.files import atomic_writer

    with atomic_writer(path) as tmp:
        write(str(tmp))


def save_tensors(state: Mapping[str, Tensor], path: str | Path) -> Path:
    """Write tensors to a safetensors file atomically."""
    from fashion.data.weights import safetensors_ready, save_safetensors

    return save_safetensors(safetensors_ready(state), path)


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), Python and NumPy random states, as weights-only-loadable values."""
    import numpy as np

    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )


def save_checkpoint(
    directory: str | Path, step: int, model_state: Mapping[str, Tensor], training_state: dict[str, Any]
) -> Path:
    """Write ``model-<step>``/``state-<step>``, then point ``checkpoint.json`` at them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_file = f"model-{step:09d}.safetensors"
    state_file = f"state-{step:09d}.pt"
    save_tensors(model_state, directory / model_file)
    _atomic(directory / state_file, lambda tmp: torch.save(training_state, tmp))
    pointer = {"step": step, "model": model_file, "state": state_file}
    _atomic(directory / POINTER, lambda tmp: Path(tmp).write_text(json.dumps(pointer) + "\n"))
    for old in (*directory.glob("model-*.safetensors"), *directory.glob("state-*.pt")):
        if old.name not in (model_file, state_file):
            old.unlink(missing_ok=True)
    return directory / POINTER


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """``(model tensors, training state)`` of the latest checkpoint, or ``None`` when there is none."""
    directory = Path(directory)
    pointer_path = directory / POINTER
    if not pointer_path.is_file():
        return None
    try:
        pointer = json.loads(pointer_path.read_text())
        model_state = load_tensors(directory / pointer["model"])
        state = torch.load(directory / pointer["state"], map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"checkpoint in {directory} is unreadable ({exc}); delete the folder to start over or "
            "point output_dir elsewhere."
        ) from None
    return model_state, state


__all__ = ["Run", "TrainingState", "load_checkpoint", "load_tensors", "rng_state", "save_checkpoint", "save_tensors", "set_rng_state"]
