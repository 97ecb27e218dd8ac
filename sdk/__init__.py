"""fashion: multi-task product attribute models for retail catalogs.

Build a model from a spec, train it on several partially labeled datasets at once, publish it
as a safetensors bundle, and predict with ``Predictor.from_hub()``.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

from .components import (
    AttributePrediction,
    Backbone,
    Component,
    ComponentOptions,
    Cropper,
    Fusion,
    Head,
    ImageBackbone,
    ImageBackboneOptions,
    ImagePreprocessing,
    TextBackbone,
    View,
)
from .errors import (
    BundleError,
    ConfigError,
    DataError,
    FashionError,
    MissingPluginError,
    PluginError,
    UnknownComponentError,
    WeightsNotFoundError,
)
from .hookspecs import hookimpl, hookspec
from .manager import build_component, get_component_info, list_components
from .model import FashionModel, Product
from .spec import AttributeSpec, BackboneSpec, ComponentSpec, ModelSpec

__version__ = "0.1.0"

# Heavier entry points load on first use, so `import fashion` stays quick.
_LAZY = {
    "Predictor": "fashion.predictor",
    "Trainer": "fashion.training",
    "TrainConfig": "fashion.training",
    "add_attribute": "fashion.add_attribute",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fashion' has no attribute {name!r}")


class _Package(ModuleType):
    """``fashion`` itself: a lazy attribute wins over a submodule of the same name.

    ``fashion.add_attribute`` is the function; importing the submodule ``fashion.add_attribute``
    (``from fashion.add_attribute import ...``) would otherwise set the package attribute to the
    module, so ``from fashion import add_attribute`` gave the module after the first import.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, ModuleType) and value.__name__ == _LAZY[name]:
            return  # the import system binding the submodule: keep the lazy attribute
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "AttributePrediction",
    "AttributeSpec",
    "Backbone",
    "BackboneSpec",
    "BundleError",
    "Component",
    "ComponentOptions",
    "ComponentSpec",
    "ConfigError",
    "Cropper",
    "DataError",
    "FashionError",
    "FashionModel",
    "Fusion",
    "Head",
    "ImageBackbone",
    "ImageBackboneOptions",
    "ImagePreprocessing",
    "MissingPluginError",
    "ModelSpec",
    "PluginError",
    "Predictor",
    "Product",
    "TextBackbone",
    "TrainConfig",
    "Trainer",
    "UnknownComponentError",
    "View",
    "WeightsNotFoundError",
    "add_attribute",
    "build_component",
    "get_component_info",
    "hookimpl",
    "hookspec",
    "list_components",
]
