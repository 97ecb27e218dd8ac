"""Model bundles (safetensors + index) and model registries (local, Hugging Face Hub).

- :func:`save_bundle` / :func:`load_bundle`: a folder with ``fashion.json`` and one safetensors
  file per component (docs/bundle-format.md).
- :class:`LocalRegistry` (``local://name@rev``) and :class:`HubRegistry` (``hf://org/name@rev``)
  publish bundles as revisions with tags (docs/registries.md).
- :func:`compose_bundles`: heads trained on one shared base, combined into one bundle.

May import: ``fashion.model`` and the layers below (never training, prediction or trust).
Exports the names above; the commands are ``fashion.cli.registry``.
"""

from __future__ import annotations

from fashion.registry.base import ModelSummary, Registry, Revision
from fashion.registry.bundle import (
    Bundle,
    BundleIndex,
    load_bundle,
    read_index,
    save_bundle,
    verify_bundle,
)
from fashion.registry.compose import compose_bundles
from fashion.registry.hub import HubRegistry
from fashion.registry.local import LocalRegistry
from fashion.registry.uri import ModelURI, fetch_uri, get_registry, parse_uri

__all__ = [
    "Bundle",
    "BundleIndex",
    "HubRegistry",
    "LocalRegistry",
    "ModelSummary",
    "ModelURI",
    "Registry",
    "Revision",
    "compose_bundles",
    "fetch_uri",
    "get_registry",
    "load_bundle",
    "parse_uri",
    "read_index",
    "save_bundle",
    "verify_bundle",
]
