"""The bundle format: ``fashion.json`` (the bundle index) as pydantic models, reading and verifying it.

A bundle is everything needed to rebuild a :class:`fashion.FashionModel` without running any
code from the bundle: components are named by their registered plugin name plus options, tensors
are safetensors, other files (tokenizers) are plain asset files, and every file is listed with
its sha256 in ``fashion.json``. See docs/bundle-format.md for the layout and the fields.

Format versions: 4 (current) covers the index with a hash: ``index_sha256`` is the sha256 of
the index's canonical JSON without that key (:func:`index_digest`), written by every writer
(:func:`dump_index`) and checked by :func:`read_index`, so an edited ``fashion.json`` (swapped
labels, a changed spec or file list) is refused; 3 writes each attribute as the full attribute definition (head as
name + options, ``applies_to``, ``calibration``, ``abstention``); 2 saves every image backbone's
pixel normalization inside its options (``options.preprocessing``); 1 kept it only in the
``preprocessing`` block, from which the loader reads it back. Bundles of formats 1 to 3 carry
no index hash: they load as before, and their ``fashion.json`` is checked only by its schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from fashion._util.config import StrictModel, explain_validation_error
from fashion._util.files import sha256_file
from fashion.contract.kinds import KINDS
from fashion.contract.manager import get_component_info
from fashion.errors import BundleError, MissingPluginError, UnknownComponentError
from fashion.model.network import FashionModel
from fashion.model.spec import ModelSpec
from fashion.model.taxonomy import AttributeSpec
from fashion.registry.optimizations import optimizations_problem

FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
HASHED_FROM = 4  # the first format whose index must carry index_sha256
INDEX_HASH = "index_sha256"
INDEX_NAME = "fashion.json"
README_NAME = "README.md"
KIND_OF_PREFIX = {kind.bundle_folder: kind.name for kind in KINDS.values() if kind.bundle_folder}

ComponentKind = Literal[tuple(KIND_OF_PREFIX.values())]  # type: ignore[valid-type]


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


AttributeEntry = AttributeSpec
"""An attribute as the bundle lists it: the one attribute definition (``fashion.AttributeSpec``).
Bundles of formats 1 and 2 name the head by a string and carry no applicability, calibration or
abstention: they load as "always applies, raw scores, no abstention"."""


class Provenance(BaseModel):
    """Where the weights came from. Extra keys (a git commit, a run id) are kept as given."""

    model_config = ConfigDict(extra="allow")

    datasets: list[dict[str, Any]] = Field(default_factory=list)  # name, rows, sha256, uri
    training_config: dict[str, Any] | None = None
    parent: str | None = None  # the revision this model was fine-tuned or composed from


class BundleIndex(StrictModel):
    """The ``fashion.json`` file of a bundle."""

    format_version: int
    sdk_version: str
    created: str | None = None  # not written: equal bundles must hash equal (a registry records when)
    spec: ModelSpec
    components: dict[str, ComponentEntry]
    attributes: dict[str, AttributeEntry]
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    # ONNX artifacts and the accuracy gate's verdict (fashion.registry.optimizations)
    optimizations: dict[str, Any] = Field(default_factory=dict)
    index_sha256: str | None = None  # format 4: see index_digest (checked by read_index)
    _optimizations_problem: str | None = PrivateAttr(default=None)

    @property
    def optimizations_problem(self) -> str | None:
        """Why the ``optimizations`` record read from the file was set aside (``None``: it was
        not); a damaged record is never used (fashion.registry.optimizations)."""
        return self._optimizations_problem

    def backbone_fingerprints(self) -> dict[str, str]:
        return {p: c.fingerprint for p, c in self.components.items() if c.kind == "backbone"}


@dataclass
class Bundle:
    """A loaded bundle: the model (eval mode), its index and the folder it was read from."""

    model: FashionModel
    index: BundleIndex
    path: Path
    uri: str | None = None


def sdk_version() -> str:
    from fashion._util.version import __version__

    return __version__


def index_digest(raw: dict[str, Any]) -> str:
    """The sha256 of an index's canonical JSON (keys in file order, no whitespace), leaving out
    ``index_sha256`` itself: reformatting the file keeps it, any change of a value or of the
    order of keys (attributes, labels) does not."""
    import hashlib

    body = {k: v for k, v in raw.items() if k != INDEX_HASH}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dump_index(index: BundleIndex) -> str:
    """The text of ``fashion.json`` for ``index``, with its ``index_sha256`` (every writer uses it)."""
    raw = json.loads(index.model_dump_json(exclude={INDEX_HASH}))
    raw[INDEX_HASH] = index.index_sha256 = index_digest(raw)
    return json.dumps(raw, indent=2, ensure_ascii=False) + "\n"


def _check_hash(raw: dict[str, Any], path: str, version: int) -> None:
    claimed = raw.get(INDEX_HASH)
    if claimed is None and version < HASHED_FROM:
        return  # an older bundle: no index hash to check (docs/bundle-format.md)
    if claimed is None:
        problem = f"has no {INDEX_HASH}, which every format-{version} bundle carries"
    elif claimed != index_digest(raw):
        problem = (f"no longer matches its {INDEX_HASH} (it was edited after the bundle was "
                   "written: labels, spec, files or optimizations may differ from the model's)")
    else:
        return
    raise BundleError(
        f"{path} {problem}; refusing to load it. Do not edit fashion.json by hand: re-download "
        "the bundle (`fashion pull <uri>`) or save it again from the model."
    )


def read_index(directory: str | Path) -> BundleIndex:
    """Parse ``fashion.json`` (format version checked first, then the index hash); files are not
    verified here. A damaged ``optimizations`` record is set aside (see
    :attr:`BundleIndex.optimizations_problem`), never used."""
    directory = Path(directory)
    path = directory / INDEX_NAME
    if not path.is_file():
        raise BundleError(
            f"{directory} is not a fashion bundle (no {INDEX_NAME}). Pass the folder written "
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
    return parse_index(raw, path, directory)


def parse_index(raw: Any, path: str | Path, directory: str | Path) -> BundleIndex:
    """:func:`read_index` of an already parsed ``fashion.json`` (``path`` and ``directory``
    name it in messages)."""
    raw = dict(raw) if isinstance(raw, dict) else raw
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
    _check_hash(raw, str(path), version)
    optimizations = raw.pop("optimizations", {})
    try:
        index = BundleIndex.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(
            f"{path} is malformed: {explain_validation_error(exc)}. Re-download the bundle (`fashion pull <uri>`)."
        ) from None
    problem = optimizations_problem(optimizations, list(index.attributes), index.files)
    if problem is None:
        index.optimizations = optimizations
    else:
        index._optimizations_problem = (
            f"{path}: the optimizations record is damaged ({problem}); the bundle's ONNX "
            "artifacts and accuracy-gate verdict are not used. Run `fashion optimize "
            f"{directory}` again to rebuild them, or re-download the bundle"
        )
    return index


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


def verify_bundle(directory: str | Path, index: BundleIndex | None = None) -> BundleIndex:
    """Check paths and the sha256 of every listed file; return the index."""
    directory = Path(directory)
    index = index or read_index(directory)
    roots = _allowed_roots(directory)
    for path, component in index.components.items():
        for rel in (component.weights, component.assets):
            if rel is not None:
                _safe_path(directory, rel, roots)
        if component.weights and component.weights not in index.files:
            raise BundleError(
                f"bundle {directory}: {path}'s weights {component.weights} are not listed in "
                f"{INDEX_NAME}; the bundle is damaged. Re-download it (`fashion pull <uri>`)."
            )
    for rel, entry in index.files.items():
        path = _safe_path(directory, rel, roots)
        if not path.is_file():
            raise BundleError(
                f"bundle {directory} is incomplete: {rel} is missing. Re-download it "
                "(`fashion pull <uri>`) or save it again."
            )
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            raise BundleError(
                f"bundle {directory}: {rel} does not match its sha256 in {INDEX_NAME} (the "
                "file was modified or truncated). Re-download the model (`fashion pull <uri>`) "
                "or save it again."
            )
    for component in index.components.values():
        if component.assets:
            folder = _safe_path(directory, component.assets, roots)
            for file in folder.rglob("*"):
                rel = file.relative_to(directory).as_posix()
                if file.is_file() and rel not in index.files:
                    raise BundleError(
                        f"bundle {directory}: {rel} is in an asset folder but not listed in "
                        f"{INDEX_NAME}; refusing to load unverified files. Re-download it."
                    )
    return index


def verify_for_publish(directory: str | Path) -> BundleIndex:
    """:func:`verify_bundle`, and refuse a damaged ``optimizations`` record: a registry never
    stores what a reader would set aside."""
    index = verify_bundle(directory)
    if index.optimizations_problem:
        raise BundleError(f"{index.optimizations_problem}; refusing to publish it until then.")
    return index


def check_plugins(index: BundleIndex, where: str = "this bundle") -> None:
    """Raise MissingPluginError naming every component whose plugin is not installed."""
    missing = []
    for path, c in index.components.items():
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
                "a published distribution: register that plugin (fashion.contract.manager.register_plugin) "
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
    "INDEX_NAME",
    "README_NAME",
    "AttributeEntry",
    "Bundle",
    "BundleIndex",
    "ComponentEntry",
    "FileEntry",
    "Provenance",
    "check_plugins",
    "dump_index",
    "index_digest",
    "parse_index",
    "read_index",
    "sha256_file",
    "verify_bundle",
    "verify_for_publish",
]
