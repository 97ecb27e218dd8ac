"""Model bundles: one folder with a ``fashion.json`` index, one safetensors file per component.

This module loads bundles (:func:`load_bundle`) and is the public face of the bundle code:
the format and its checks live in :mod:`fashion.registry.bundle_format`, writing in
:mod:`fashion.registry.bundle_write`, the model card in :mod:`fashion.registry.model_card`.

Loading is strict: every file's sha256 is checked, every component's tensors must match its
module, and the inputs the rebuilt model would compute must be the ones the bundle was saved
with. Image preprocessing is part of the backbone's options (format 2), so a bundle keeps using
its saved normalization after a plugin upgrade changes the plugin's default; the loader warns
about such a change and shows it. The ``preprocessing`` block of ``fashion.json`` is compared
with the rebuilt model, and a difference (a plugin that ignores an option, an edited block) is
refused with every differing value named.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fashion._util.files import sha256_file
from fashion.contract.components import ImageBackbone
from fashion.contract.manager import get_component_info
from fashion.errors import BundleError
from fashion.model.network import FashionModel
from fashion.model.spec import ModelSpec
from fashion.registry.bundle_format import (
    FORMAT_VERSION,
    INDEX_NAME,
    AttributeEntry,
    Bundle,
    BundleIndex,
    ComponentEntry,
    FileEntry,
    Provenance,
    _safe_path,
    check_plugins,
    read_index,
    verify_bundle,
)
from fashion.registry.bundle_write import preprocessing_block, save_bundle
from fashion.registry.model_card import model_card


class PreprocessingChangedWarning(UserWarning):
    """An installed plugin's default preprocessing differs from what a bundle was saved with."""


class DamagedArtifactWarning(UserWarning):
    """A bundle's ``optimizations`` record is damaged: it is loaded without its ONNX artifacts
    and accuracy-gate verdict (the model's weights are unaffected)."""


def spec_with_saved_preprocessing(index: BundleIndex, directory: Path) -> ModelSpec:
    """The bundle's spec with each image backbone's saved normalization in its options.

    Format 2 bundles carry it in the options already. Format 1 bundles kept it only in the
    ``preprocessing`` block: it is read back from there.
    """
    if index.format_version >= 2:
        return index.spec
    data = index.spec.model_dump(mode="json")
    images = index.preprocessing.get("images", {})
    for key, backbone in data["backbones"].items():
        if not backbone["views"] or "preprocessing" in backbone["options"]:
            continue
        saved = images.get(key) if isinstance(images, dict) else None
        if not isinstance(saved, dict) or "mean" not in saved or "std" not in saved:
            raise BundleError(
                f"bundle {directory} (format 1) has no saved mean/std for image backbone {key!r} "
                f"in the preprocessing block of {INDEX_NAME}, so its inputs cannot be "
                f"reproduced. Save it again with the current fashion-sdk (format {FORMAT_VERSION})"
                " from the training run, or retrain it."
            )
        backbone["options"]["preprocessing"] = {"mean": saved["mean"], "std": saved["std"]}
    return ModelSpec.parse(data, source=f"model spec of bundle {directory}")


def _differences(saved: Any, now: Any, where: str) -> list[str]:
    """``where: saved -> now`` for every value of ``saved`` that ``now`` differs in."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out: list[str] = []
        for key, value in saved.items():
            if key not in now:
                out.append(f"{where}.{key}: {value!r} -> (absent)")
            else:
                out.extend(_differences(value, now[key], f"{where}.{key}"))
        return out
    if isinstance(saved, (list, tuple)) and isinstance(now, (list, tuple)):
        if len(saved) == len(now) and all(
            not _differences(a, b, where) for a, b in zip(saved, now, strict=True)
        ):
            return []
        return [f"{where}: {list(saved)!r} -> {list(now)!r}"]
    if isinstance(saved, float) or isinstance(now, float):
        try:
            if abs(float(saved) - float(now)) <= 1e-6 * max(1.0, abs(float(saved))):
                return []
        except (TypeError, ValueError):
            pass
    return [] if saved == now else [f"{where}: {saved!r} -> {now!r}"]


def check_preprocessing(model: FashionModel, index: BundleIndex, directory: Path) -> None:
    """Refuse a model whose inputs differ from the saved ``preprocessing`` block; warn when an
    installed plugin's default normalization differs from the saved one (the saved one is used)."""
    saved = index.preprocessing
    if saved:
        now = preprocessing_block(model, model.spec)
        problems = _differences(saved, now, "preprocessing")
        if problems:
            raise BundleError(
                f"bundle {directory}: the installed plugins would feed this model other inputs "
                f"than it was saved with ({'; '.join(problems[:8])}"
                f"{' …' if len(problems) > 8 else ''}; saved -> now). Install the plugin "
                "versions the bundle names (`fashion show` lists them), or re-save the bundle."
            )
    for key, backbone in model.backbones.items():
        if not isinstance(backbone, ImageBackbone):
            continue
        default = backbone.default_preprocessing()  # a model's own (open_clip) or the class's
        used = backbone.preprocessing
        if (default.mean, default.std) != (used.mean, used.std):
            entry = index.components.get(f"backbones/{key}")
            installed = get_component_info("backbone", backbone.component_name)
            warnings.warn(
                f"bundle {directory}: backbone {key!r} ({backbone.component_name}) was saved with "
                f"mean {list(used.mean)}, std {list(used.std)}; the installed plugin "
                f"({installed.distribution or installed.plugin} {installed.version or ''}) now "
                f"defaults to mean {list(default.mean)}, std {list(default.std)}"
                + (f" (the bundle was written with {entry.distribution or entry.plugin} "
                   f"{entry.version or ''})" if entry else "")
                + ". The saved values are used.",
                PreprocessingChangedWarning,
                stacklevel=3,
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
    index = read_index(directory)
    verify_bundle(directory, index)
    if index.optimizations_problem:
        warnings.warn(index.optimizations_problem + ".", DamagedArtifactWarning, stacklevel=2)
    check_plugins(index, where=f"bundle {uri or directory}")
    assets = {p: directory / c.assets for p, c in index.components.items() if c.assets}
    spec = spec_with_saved_preprocessing(index, directory)
    model = FashionModel(spec, assets=assets, pretrained=False)
    check_preprocessing(model, index, directory)
    modules = model.component_modules()
    unknown = sorted(set(index.components) - set(modules))
    absent = sorted(set(modules) - set(index.components))
    if unknown or absent:
        raise BundleError(
            f"bundle {directory}: the index's components {unknown or ''} do not match the "
            f"model its spec builds (missing entries: {absent or 'none'}); the bundle is damaged "
            "or was edited. Re-download it (`fashion pull <uri>`)."
        )
    for path, module in modules.items():
        _load_component(directory, path, index.components[path], module)
    if device is not None:
        model.to(device)
    model.eval()
    return Bundle(model=model, index=index, path=directory, uri=uri)


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
        installed = get_component_info(entry.kind, entry.name)
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
    "INDEX_NAME",
    "AttributeEntry",
    "Bundle",
    "BundleIndex",
    "ComponentEntry",
    "DamagedArtifactWarning",
    "FileEntry",
    "PreprocessingChangedWarning",
    "Provenance",
    "check_plugins",
    "check_preprocessing",
    "load_bundle",
    "model_card",
    "read_index",
    "save_bundle",
    "sha256_file",
    "verify_bundle",
]
