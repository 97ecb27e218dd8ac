"""Checks that a plugin's component keeps the contract of :mod:`fashion.contract.components`.

:func:`check_class` runs when a plugin registers a class (required methods implemented, options
model of the right kind); :func:`check_built` runs when :func:`fashion.contract.manager.build_component`
builds one, and feeds two probe inputs through it to compare the declared ``output_dim`` (or the
head's ``len(labels)``) with the width the component really returns. Both raise
:class:`~fashion.errors.PluginError` naming the plugin, the component and the method.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from fashion.contract.components import Backbone, Fusion, Head, ImageBackbone, ImageBackboneOptions
from fashion.errors import PluginError


def check_class(component: type, kind: str, name: str, who: str) -> None:
    """Refuse a class that cannot be built: abstract methods left, wrong options base."""
    if inspect.isabstract(component):
        missing = sorted(getattr(component, "__abstractmethods__", ()))
        raise PluginError(
            f"{who} registered {kind} '{name}' ({component.__qualname__}) without the required "
            f"method(s) {', '.join(f'{m}()' for m in missing)}: implement them (see "
            f"fashion.{_base_name(component)})."
        )
    if issubclass(component, ImageBackbone) and not issubclass(
        component.Options, ImageBackboneOptions
    ):
        raise PluginError(
            f"{who} registered image backbone '{name}' whose Options "
            f"({component.Options.__qualname__}) do not subclass fashion.ImageBackboneOptions: "
            "derive them from it, so the pixel normalization is saved with the model."
        )
    if issubclass(component, ImageBackbone):
        for attr in ("mean", "std"):
            if not isinstance(inspect.getattr_static(component, attr), property):
                raise PluginError(
                    f"{who} registered image backbone '{name}' with a class attribute `{attr}`: "
                    "override the classmethod default_preprocessing() instead, returning "
                    "fashion.ImagePreprocessing(mean=..., std=...)."
                )


def _base_name(component: type) -> str:
    for base in (ImageBackbone, Backbone, Fusion, Head):
        if issubclass(component, base):
            return base.__name__
    return component.__mro__[1].__name__


def check_built(component: Any, kind: str, name: str, who: str) -> None:
    """Run probe inputs through a freshly built component; refuse a wrong ``output_dim``."""
    if not isinstance(component, (Backbone, Fusion, Head)):
        return
    if isinstance(component, Fusion) and component.late:
        return  # a late fusion combines per-input logits; it makes no vector of its own
    declared_attr = "len(labels)" if isinstance(component, Head) else "output_dim"
    declared = len(component.labels) if isinstance(component, Head) else getattr(
        component, "output_dim", None
    )
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 1:
        raise PluginError(
            f"{who}: {kind} '{name}' set output_dim = {declared!r} in __init__; set it to the "
            "width (a positive int) of the vectors forward() returns."
        )
    method = "forward()"
    was_training = component.training
    component.eval()
    try:
        with torch.no_grad():
            if isinstance(component, Backbone):
                method = "preprocess() + forward()"
                out = component(component.preprocess(component.probe_inputs()))
                rows = 2
            elif isinstance(component, Fusion):
                features = {k: torch.zeros(2, d) for k, d in component.input_dims.items()}
                masks = {k: torch.ones(2, dtype=torch.bool) for k in component.input_dims}
                out, rows = component(features, masks), 2
            else:
                out, rows = component(torch.zeros(2, component.input_dim)), 2
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{who}: {kind} '{name}' failed in {method} on probe inputs: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    finally:
        component.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (rows, declared):
        raise PluginError(
            f"{who}: {kind} '{name}' declares {declared_attr} = {declared}, but {method} returned "
            f"{'shape ' + str(shape) if shape else type(out).__name__} for {rows} probe inputs "
            f"(expected ({rows}, {declared})). Fix {declared_attr} or {method}."
        )


__all__ = ["check_built", "check_class"]
