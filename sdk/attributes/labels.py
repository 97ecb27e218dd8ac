"""The labels of ``fashion add-attribute``: taxonomy lookup, labels proposed from the data,
the project scaffold (taxonomy file and manifest template), the scope of a new attribute and
:func:`resolve_labels`, which settles the labels and synonyms a run trains with.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from fashion.data.manifest import iter_manifest, manifest_columns
from fashion.errors import ConfigError, DataError
from fashion.model.spec import AttributeSpec
from fashion.model.taxonomy import DEFAULT_HEAD

if TYPE_CHECKING:
    from fashion.attributes.config import AddAttributeConfig

console = Console(stderr=True)


def taxonomy_for(name: str, project_dir: Path | None) -> Any:
    """The team's project taxonomy for ``name``, else the built-in one, else None."""
    from fashion.model.taxonomy_files import (
        PROJECT_FILE,
        builtin_taxonomies,
        load_project_taxonomies,
    )

    if project_dir is not None and (project_dir / PROJECT_FILE).is_file():
        project = load_project_taxonomies(project_dir / PROJECT_FILE)
        if name in project:
            return project[name]
    return builtin_taxonomies().get(name)


def slug(value: str) -> str:
    from fashion.model.taxonomy import normalize_text

    return normalize_text(value).replace(" ", "_")


def propose_labels(
    name: str, manifests: Sequence[str | Path], *, project_dir: Path | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Count the values of column ``name`` across manifests, mapped through the taxonomy.

    Returns ``(label -> count, unmapped raw value -> count)``. Values the taxonomy knows map to
    canonical labels (vendor synonyms included); without a taxonomy, values are normalized
    (case, accents, spacing) into snake_case labels.
    """
    taxonomy = taxonomy_for(name, project_dir)
    counts: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    for manifest in manifests:
        if name not in manifest_columns(manifest):
            raise DataError(
                f"{manifest} has no column {name!r}; add one holding the {name} label of each row."
            )
        for row in iter_manifest(manifest):
            raw = row.values.get(name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            raw = str(raw)
            if taxonomy is not None:
                label = taxonomy.normalize(raw)
                if label is None:
                    unmapped[raw] += 1
                else:
                    counts[label] += 1
            else:
                counts[slug(raw)] += 1
    return dict(counts.most_common()), dict(unmapped.most_common())


def scaffold_attribute(
    name: str,
    *,
    labels: Sequence[str],
    synonyms: Mapping[str, str] | None = None,
    head: str = DEFAULT_HEAD,
    project_dir: Path,
) -> list[Path]:
    """Write the attribute into the project's taxonomy file and a manifest template.

    The scope (``applies_to``) and "does not apply" words of the attribute's existing taxonomy
    (project or built-in) are kept."""
    from fashion.model.taxonomy import Taxonomy
    from fashion.model.taxonomy_files import PROJECT_FILE, save_project_taxonomy

    known = taxonomy_for(name, project_dir)
    taxonomy = Taxonomy(
        name=name, labels=list(labels), synonyms=dict(synonyms or {}),
        description=f"{name} (head: {head})",
        applies_to=dict(known.applies_to) if known is not None else {},
        not_applicable=list(known.not_applicable) if known is not None else [],
    )
    project_dir.mkdir(parents=True, exist_ok=True)
    written = [save_project_taxonomy(project_dir / PROJECT_FILE, taxonomy)]
    template = project_dir / f"{name}-manifest.csv"
    if not template.exists():
        with template.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "images", "title", "description", "brand", name])
            writer.writerow(
                ["sku-001", "images/sku-001_0.jpg|images/sku-001_1.jpg",
                 "Vendor title", "Vendor description", "Brand", labels[0]]
            )
        written.append(template)
    return written


def scope_for(name: str, taxonomy: Any, attributes: Mapping[str, AttributeSpec]) -> dict[str, list[str]]:
    """The taxonomy's ``applies_to`` for a new attribute of a model predicting ``attributes``:
    scope attributes the model lacks (or labels it does not know) are dropped with a warning,
    since prediction could never decide them."""
    scope: dict[str, list[str]] = {}
    for other, allowed in (taxonomy.applies_to if taxonomy is not None else {}).items():
        spec = attributes.get(other)
        kept = [label for label in allowed if spec is not None and label in spec.labels]
        if kept:
            scope[other] = kept
        else:
            console.print(f"[yellow]{name} applies_to {other} in its taxonomy, but the base model "
                          f"does not predict {other} with those labels: {name} applies to every product.[/]")
    return scope


def _read_synonyms(synonyms: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    if synonyms is None:
        return {}
    if isinstance(synonyms, Mapping):
        return dict(synonyms)
    from fashion.model.spec import load_config_file

    data = load_config_file(synonyms)
    data = data.get("synonyms", data)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{synonyms}: synonyms must map vendor words to labels (strings).")
    return dict(data)


def resolve_labels(
    name: str, config: AddAttributeConfig
) -> tuple[list[str], dict[str, str], dict[str, int] | None]:
    """The attribute's labels (given, proposed from the data, or its taxonomy's), its synonyms
    (normalized vendor word -> label) and, when proposed from the data, the label counts."""
    from fashion.model.taxonomy import normalize_text

    project = config.project_dir if config.project_dir is not None else Path.cwd()
    synonym_map = _read_synonyms(config.synonyms)
    taxonomy = taxonomy_for(name, project)
    label_counts: dict[str, int] | None = None

    # 1. labels: given, proposed from the data, or the taxonomy's
    if config.labels:
        label_list = [slug(label) for label in config.labels]
    elif config.data:
        label_counts, unmapped = propose_labels(name, config.data, project_dir=project)
        if unmapped:
            shown = ", ".join(f"{v!r} ({n})" for v, n in list(unmapped.items())[:10])
            raise DataError(
                f"column {name!r} has values the {name} taxonomy does not know: {shown}. "
                "Map them with --synonyms FILE (vendor word -> label) or pass --labels."
            )
        label_list = list(label_counts)
        if len(label_list) < 2:
            raise DataError(
                f"column {name!r} holds fewer than two distinct labels ({label_list}); "
                "an attribute needs at least two. Check the data or pass --labels."
            )
    elif taxonomy is not None:
        label_list = list(taxonomy.labels)
    else:
        raise ConfigError(
            f"no labels for {name!r}: pass --labels a,b,c (or --data to propose them from a "
            "labeled manifest)."
        )
    if taxonomy is not None:
        merged = dict(taxonomy.synonyms)
        merged.update(synonym_map)
        synonym_map = {k: v for k, v in merged.items() if v in label_list}
    synonym_map = {normalize_text(k): v for k, v in synonym_map.items()}
    bad = {k: v for k, v in synonym_map.items() if v not in label_list}
    if bad:
        raise ConfigError(f"synonyms point at labels that are not in {label_list}: {bad}")

    return label_list, synonym_map, label_counts


__all__ = ["propose_labels", "resolve_labels", "scaffold_attribute", "scope_for"]
