"""Compose bundles: heads trained by different teams on one shared base become one model.

Every head bundle must have been trained on the same base: its croppers, backbones and fusion
must have the same fingerprints as the base bundle's (heads read the fusion's output, so any
difference there would silently change what a head sees). An attribute found in a head bundle
replaces the base's attribute of the same name (heads a bundle carries unchanged from the
base are ignored); two head bundles may not both retrain one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from fashion.data.outputs import check_output_paths
from fashion.errors import BundleError
from fashion.model.spec import ModelSpec
from fashion.registry.bundle import BundleIndex, load_bundle, read_index, save_bundle
from fashion.registry.uri import fetch_uri


def _shared(index: BundleIndex) -> dict[str, str]:
    """Fingerprints of everything but the heads."""
    return {p: c.fingerprint for p, c in index.components.items() if c.kind != "head"}


def check_composable(base: BundleIndex, head: BundleIndex, base_name: str, head_name: str) -> None:
    """Refuse a head bundle whose shared components differ from the base's, naming both prints."""
    ours, theirs = _shared(base), _shared(head)
    problems = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path), theirs.get(path)
        if a != b:
            problems.append(f"{path}: base {a or '(absent)'} vs {head_name} {b or '(absent)'}")
    if problems:
        raise BundleError(
            f"{head_name} was not trained on the base {base_name}: its shared components differ "
            f"({'; '.join(problems)}). Retrain its heads on the base bundle (freeze the "
            "backbones), or compose it with the base it was trained on."
        )


def compose_bundles(
    base: str | Path,
    heads: Sequence[str | Path],
    out: str | Path,
    *,
    device: str | None = None,
) -> Path:
    """Write a bundle at ``out``: the base model plus every head bundle's attributes."""
    if not heads:
        raise BundleError("compose needs at least one head bundle besides the base.")
    base_dir, base_uri = fetch_uri(base)
    base_index = read_index(base_dir)
    sources: list[tuple[Path, str, BundleIndex, list[str]]] = []
    owner: dict[str, tuple[str, str]] = {}  # attribute -> (bundle, head fingerprint)
    for head in heads:
        head_dir, head_uri = fetch_uri(head)
        label = head_uri or str(head_dir)
        index = read_index(head_dir)
        check_composable(base_index, index, base_uri or str(base_dir), label)
        contributed = []
        for attribute in index.attributes:
            fingerprint = index.components[f"heads/{attribute}"].fingerprint
            base_head = base_index.components.get(f"heads/{attribute}")
            if base_head is not None and base_head.fingerprint == fingerprint:
                continue  # the base's own head, carried along unchanged
            if attribute in owner and owner[attribute][1] != fingerprint:
                raise BundleError(
                    f"attribute {attribute!r} was retrained in two head bundles "
                    f"({owner[attribute][0]} and {label}); compose only one of them."
                )
            owner[attribute] = (label, fingerprint)
            contributed.append(attribute)
        sources.append((head_dir, label, index, contributed))
    # the output guard of every writer: OUT is a new folder, never one of the bundles read
    reads = {"BASE": base_dir}
    reads.update({"HEAD" if len(sources) == 1 else f"HEAD #{i}": d
                  for i, (d, _, _, _) in enumerate(sources, 1)})
    check_output_paths(reads, new_folders={"--out": Path(out)})

    composed = load_bundle(base_dir, device=device)
    model = composed.model
    metrics: dict[str, dict[str, Any]] = dict(base_index.metrics)
    datasets = list(base_index.provenance.datasets)
    for head_dir, _, index, contributed in sources:
        if not contributed:
            continue
        donor = load_bundle(head_dir, device=device).model
        for attribute in contributed:
            spec = index.spec.attributes[attribute]
            if attribute in model.heads:
                del model.heads[attribute]
                data = model.spec.model_dump()
                del data["attributes"][attribute]
                model.spec = ModelSpec.parse(data)
            model.add_head(attribute, spec)
            model.heads[attribute].load_state_dict(donor.heads[attribute].state_dict(), strict=True)
            if attribute in index.metrics:
                metrics[attribute] = index.metrics[attribute]
            else:
                metrics.pop(attribute, None)
        datasets.extend(d for d in index.provenance.datasets if d not in datasets)
    order = list(base_index.attributes) + [a for a in model.heads if a not in base_index.attributes]
    data = model.spec.model_dump()
    data["attributes"] = {a: data["attributes"][a] for a in order}
    model.spec = ModelSpec.parse(data)
    model.heads = nn.ModuleDict({a: model.heads[a] for a in order})  # keep the base's order
    provenance = {
        "datasets": datasets,
        "parent": base_uri or str(base_dir),
        "composed_from": [
            {"bundle": label, "attributes": contributed,
             "index_sha256": _index_sha(head_dir)}
            for head_dir, label, _, contributed in sources
        ],
    }
    return save_bundle(model.eval(), out, metrics=metrics, provenance=provenance, reuse_from=base_dir)


def _index_sha(directory: Path) -> str:
    from fashion._util.files import sha256_file
    from fashion.registry.bundle import INDEX_NAME

    return sha256_file(directory / INDEX_NAME)


__all__ = ["check_composable", "compose_bundles"]
