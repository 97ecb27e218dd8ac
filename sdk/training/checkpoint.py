"""Atomic training checkpoints: model tensors as safetensors, the rest as plain tensors/numbers.

A checkpoint is two files and a pointer:

- ``model-<step>.safetensors``: the model's ``state_dict``;
- ``state-<step>.pt``: optimizer, scaler, loss-combiner and RNG states, counters and history,
  written with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors, numbers,
  strings, lists and dicts only: nothing is unpickled as code);
- ``checkpoint.json``: names the current pair. It is replaced last, with ``os.replace``, so a run
  killed at any moment leaves the previous checkpoint readable.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError

POINTER = "checkpoint.json"


def _atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` then rename over ``path``; the file gets the umask's permissions."""
    from .._files import atomic_writer

    with atomic_writer(path) as tmp:
        write(str(tmp))


def save_tensors(state: Mapping[str, Tensor], path: str | Path) -> Path:
    """Write tensors to a safetensors file atomically."""
    from ..weights import safetensors_ready, save_safetensors

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


__all__ = [
    "load_checkpoint",
    "load_tensors",
    "rng_state",
    "save_checkpoint",
    "save_tensors",
    "set_rng_state",
]
