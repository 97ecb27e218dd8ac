"""Writing a model as a bundle folder: components, the ``fashion.json`` index, the model card.

:func:`save_bundle` stages everything in a temporary sibling folder and renames it into place,
so a reader sees the old bundle or the new one. The ``preprocessing`` block records what each
image backbone is fed (normalization, and every view's cropper and options); the loader
(:mod:`fashion.registry.bundle`) compares it with what the rebuilt model would do.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from fashion._util.faults import fault_point
from fashion._util.files import link_or_copy, sha256_file
from fashion.contract.components import Component, ImageBackbone, module_fingerprint
from fashion.contract.manager import get_component_info
from fashion.data.weights import save_safetensors, tensors_for_saving
from fashion.errors import BundleError, ConfigError, UnknownComponentError
from fashion.model.network import FashionModel, LateAttribute
from fashion.model.spec import ModelSpec
from fashion.registry.bundle_format import (
    FORMAT_VERSION,
    INDEX_NAME,
    KIND_OF_PREFIX,
    README_NAME,
    AttributeEntry,
    BundleIndex,
    ComponentEntry,
    FileEntry,
    Provenance,
    _safe_path,
    dump_index,
    read_index,
    sdk_version,
)
from fashion.registry.model_card import model_card

_PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


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



def _list_files(root: Path) -> list[str]:
    """Every file under ``root`` (posix paths) but the index itself."""
    files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(rel for rel in files if rel != INDEX_NAME)


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
    if directory.is_dir() and any(directory.iterdir()) and not (directory / INDEX_NAME).is_file():
        raise BundleError(
            f"{directory} is a non-empty folder that is not a fashion bundle; refusing to "
            "overwrite it. Choose an empty or new folder."
        )
    previous = _reusable(reuse_from)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(directory)
    staging = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        index = _write_bundle(
            model, staging, metrics, provenance, training_config, parent, plots, previous
        )
        (staging / INDEX_NAME).write_text(dump_index(index), encoding="utf-8")
        fault_point("bundle.staged")
        _move_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _reusable(reuse_from: str | Path | None) -> tuple[Path, BundleIndex] | None:
    if reuse_from is None:
        return None
    root = Path(reuse_from)
    try:
        return root, read_index(root)
    except BundleError:
        return None  # nothing to reuse; everything is written afresh


def _move_into_place(staging: Path, directory: Path) -> None:
    """Put ``staging`` at ``directory``: a rename, or an atomic exchange with the old bundle
    (``renameat2(RENAME_EXCHANGE)`` on Linux), so a reader or a kill never finds no bundle."""
    if not directory.exists():
        os.rename(staging, directory)
        return
    if exchange_paths(staging, directory):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old bundle
        return
    old = directory.parent / f".{directory.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(directory, old)
    fault_point("bundle.swap")
    os.rename(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); ``False`` where
    the system cannot, so the caller falls back to two renames."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("FASHION_NO_RENAME_EXCHANGE"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(result == 0)


def _clear_leftovers(directory: Path) -> None:
    """Remove staging folders of ``directory`` left by killed saves (their process is gone)."""
    for leftover in directory.parent.glob(f".{glob.escape(directory.name)}.*-*"):
        kind, _, rest = leftover.name[len(directory.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("tmp", "old") or not leftover.is_dir() or leftover.is_symlink():
            continue
        if pid.isdigit() and _alive(int(pid)):
            continue  # another save of the same folder is running
        shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_bundle(
    model: FashionModel,
    staging: Path,
    metrics: Mapping[str, Mapping[str, Any]] | None,
    provenance: Mapping[str, Any] | Provenance | None,
    training_config: Mapping[str, Any] | None,
    parent: str | None,
    plots: Mapping[str, str | Path] | None,
    previous: tuple[Path, BundleIndex] | None,
) -> BundleIndex:
    components: dict[str, ComponentEntry] = {}
    for path, module in model.component_modules().items():
        kind = KIND_OF_PREFIX[path.split("/")[0]]
        component = _describing_component(module)
        name = component.component_name
        try:
            registration = get_component_info(kind, name)
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
            tensors = tensors_for_saving(module)
            if tensors:
                entry.weights = f"{path}.safetensors"
                entry.tensors = len(tensors)
                save_safetensors(tensors, staging / entry.weights)
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
        a: AttributeEntry.model_validate({**s.model_dump(), "multilabel": model.task(a).multilabel})
        for a, s in spec.attributes.items()
    }
    copied_plots = _copy_plots(plots, staging)
    prov = provenance if isinstance(provenance, Provenance) else Provenance(**dict(provenance or {}))
    if training_config is not None:
        prov.training_config = dict(training_config)
    if parent is not None:
        prov.parent = parent
    index = BundleIndex(
        format_version=FORMAT_VERSION,
        sdk_version=sdk_version(),
        spec=spec,
        components=components,
        attributes=attributes,
        preprocessing=preprocessing_block(model, spec),
        files={},
        metrics={a: dict(m) for a, m in (metrics or {}).items()},
        provenance=prov,
    )
    (staging / README_NAME).write_text(model_card(index, copied_plots), encoding="utf-8")
    index.files = {
        rel: FileEntry(sha256=sha256_file(staging / rel), size=(staging / rel).stat().st_size)
        for rel in _list_files(staging)
    }
    return index


def _reuse_component(root: Path, index: BundleIndex, old: ComponentEntry, staging: Path) -> None:
    wanted = [old.weights] if old.weights else []
    if old.assets:
        prefix = old.assets.rstrip("/") + "/"
        wanted += [p for p in index.files if p.startswith(prefix)]
    for rel in wanted:
        source = _safe_path(root, rel)
        entry = index.files.get(rel)
        if entry is None or sha256_file(source) != entry.sha256:
            raise BundleError(
                f"cannot reuse {rel} from {root}: the file changed since that bundle was written. "
                "Save without reuse_from."
            )
        link_or_copy(source, staging / rel)


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


def preprocessing_block(model: FashionModel, spec: ModelSpec) -> dict[str, Any]:
    """What every backbone is fed: for image backbones the normalization and each view's
    cropper and options (size, resize filter...), for text backbones the options."""
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
                    v: {"cropper": spec.views[v].name, "options": model.croppers[v].options_dict()}
                    for v in s.views
                },
            }
        else:
            text[key] = {"backbone": s.name, "options": backbone.options_dict()}
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



__all__ = ["preprocessing_block", "save_bundle"]
