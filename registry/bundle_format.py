"""The bundle format: ``fashion.json`` (the bundle index) as pydantic models, reading and verifying it.

A bundle is everything needed to rebuild a :class:`fashion.FashionModel` without running any
code from the bundle: components are named by their registered plugin name plus options, tensors
are safetensors, other files (tokenizers) are plain asset files, and every file is listed with
its sha256 in ``fashion.json``. See docs/bundle-format.md for the layout and the fields.

Format versions: 2 (current) saves every image backbone's pixel normalization inside its options
(``options.preprocessing``); 1 kept it only in the ``preprocessing`` block, from which the loader
reads it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fashion._config import StrictModel, explain_validation_error
from fashion._files import sha256_file
from fashion.errors import BundleError, MissingPluginError, UnknownComponentError
from fashion.manager import get_component_info
from fashion.model import FashionModel
from fashion.spec import ModelSpec

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST_NAME = "fashion.json"
README_NAME = "README.md"
KIND_OF_PREFIX = {"croppers": "cropper", "backbones": "backbone", "fusion": "fusion", "heads": "head"}

ComponentKind = Literal["cropper", "backbone", "fusion", "head"]


class FileEntry(StrictModel):
    """One file of the bundle (any file but fashion.json itself)."""

    sha256: str
    size: int


class ComponentEntry(StrictModel):
    """How to rebuild one component, and where its files are."""

    kind: ComponentKind
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    distribution: str | None = None
    version: str | None = None
    plugin: str | None = None
    weights: str | None = None  # e.g. "backbones/image.safetensors"; None = no tensors
    assets: str | None = None  # e.g. "backbones/text" (folder written by save_assets)
    fingerprint: str
    tensors: int = 0


class AttributeEntry(StrictModel):
    """An attribute as the model predicts it (a summary of the spec's AttributeSpec)."""

    labels: list[str]
    head: str
    multilabel: bool = False
    synonyms: dict[str, str] = Field(default_factory=dict)
    threshold: float = 0.0
    description: str = ""


class Provenance(BaseModel):
    """Where the weights came from. Extra keys (a git commit, a run id) are kept as given."""

    model_config = ConfigDict(extra="allow")

    datasets: list[dict[str, Any]] = Field(default_factory=list)  # name, rows, sha256, uri
    training_config: dict[str, Any] | None = None
    parent: str | None = None  # the revision this model was fine-tuned or composed from


class BundleManifest(StrictModel):
    """The ``fashion.json`` file of a bundle."""

    format_version: int
    sdk_version: str
    created: str
    spec: ModelSpec
    components: dict[str, ComponentEntry]
    attributes: dict[str, AttributeEntry]
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    # ONNX artifacts and the accuracy gate's verdict (fashion.optimize.artifacts)
    optimizations: dict[str, Any] = Field(default_factory=dict)

    def backbone_fingerprints(self) -> dict[str, str]:
        return {p: c.fingerprint for p, c in self.components.items() if c.kind == "backbone"}


@dataclass
class Bundle:
    """A loaded bundle: the model (eval mode), its manifest and the folder it was read from."""

    model: FashionModel
    manifest: BundleManifest
    path: Path
    uri: str | None = None


def sdk_version() -> str:
    from fashion import __version__

    return __version__


def read_manifest(directory: str | Path) -> BundleManifest:
    """Parse ``fashion.json`` (format version checked first); files are not verified here."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(
            f"{directory} is not a fashion bundle (no {MANIFEST_NAME}). Pass the folder written "
            "by save_bundle / `fashion train`, or a model URI such as hf://org/name."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise BundleError(
            f"{path} is not valid JSON ({reason}); the bundle is damaged. Re-download it "
            "(`fashion pull <uri>`) or save it again."
        ) from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"{path} has no integer format_version; it is not a fashion bundle.")
    if version not in READABLE_FORMATS and version < FORMAT_VERSION:
        raise BundleError(
            f"{directory} uses bundle format {version}, which this fashion-sdk {sdk_version()} no "
            f"longer reads (it reads formats {', '.join(map(str, READABLE_FORMATS))}). Load it with "
            "the fashion-sdk that wrote it and save it again, or retrain it."
        )
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{directory} uses bundle format {version} (written by fashion-sdk "
            f"{raw.get('sdk_version', '?')}), but this fashion-sdk {sdk_version()} reads format "
            f"{FORMAT_VERSION} at most. Upgrade: pip install -U fashion-sdk"
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(
            f"{path} is malformed: {explain_validation_error(exc)}. Re-download the bundle (`fashion pull <uri>`)."
        ) from None


def _allowed_roots(directory: Path) -> list[Path]:
    """Where a bundle's files may live: the folder itself (plus, for a Hugging Face cache
    snapshot, the repo's ``blobs/`` folder that the snapshot's symlinks point into)."""
    directory = directory.resolve()
    roots = [directory]
    if directory.parent.name == "snapshots" and (directory.parent.parent / "blobs").is_dir():
        roots.append(directory.parent.parent / "blobs")
    return roots


def _safe_path(directory: Path, rel: str, roots: list[Path] | None = None) -> Path:
    """``directory / rel``, refusing absolute paths, ``..`` and links that leave the bundle."""
    pure = PurePosixPath(rel)
    if (not rel or pure.is_absolute() or "\\" in rel or rel.startswith("~") or ":" in rel
            or any(part in ("", ".", "..") for part in rel.split("/"))):
        raise BundleError(
            f"bundle {directory} lists the unsafe path {rel!r} (absolute or containing '..'); "
            "refusing to read it. Do not use this bundle; re-download it from a trusted source."
        )
    path = directory / pure
    resolved = path.resolve()
    for root in roots or _allowed_roots(directory):
        if resolved == root or resolved.is_relative_to(root):
            return path
    raise BundleError(
        f"bundle {directory}: {rel} is a link to {resolved}, outside the bundle; refusing to "
        "read it. Do not use this bundle; re-download it from a trusted source."
    )


def verify_bundle(directory: str | Path, manifest: BundleManifest | None = None) -> BundleManifest:
    """Check paths and the sha256 of every listed file; return the manifest."""
    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    roots = _allowed_roots(directory)
    for path, component in manifest.components.items():
        for rel in (component.weights, component.assets):
            if rel is not None:
                _safe_path(directory, rel, roots)
        if component.weights and component.weights not in manifest.files:
            raise BundleError(
                f"bundle {directory}: {path}'s weights {component.weights} are not listed in "
                f"{MANIFEST_NAME}; the bundle is damaged. Re-download it (`fashion pull <uri>`)."
            )
    for rel, entry in manifest.files.items():
        path = _safe_path(directory, rel, roots)
        if not path.is_file():
            raise BundleError(
                f"bundle {directory} is incomplete: {rel} is missing. Re-download it "
                "(`fashion pull <uri>`) or save it again."
            )
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            raise BundleError(
                f"bundle {directory}: {rel} does not match its sha256 in {MANIFEST_NAME} (the "
                "file was modified or truncated). Re-download the model (`fashion pull <uri>`) "
                "or save it again."
            )
    for component in manifest.components.values():
        if component.assets:
            folder = _safe_path(directory, component.assets, roots)
            for file in folder.rglob("*"):
                rel = file.relative_to(directory).as_posix()
                if file.is_file() and rel not in manifest.files:
                    raise BundleError(
                        f"bundle {directory}: {rel} is in an asset folder but not listed in "
                        f"{MANIFEST_NAME}; refusing to load unverified files. Re-download it."
                    )
    return manifest


def check_plugins(manifest: BundleManifest, where: str = "this bundle") -> None:
    """Raise MissingPluginError naming every component whose plugin is not installed."""
    missing = []
    for path, c in manifest.components.items():
        try:
            get_component_info(c.kind, c.name)
        except UnknownComponentError:
            missing.append((path, c))
    if not missing:
        return
    lines = []
    installs = []
    for path, c in missing:
        if c.distribution:
            requirement = f"{c.distribution}=={c.version}" if c.version else c.distribution
            installs.append(requirement)
            lines.append(f"{c.kind} '{c.name}' ({path}) comes from {requirement}")
        else:
            lines.append(
                f"{c.kind} '{c.name}' ({path}) was registered by plugin '{c.plugin}', which is not "
                "a published distribution: register that plugin (fashion.manager.register_plugin) "
                "or install the package that provides it"
            )
    advice = ""
    if installs:
        unique = " ".join(dict.fromkeys(installs))
        advice = f" Install it: pip install {unique} (or `fashion install {unique}`)."
    raise MissingPluginError(
        f"{where} needs components that are not installed: {'; '.join(lines)}.{advice}"
    )




__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "README_NAME",
    "AttributeEntry",
    "Bundle",
    "BundleManifest",
    "ComponentEntry",
    "FileEntry",
    "Provenance",
    "check_plugins",
    "read_manifest",
    "sha256_file",
    "verify_bundle",
]
