"""fashion: multi-task product attribute models for retail catalogs.

Build a model from a spec, train it on several partially labeled datasets at once, publish it
as a safetensors bundle, and predict with ``Predictor.from_hub()``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from fashion._util.version import __version__ as __version__
from fashion.contract.components import (
    AttributePrediction,
    Backbone,
    Component,
    ComponentOptions,
    Cropper,
    CropperOptions,
    Fusion,
    Head,
    ImageBackbone,
    ImageBackboneOptions,
    ImagePreprocessing,
    TextBackbone,
    View,
)
from fashion.contract.hookspecs import hookimpl, hookspec
from fashion.contract.labelling import LabellingFunction, LabellingRow
from fashion.contract.manager import build_component, get_component_info, list_components
from fashion.contract.training import LossCombiner, Sampler
from fashion.errors import (
    BundleError,
    ConfigError,
    DataError,
    FashionError,
    MissingPluginError,
    PluginError,
    UnknownComponentError,
    WeightsNotFoundError,
)
from fashion.model.inputs import Product
from fashion.model.network import FashionModel
from fashion.model.spec import AttributeSpec, BackboneSpec, ComponentSpec, ModelSpec

# Heavier entry points load on first use, so `import fashion` stays quick. No submodule of
# `fashion` has any of these names, so an import never shadows them.
_LAZY = {
    "Predictor": "fashion.predict.predictor",
    "Trainer": "fashion.training",
    "TrainConfig": "fashion.training",
    "add_attribute": "fashion.attributes.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fashion' has no attribute {name!r}")


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
    "CropperOptions",
    "DataError",
    "FashionError",
    "FashionModel",
    "Fusion",
    "Head",
    "ImageBackbone",
    "ImageBackboneOptions",
    "ImagePreprocessing",
    "LabellingFunction",
    "LabellingRow",
    "LossCombiner",
    "MissingPluginError",
    "ModelSpec",
    "PluginError",
    "Predictor",
    "Product",
    "Sampler",
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
