"""Every error the SDK raises on purpose.

Each class derives from :class:`FashionError` and from the built-in exception it refines, so
callers can catch either. Every message ends with what to do next; the CLI prints the message
alone (set ``FASHION_DEBUG=1`` for the traceback).
"""

from __future__ import annotations


class FashionError(Exception):
    """Base class of every error raised by the SDK on purpose."""


class ConfigError(FashionError, ValueError):
    """A spec, options model or config file is invalid."""


class UnknownComponentError(FashionError, KeyError):
    """A component name is not registered by any installed plugin."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(FashionError, ValueError):
    """Two plugins registered a component of the same kind under the same name."""


class PluginError(FashionError, RuntimeError):
    """A plugin could not be loaded or broke the plugin contract."""


class WeightsNotFoundError(FashionError, FileNotFoundError):
    """Pretrained weights are not available offline."""


class DataError(FashionError, ValueError):
    """A dataset manifest, row, image or label is unusable."""


class BundleError(FashionError, ValueError):
    """A model bundle is malformed, tampered with, or from an incompatible version."""


class MissingPluginError(BundleError):
    """A bundle names a component whose plugin is not installed."""


class RegistryError(FashionError, RuntimeError):
    """A model registry could not complete a request."""


class ModelNotFoundError(RegistryError, LookupError):
    """A model URI, revision or tag does not exist in the registry."""


class MissingExtraError(FashionError, ImportError):
    """An optional feature needs packages that are not installed (an extra of fashion-sdk)."""


class GateError(FashionError, RuntimeError):
    """The no-regression gate refused to publish a new revision."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "DuplicateComponentError",
    "FashionError",
    "GateError",
    "MissingExtraError",
    "MissingPluginError",
    "ModelNotFoundError",
    "PluginError",
    "RegistryError",
    "UnknownComponentError",
    "WeightsNotFoundError",
]
