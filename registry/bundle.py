"""Model bundles: one folder with a ``fashion.json`` manifest, one safetensors file per component.

A bundle is everything needed to rebuild a :class:`fashion.FashionModel` without running any
code from the bundle: components are named by their registered plugin name plus options, tensors
are safetensors, other files (tokenizers) are plain asset files, and every file is listed with
its sha256. See docs/bundle-format.md for the layout and the manifest fields.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from fashion.components import Component, ImageBackbone, module_fingerprint
from fashion.errors import BundleError, ConfigError, MissingPluginError, UnknownComponentError
from fashion.manager import get_registration
from fashion.model import FashionModel, LateAttribute
from fashion.spec import ModelSpec

FORMAT_VERSION = 1
MANIFEST_NAME = "fashion.json"
README_NAME = "README.md"
KIND_OF_PREFIX = {"croppers": "cropper", "backbones": "backbone", "fusion": "fusion", "heads": "head"}
_PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_CHUNK = 1 << 20

ComponentKind = Literal["cropper", "backbone", "fusion", "head"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Strict):
    """One file of the bundle (any file but fashion.json itself)."""

    sha256: str
    size: int


class ComponentEntry(_Strict):
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


class AttributeEntry(_Strict):
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


class BundleManifest(_Strict):
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

    def backbone_fingerprints(self) -> dict[str, str]:
        return {p: c.fingerprint for p, c in self.components.items() if c.kind == "backbone"}


@dataclass
class Bundle:
    """A loaded bundle: the model (eval mode), its manifest and the folder it was read from."""

    model: FashionModel
    manifest: BundleManifest
    path: Path
    uri: str | None = None


# ----------------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sdk_version() -> str:
    from fashion import __version__

    return __version__


def _module_fingerprint(module: nn.Module, name: str, options: Mapping[str, Any]) -> str:
    """Component.fingerprint for any module (a late-fusion attribute is not a Component)."""
    if isinstance(module, Component):
        return module.fingerprint()
    return module_fingerprint(module, name, options)


def _describing_component(module: nn.Module) -> Component:
    """The Component that names a module: itself, or a late attribute's per-input head."""
    if isinstance(module, LateAttribute):
        return module.task
    if not isinstance(module, Component):
        raise BundleError(f"{type(module).__name__} is not a fashion component; cannot save it.")
    return module


def _tensors_for_saving(module: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tensors sharing memory (tied weights) are cloned apart."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and ident in seen:
            tensor = tensor.clone()
        seen.add(ident)
        out[key] = tensor
    return out


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _list_files(root: Path) -> list[str]:
    """Every file under ``root`` (posix paths) but the manifest itself."""
    files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(rel for rel in files if rel != MANIFEST_NAME)


# -------------------------------------------------------------------------------------- save


def save_bundle(
    model: FashionModel,
    directory: str | Path,
    *,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    provenance: Mapping[str, Any] | Provenance | None = None,
    training_config: Mapping[str, Any] | None = None,
    parent: str | None = None,
    plots: Mapping[str, str | Path] | None = None,
    reuse_from: str | Path | None = None,
) -> Path:
    """Write ``model`` as a bundle folder at ``directory`` (atomically) and return its path.

    ``metrics`` maps attribute -> {metric: value}; ``provenance`` holds ``datasets`` (name, rows,
    sha256) and any extra keys; ``plots`` maps attribute -> a PNG (a confusion matrix) copied to
    ``plots/``. With ``reuse_from`` (an earlier bundle of the same model), components whose
    fingerprint did not change are linked from there instead of being written again.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BundleError(f"{directory} exists and is not a folder; choose another --out path.")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / MANIFEST_NAME).is_file():
        raise BundleError(
            f"{directory} is a non-empty folder that is not a fashion bundle; refusing to "
            "overwrite it. Choose an empty or new folder."
        )
    previous = _reusable(reuse_from)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        manifest = _write_bundle(
            model, staging, metrics, provenance, training_config, parent, plots, previous
        )
        (staging / MANIFEST_NAME).write_text(
            manifest.model_dump_json(indent=2) + "\n", encoding="utf-8"
        )
        _move_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _reusable(reuse_from: str | Path | None) -> tuple[Path, BundleManifest] | None:
    if reuse_from is None:
        return None
    root = Path(reuse_from)
    try:
        return root, read_manifest(root)
    except BundleError:
        return None  # nothing to reuse; everything is written afresh


def _move_into_place(staging: Path, directory: Path) -> None:
    if not directory.exists():
        os.rename(staging, directory)
        return
    old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(directory, old)
    os.rename(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def _write_bundle(
    model: FashionModel,
    staging: Path,
    metrics: Mapping[str, Mapping[str, Any]] | None,
    provenance: Mapping[str, Any] | Provenance | None,
    training_config: Mapping[str, Any] | None,
    parent: str | None,
    plots: Mapping[str, str | Path] | None,
    previous: tuple[Path, BundleManifest] | None,
) -> BundleManifest:
    from safetensors.torch import save_file

    components: dict[str, ComponentEntry] = {}
    for path, module in model.component_modules().items():
        kind = KIND_OF_PREFIX[path.split("/")[0]]
        component = _describing_component(module)
        name = component.component_name
        try:
            registration = get_registration(kind, name)
        except UnknownComponentError:
            raise BundleError(
                f"{kind} '{name}' at {path} is not registered by any plugin, so a bundle could "
                "not rebuild it. Register it through a plugin (fashion.hookimpl) before saving."
            ) from None
        options = component.options_dict()
        entry = ComponentEntry(
            kind=kind, name=name, options=options,
            distribution=registration.distribution, version=registration.version,
            plugin=registration.plugin, fingerprint=_module_fingerprint(module, name, options),
        )
        old = previous[1].components.get(path) if previous else None
        if previous and old and old.fingerprint == entry.fingerprint and old.name == name:
            _reuse_component(previous[0], previous[1], old, staging)
            entry.weights, entry.assets, entry.tensors = old.weights, old.assets, old.tensors
        else:
            tensors = _tensors_for_saving(module)
            if tensors:
                entry.weights = f"{path}.safetensors"
                entry.tensors = len(tensors)
                target = staging / entry.weights
                target.parent.mkdir(parents=True, exist_ok=True)
                # One metadata key only: safetensors writes metadata in hash order, and equal
                # tensors must give byte-equal files (registries deduplicate by content).
                save_file(tensors, str(target), metadata={"format": "pt"})
            if isinstance(module, Component):
                asset_dir = staging / path
                asset_dir.mkdir(parents=True, exist_ok=True)
                module.save_assets(asset_dir)
                if any(asset_dir.iterdir()):
                    entry.assets = path
                else:
                    asset_dir.rmdir()
        components[path] = entry

    for folder in sorted(staging.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # e.g. croppers/ when no cropper has tensors or assets
    spec = _resolved_spec(model, components)
    attributes = {
        a: AttributeEntry(
            labels=list(s.labels), head=s.head.name, multilabel=model.task(a).multilabel,
            synonyms=dict(s.synonyms), threshold=s.threshold, description=s.description,
        )
        for a, s in spec.attributes.items()
    }
    copied_plots = _copy_plots(plots, staging)
    prov = provenance if isinstance(provenance, Provenance) else Provenance(**dict(provenance or {}))
    if training_config is not None:
        prov.training_config = dict(training_config)
    if parent is not None:
        prov.parent = parent
    manifest = BundleManifest(
        format_version=FORMAT_VERSION,
        sdk_version=_sdk_version(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        spec=spec,
        components=components,
        attributes=attributes,
        preprocessing=_preprocessing(model, spec),
        files={},
        metrics={a: dict(m) for a, m in (metrics or {}).items()},
        provenance=prov,
    )
    (staging / README_NAME).write_text(model_card(manifest, copied_plots), encoding="utf-8")
    manifest.files = {
        rel: FileEntry(sha256=sha256_file(staging / rel), size=(staging / rel).stat().st_size)
        for rel in _list_files(staging)
    }
    return manifest


def _reuse_component(root: Path, manifest: BundleManifest, old: ComponentEntry, staging: Path) -> None:
    wanted = [old.weights] if old.weights else []
    if old.assets:
        prefix = old.assets.rstrip("/") + "/"
        wanted += [p for p in manifest.files if p.startswith(prefix)]
    for rel in wanted:
        source = _safe_path(root, rel)
        entry = manifest.files.get(rel)
        if entry is None or sha256_file(source) != entry.sha256:
            raise BundleError(
                f"cannot reuse {rel} from {root}: the file changed since that bundle was written. "
                "Save without reuse_from."
            )
        _link_or_copy(source, staging / rel)


def _resolved_spec(model: FashionModel, components: Mapping[str, ComponentEntry]) -> ModelSpec:
    """The model's spec with every component's full options (defaults pinned)."""
    data = model.spec.model_dump(mode="json")
    for view in data["views"]:
        data["views"][view]["options"] = components[f"croppers/{view}"].options
    for key in data["backbones"]:
        data["backbones"][key]["options"] = components[f"backbones/{key}"].options
    data["fusion"]["options"] = components["fusion"].options
    for attribute in data["attributes"]:
        data["attributes"][attribute]["head"]["options"] = components[f"heads/{attribute}"].options
    return ModelSpec.parse(data, source="resolved model spec")


def _preprocessing(model: FashionModel, spec: ModelSpec) -> dict[str, Any]:
    images: dict[str, Any] = {}
    text: dict[str, Any] = {}
    for key, backbone in model.backbones.items():
        s = spec.backbones[key]
        if isinstance(backbone, ImageBackbone):
            images[key] = {
                "backbone": s.name,
                "mean": [float(x) for x in backbone.mean],
                "std": [float(x) for x in backbone.std],
                "views": {
                    v: {"cropper": spec.views[v].name, "options": spec.views[v].options}
                    for v in s.views
                },
            }
        else:
            text[key] = {"backbone": s.name, "options": s.options}
    return {"images": images, "text": text}


def _copy_plots(plots: Mapping[str, str | Path] | None, staging: Path) -> dict[str, str]:
    copied: dict[str, str] = {}
    for attribute, source in (plots or {}).items():
        source = Path(source)
        if not _PLOT_NAME.match(attribute):
            raise ConfigError(f"plot name {attribute!r} must be letters, digits, '_', '-' or '.'")
        if not source.is_file():
            raise ConfigError(f"plot for {attribute!r} not found: {source}")
        rel = f"plots/{attribute}{source.suffix.lower() or '.png'}"
        (staging / "plots").mkdir(exist_ok=True)
        shutil.copyfile(source, staging / rel)
        copied[attribute] = rel
    return copied


def model_card(manifest: BundleManifest, plots: Mapping[str, str] | None = None) -> str:
    """README.md with Hugging Face front matter (library_name, tags, model-index metrics)."""
    import yaml

    attributes = list(manifest.attributes)
    results = []
    for attribute, values in manifest.metrics.items():
        numeric = {k: v for k, v in values.items() if isinstance(v, (int, float))
                   and not isinstance(v, bool) and math.isfinite(v)}
        if not numeric:
            continue
        results.append({
            "task": {"type": "image-classification", "name": f"{attribute} classification"},
            "dataset": {"name": "validation", "type": "fashion-validation"},
            "metrics": [
                {"type": metric, "value": float(value), "name": f"{attribute} {metric}"}
                for metric, value in numeric.items()
            ],
        })
    meta: dict[str, Any] = {
        "library_name": "fashion",
        "tags": ["fashion", "product-attributes", "multi-task", *[f"attribute:{a}" for a in attributes]],
    }
    if results:
        meta["model-index"] = [{"name": "fashion-model", "results": results}]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             "# fashion product-attribute model", "",
             f"Predicts {', '.join(attributes) or 'no attributes yet'} from product photos and "
             "text. Load it with:", "", "```python", "from fashion import Predictor", "",
             'predictor = Predictor.from_pretrained("path/or/hf://org/name")',
             'print(predictor.predict([{"images": ["shoe.jpg"], "title": "Red sneaker"}]))',
             "```", "", "## Attributes", "", "| attribute | labels | head | threshold |",
             "|---|---|---|---|"]
    for a, entry in manifest.attributes.items():
        labels = ", ".join(entry.labels[:12]) + (" …" if len(entry.labels) > 12 else "")
        lines.append(f"| {a} | {labels} | {entry.head} | {entry.threshold} |")
    lines += ["", "## Components", "", "| path | component | plugin distribution |", "|---|---|---|"]
    for path, c in manifest.components.items():
        dist = f"{c.distribution} {c.version or ''}".strip() if c.distribution else "(not packaged)"
        lines.append(f"| {path} | {c.name} | {dist} |")
    if manifest.metrics:
        lines += ["", "## Metrics", ""]
        for attribute, values in manifest.metrics.items():
            shown = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                              for k, v in values.items() if not isinstance(v, (list, dict)))
            lines.append(f"- **{attribute}**: {shown}")
    for attribute, rel in (plots or {}).items():
        lines += ["", f"### {attribute} confusion matrix", "", f"![{attribute} confusion matrix]({rel})"]
    if manifest.provenance.datasets:
        lines += ["", "## Training data", ""]
        for d in manifest.provenance.datasets:
            lines.append(f"- {d.get('name', '?')}: {d.get('rows', '?')} rows"
                         + (f", sha256 {str(d['sha256'])[:12]}" if d.get("sha256") else ""))
    lines += ["", f"Bundle format {manifest.format_version}, written by fashion-sdk "
              f"{manifest.sdk_version}. See docs/bundle-format.md.", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- load


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(
            f"{path} is not valid JSON ({exc}); the bundle is damaged. Re-download it "
            "(`fashion pull <uri>`) or save it again."
        ) from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"{path} has no integer format_version; it is not a fashion bundle.")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{directory} uses bundle format {version} (written by fashion-sdk "
            f"{raw.get('sdk_version', '?')}), but this fashion-sdk {_sdk_version()} reads format "
            f"{FORMAT_VERSION} at most. Upgrade: pip install -U fashion-sdk"
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(
            f"{path} is malformed: {problems}. Re-download the bundle (`fashion pull <uri>`)."
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
            get_registration(c.kind, c.name)
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


def load_bundle(
    path_or_uri: str | Path,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> Bundle:
    """Load a bundle from a folder, ``hf://org/name[@rev]`` or ``local://name[@rev]``.

    Strict: every file's sha256 is checked, every component's tensors must match its module
    exactly, a missing plugin or a newer bundle format is refused with what to install.
    ``endpoint``, ``token``, ``cache_dir`` and ``local_files_only`` apply to ``hf://`` URIs.
    """
    from fashion.registry.uri import fetch_uri

    directory, uri = fetch_uri(
        path_or_uri, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
    manifest = read_manifest(directory)
    verify_bundle(directory, manifest)
    check_plugins(manifest, where=f"bundle {uri or directory}")
    assets = {p: directory / c.assets for p, c in manifest.components.items() if c.assets}
    model = FashionModel(manifest.spec, assets=assets, pretrained=False)
    modules = model.component_modules()
    unknown = sorted(set(manifest.components) - set(modules))
    absent = sorted(set(modules) - set(manifest.components))
    if unknown or absent:
        raise BundleError(
            f"bundle {directory}: the manifest's components {unknown or ''} do not match the "
            f"model its spec builds (missing entries: {absent or 'none'}); the bundle is damaged "
            "or was edited. Re-download it (`fashion pull <uri>`)."
        )
    for path, module in modules.items():
        _load_component(directory, path, manifest.components[path], module)
    if device is not None:
        model.to(device)
    model.eval()
    return Bundle(model=model, manifest=manifest, path=directory, uri=uri)


def _load_component(directory: Path, path: str, entry: ComponentEntry, module: nn.Module) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    expected = module.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    if entry.weights:
        file = _safe_path(directory, entry.weights)
        try:
            tensors = load_file(str(file), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise BundleError(
                f"bundle {directory}: {entry.weights} is not a readable safetensors file "
                f"({exc}). Re-download the model (`fashion pull <uri>`)."
            ) from None
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(tensors) & set(expected) if tensors[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        where = entry.weights or f"(no weights file for {path})"
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:10]}{' …' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:10]}{' …' if len(unexpected) > 10 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:10]}")
        installed = get_registration(entry.kind, entry.name)
        raise BundleError(
            f"bundle {directory}: {where} does not fit {entry.kind} '{entry.name}' at {path}: "
            f"{'; '.join(parts)}. The file is damaged, or the installed plugin "
            f"({installed.distribution or installed.plugin} {installed.version or ''}) builds a "
            f"different module than the one that saved it ({entry.distribution or entry.plugin} "
            f"{entry.version or ''}). Re-download the bundle or install the plugin version it names."
        )
    if tensors:
        module.load_state_dict(tensors, strict=True)


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "AttributeEntry",
    "Bundle",
    "BundleManifest",
    "ComponentEntry",
    "FileEntry",
    "Provenance",
    "check_plugins",
    "load_bundle",
    "model_card",
    "read_manifest",
    "save_bundle",
    "sha256_file",
    "verify_bundle",
]
