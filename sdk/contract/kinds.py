"""Every component kind, in one table: its name, the hook that registers it, its base class,
whether ``build_component`` probes what it returns and where a bundle keeps its tensors.

The manager, the CLI's ``fashion plugins --kind`` and the training config all read this table;
``HOOKS`` is every hook a plugin can implement.
"""

from __future__ import annotations

from dataclasses import dataclass

from fashion.contract.backbones import Backbone
from fashion.contract.components import Cropper, Fusion, Head
from fashion.contract.labelling import LabellingFunction
from fashion.contract.training import LossCombiner, Sampler


@dataclass(frozen=True)
class Kind:
    name: str
    hook: str
    """The ``register_*`` hook (``fashion.contract.hookspecs``) its plugins implement."""
    base: type
    """What a registered class must subclass."""
    probed: bool = False
    """``build_component`` runs probe inputs through it and checks its ``output_dim``."""
    bundle_folder: str | None = None
    """Where a bundle keeps this kind's tensors (``heads/<attribute>.safetensors``); ``None``:
    not part of a model (samplers and losses configure training, labelling functions mine
    labels)."""


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("backbone", "register_backbones", Backbone, probed=True, bundle_folder="backbones"),
        Kind("head", "register_heads", Head, probed=True, bundle_folder="heads"),
        Kind("cropper", "register_croppers", Cropper, bundle_folder="croppers"),
        Kind("fusion", "register_fusions", Fusion, probed=True, bundle_folder="fusion"),
        Kind("sampler", "register_samplers", Sampler),
        Kind("loss", "register_losses", LossCombiner),
        Kind("labelling_function", "register_labelling_functions", LabellingFunction),
    )
}

HOOKS: tuple[str, ...] = (*(kind.hook for kind in KINDS.values()), "register_commands")

__all__ = ["HOOKS", "KINDS", "Kind"]
