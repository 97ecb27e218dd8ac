"""Weight-file helpers for components that start from pretrained tensors (public API).

- :func:`load_state_dict_file`: the tensors of a ``.safetensors`` file or a ``.pth`` state_dict
  (read with ``weights_only=True``, so a pickle cannot run code).
- :func:`strip_prefix`: drop the attribute prefix a component adds (``"body."``) when the file
  was saved from the component itself rather than from the upstream library.
- :func:`contiguous_state`: a state-dict post hook that packs channels_last tensors, which
  safetensors needs.
- :func:`tensors_for_saving` / :func:`save_safetensors`: a module's state as CPU, contiguous,
  unshared tensors, written atomically as a byte-reproducible ``.safetensors`` file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fashion.errors import ConfigError, WeightsNotFoundError


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth`` state_dict (read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file {path} does not exist; fix the `weights_path` option or remove it."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-torch file: say which one
        raise ConfigError(
            f"weights file {path} cannot be read as a torch state_dict ({str(exc)[:200]}); "
            "use a .safetensors file or a torchvision/timm .pth state_dict."
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors.")
    return dict(state)


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """``state`` without ``prefix`` on its keys when every key has it (else unchanged)."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def contiguous_state(module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """State-dict post hook: channels_last weights are saved packed (safetensors needs that)."""
    for key, value in state.items():
        if key.startswith(prefix) and isinstance(value, Tensor) and not isinstance(value, nn.Parameter):
            if not value.is_contiguous():
                state[key] = value.contiguous()


def tensors_for_saving(module: nn.Module) -> dict[str, Tensor]:
    """CPU, contiguous tensors of ``module``'s state, ready for safetensors
    (see :func:`safetensors_ready`)."""
    return safetensors_ready(module.state_dict())


def safetensors_ready(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, detached copies of ``state``; tensors sharing memory (tied weights) are
    cloned apart, which safetensors requires."""
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and ident in seen:
            tensor = tensor.clone()
        seen.add(ident)
        out[key] = tensor
    return out


def save_safetensors(tensors: Mapping[str, Tensor], path: str | Path) -> Path:
    """Write ``tensors`` to ``path`` atomically. One metadata key only: safetensors writes
    metadata in hash order, and equal tensors must give byte-equal files (registries deduplicate
    by content)."""
    from safetensors.torch import save_file

    from fashion._util.files import atomic_writer

    with atomic_writer(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata={"format": "pt"})
    return Path(path)


__all__ = [
    "contiguous_state",
    "load_state_dict_file",
    "safetensors_ready",
    "save_safetensors",
    "strip_prefix",
    "tensors_for_saving",
]
