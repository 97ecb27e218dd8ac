"""The base of every component: :class:`Component`, its typed options and its fingerprint.

A component is rebuilt from its registered name and options alone, so the options are part of
its identity: :func:`validate_options` checks them (unknown keys are an error) and
:func:`module_fingerprint` hashes name, options and tensors. The four component kinds build on
:class:`Component`: backbones in :mod:`fashion.contract.backbones`, croppers, fusions and heads in
:mod:`fashion.contract.components` (which re-exports everything here).
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from fashion._util.config import StrictModel, explain_validation_error
from fashion.errors import ConfigError


class ComponentOptions(StrictModel):
    """Base class of every component's options: unknown keys are an error."""


OptionsT = TypeVar("OptionsT", bound=ComponentOptions)


def validate_options(
    model: type[OptionsT], options: BaseModel | Mapping[str, Any] | None, where: str
) -> OptionsT:
    """Validate ``options`` against ``model``; errors name ``where`` and every bad field."""
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        fields = ", ".join(model.model_fields) or "none"
        raise ConfigError(
            f"invalid options for {where}: {explain_validation_error(exc, '(options)')}. "
            f"Accepted options: {fields}."
        ) from None


def _options_argument(cls: type) -> type[ComponentOptions] | None:
    """The options class ``X`` of a ``Component[X]`` base of ``cls``, if one is concrete."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Component):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, ComponentOptions):
                    return arg
    return None


class Component(nn.Module, Generic[OptionsT], metaclass=abc.ABCMeta):
    """Base class of all components. Subclasses set ``name``; ``Component[MyOptions]`` (or an
    ``Options`` class attribute) sets the options model."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    options: OptionsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = _options_argument(cls)
        if found is not None and "Options" not in cls.__dict__:
            cls.Options = found

    def __init__(self, options: OptionsT | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        where = f"{self.kind} '{self.name}'"
        self.options = validate_options(self.Options, options, where)  # type: ignore[assignment]
        # The name it was built under (set by fashion.contract.manager.build_component).
        self.component_name: str = self.name

    def save_assets(self, directory: Path) -> None:  # noqa: B027 - optional, empty by default
        """Write the non-tensor files this component needs to be rebuilt (tokenizer, config).

        Files go in ``directory``; the component receives the same folder as ``assets=`` when it
        is rebuilt from a bundle. Default: nothing to write.
        """

    def options_dict(self) -> dict[str, Any]:
        return self.options.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A content hash of name, options and tensors: equal fingerprints compute equal outputs."""
        return module_fingerprint(self, self.component_name, self.options_dict())


def module_fingerprint(module: nn.Module, name: str, options: Mapping[str, Any]) -> str:
    """A content hash of a module's registered name, options and every tensor of its state."""
    digest = hashlib.sha256()
    digest.update(name.encode())
    digest.update(json.dumps(dict(options), sort_keys=True).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        if tensor.numel():
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


__all__ = [
    "Component",
    "ComponentOptions",
    "OptionsT",
    "module_fingerprint",
    "validate_options",
]
