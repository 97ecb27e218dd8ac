"""Labeled datasets: manifests -> products + normalized labels, with a report of every problem.

Loading a dataset reads its manifest as a stream (:mod:`fashion.data.manifest`), checks each row's
images once (exists, not empty, decodes), maps each label cell to a canonical label through the
attribute's taxonomy, and records every row it could not use in a :class:`DataReport`
(``rows_read == rows_used + rows_skipped``). Nothing is dropped silently.

- An empty cell is a *missing* label: masked out of the loss.
- A value no taxonomy knows is an *unknown* label: ``on_unknown_label="error"`` stops with the
  file, row and value; ``"skip"`` treats the cell as missing and records the problem.
- A bad row (missing, empty or corrupt image; text that is not text; no input at all) is
  skipped and recorded (``on_bad_row="error"`` stops instead).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from fashion._util.files import sha256_file
from fashion.data.manifest import iter_manifest, manifest_columns
from fashion.errors import ConfigError, DataError
from fashion.model.inputs import Product, row_to_product
from fashion.model.network import FashionModel
from fashion.training.config import DatasetConfig

MAX_LISTED_PROBLEMS = 10


# ------------------------------------------------------------------------------ reports


@dataclass
class Problem:
    """One unusable row or label: where it is, what it holds and why it was not used.

    ``row`` is the line of the file the record starts on, header counted (so ``train.csv:7`` is
    what an editor shows as line 7); for Parquet, which has no lines, the 1-based row.
    """

    file: str
    row: int | None
    field: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else self.file
        what = f" {self.field}={self.value!r}" if self.field else ""
        return f"{where}:{what} {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        value = self.value if isinstance(self.value, (str, int, float, bool, type(None))) else str(self.value)
        return {"file": self.file, "row": self.row, "field": self.field, "value": value, "reason": self.reason}


@dataclass
class DataReport:
    """What loading one dataset did: rows read = rows used + rows skipped, and every problem."""

    dataset: str
    path: str
    attributes: list[str]
    rows_read: int = 0
    rows_used: int = 0
    rows_skipped: int = 0
    unknown_labels: int = 0
    missing_labels: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "path": self.path,
            "sha256": self.sha256,
            "attributes": self.attributes,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_skipped": self.rows_skipped,
            "unknown_labels": self.unknown_labels,
            "missing_labels": self.missing_labels,
            "label_counts": self.label_counts,
            "problems": [p.to_dict() for p in self.problems],
        }

    def summary(self) -> str:
        text = (
            f"dataset {self.dataset!r} ({self.path}): {self.rows_read} rows read, "
            f"{self.rows_used} used, {self.rows_skipped} skipped, "
            f"{self.unknown_labels} unknown labels"
        )
        if self.problems:
            listed = "\n  ".join(str(p) for p in self.problems[:MAX_LISTED_PROBLEMS])
            more = len(self.problems) - MAX_LISTED_PROBLEMS
            text += f"\n  {listed}" + (f"\n  ... and {more} more" if more > 0 else "")
        return text


# --------------------------------------------------------------------------- normalizers


def label_normalizers(
    model: FashionModel, taxonomies: str | Path | None = None
) -> dict[str, Any]:
    """One normalizer per model attribute (``.resolve(raw)`` -> ``Resolution``).

    Synonyms come from, in order of precedence: the attribute's spec, the project taxonomy file
    (``taxonomies``), and the built-in taxonomy of the same name. Synonyms pointing at labels the
    model does not have are ignored (such values are reported as unknown).
    """
    from fashion.model.taxonomy import normalize_text
    from fashion.model.taxonomy_files import builtin_taxonomies, load_project_taxonomies

    builtin = builtin_taxonomies()
    project = load_project_taxonomies(taxonomies) if taxonomies is not None else {}
    out: dict[str, Any] = {}
    for attribute, spec in model.spec.attributes.items():
        labels = list(spec.labels)
        multilabel = bool(model.task(attribute).multilabel)
        seen = {normalize_text(label): label for label in labels}
        synonyms: dict[str, str] = {}
        sources: list[Mapping[str, str]] = [spec.synonyms]
        for table in (project, builtin):
            if attribute in table:
                sources.append(table[attribute].synonyms)
        for source in sources:
            for word, target in source.items():
                key = normalize_text(word)
                if target in labels and key and key not in seen:
                    seen[key] = target
                    synonyms[word] = target
        out[attribute] = type(spec).model_validate(
            {**spec.model_dump(), "synonyms": synonyms, "multilabel": multilabel}
        )
    return out


# ------------------------------------------------------------------------------ datasets


class LabeledDataset(torch.utils.data.Dataset):
    """Products and their canonical labels for the attributes one dataset labels.

    ``dataset[i]`` is ``(product, {attribute: label or None})``. ``targets`` holds the encoded
    targets of every row (``attribute -> (targets, mask)``), built once by :meth:`encode`.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        attributes: list[str],
        products: list[Product],
        labels: dict[str, list[str | None]],
        rows: list[int],
        image_digests: list[tuple[str, ...]] | None,
        report: DataReport,
    ) -> None:
        self.name = name
        self.path = path
        self.attributes = attributes
        self.products = products
        self.labels = labels
        self.rows = rows
        self.image_digests = image_digests
        self.report = report
        self.targets: dict[str, tuple[Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return len(self.products)

    def __getitem__(self, index: int) -> tuple[Product, dict[str, str | None]]:
        return self.products[index], {a: self.labels[a][index] for a in self.attributes}

    def encode(self, model: FashionModel) -> LabeledDataset:
        """Encode every row's labels once with the model's heads (``model.task(a).encode``)."""
        self.targets = {a: model.task(a).encode(self.labels[a]) for a in self.attributes}
        return self

    def subset(self, indices: Sequence[int], name: str) -> LabeledDataset:
        """A new dataset holding ``indices`` (in that order); shares the report's file info."""
        idx = list(indices)
        sub = LabeledDataset(
            name,
            self.path,
            self.attributes,
            [self.products[i] for i in idx],
            {a: [values[i] for i in idx] for a, values in self.labels.items()},
            [self.rows[i] for i in idx],
            None if self.image_digests is None else [self.image_digests[i] for i in idx],
            self.report,
        )
        if self.targets:
            index = torch.tensor(idx, dtype=torch.long)
            sub.targets = {a: (t[index], m[index]) for a, (t, m) in self.targets.items()}
        return sub

    def label_counts(self, attribute: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for value in self.labels[attribute]:
            if value is None:
                continue
            for label in value.split("|"):
                counts[label] = counts.get(label, 0) + 1
        return counts


def check_image(path: str) -> tuple[str | None, str | None]:
    """``(sha256 of the bytes, None)`` for a readable image, else ``(None, reason)``."""
    from PIL import Image

    file = Path(path)
    if not file.is_file():
        return None, "image file does not exist"
    data = file.read_bytes()
    if not data:
        return None, "image file is empty (0 bytes)"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:  # PIL raises many types for corrupt files
        return None, f"cannot decode image: {exc}"
    return hashlib.sha256(data).hexdigest(), None


def load_dataset(
    config: DatasetConfig,
    model: FashionModel,
    *,
    normalizers: Mapping[str, Any] | None = None,
    on_unknown_label: Literal["error", "skip"] = "error",
    on_bad_row: Literal["error", "skip"] = "skip",
    verify_images: bool = True,
    taxonomies: str | Path | None = None,
) -> LabeledDataset:
    """Read, check and normalize one dataset; see the module docstring for the rules."""
    path = config.manifest_path()
    columns = manifest_columns(path)
    known = model.attributes
    if config.attributes is None:
        attributes = [c for c in columns if c in known]
    else:
        attributes = list(config.attributes)
        unknown = [a for a in attributes if a not in known]
        if unknown:
            raise ConfigError(
                f"dataset {config.name!r} lists attributes {unknown} that the model does not have "
                f"(model attributes: {known}); fix `attributes` or add them to the model spec."
            )
        absent = [a for a in attributes if a not in columns]
        if absent and path.suffix.lower() != ".jsonl":
            raise DataError(
                f"{path}: dataset {config.name!r} should label {absent} but the manifest has no "
                f"such column (columns: {columns}); fix `attributes` or the manifest header."
            )
    if not attributes:
        raise ConfigError(
            f"dataset {config.name!r} ({path}) labels none of the model's attributes {known}: its "
            f"columns are {columns}. Rename the label columns to attribute names or set `attributes`."
        )
    normalizers = normalizers if normalizers is not None else label_normalizers(model, taxonomies)
    report = DataReport(config.name, str(path), attributes, sha256=sha256_file(path))
    report.missing_labels = dict.fromkeys(attributes, 0)
    products: list[Product] = []
    labels: dict[str, list[str | None]] = {a: [] for a in attributes}
    rows: list[int] = []
    digests: list[tuple[str, ...]] | None = [] if verify_images else None
    label_problems: list[Problem] = []
    bad_rows: list[Problem] = []

    for record in iter_manifest(path):
        report.rows_read += 1
        line = record.line if record.line is not None else record.row  # the file's line (header counted)
        problems: list[Problem] = []
        try:
            product = row_to_product(record, path)
        except DataError as exc:
            problem = Problem(str(path), line, None, None, f"unreadable row: {exc}")
            report.problems.append(problem)
            bad_rows.append(problem)
            report.rows_skipped += 1
            continue
        if product.id is None:
            product.id = f"{config.name}:{record.row}"
        row_digests: list[str] = []
        if verify_images:
            for image in product.images:
                digest, reason = check_image(image)
                if reason is not None:
                    problems.append(Problem(str(path), line, "images", image, reason))
                else:
                    row_digests.append(digest or "")
        if not product.images and not product.text_fields():
            problems.append(
                Problem(str(path), line, None, None, "the product has no images and no text")
            )
        if problems:
            report.problems.extend(problems)
            bad_rows.extend(problems)
            report.rows_skipped += 1
            continue
        values: dict[str, str | None] = {}
        for attribute in attributes:
            raw = record.values.get(attribute)
            resolution = normalizers[attribute].resolve(raw)
            if resolution.unknown:
                known_labels = model.spec.attributes[attribute].labels
                problem = Problem(
                    str(path), line, attribute, raw,
                    f"unknown label (known: {', '.join(known_labels)}); add a synonym to the "
                    "attribute's spec or the project taxonomy",
                )
                report.problems.append(problem)
                label_problems.append(problem)
                report.unknown_labels += 1
            if resolution.missing:
                report.missing_labels[attribute] += 1
            values[attribute] = resolution.label
        for attribute in attributes:  # a label given out of the attribute's scope is not trained on
            if model.spec.attributes[attribute].applies(values) is False:
                values[attribute] = None
        if all(v is None for v in values.values()):
            report.problems.append(
                Problem(str(path), line, None, None,
                        f"no usable label for any of {attributes}; row not used")
            )
            report.rows_skipped += 1
            continue
        products.append(product)
        rows.append(line)
        if digests is not None:
            digests.append(tuple(row_digests))
        for attribute, value in values.items():
            labels[attribute].append(value)
        report.rows_used += 1

    if label_problems and on_unknown_label == "error":
        raise DataError(_problem_message(
            f"{path}: {len(label_problems)} unknown label(s) in dataset {config.name!r}",
            label_problems,
            "Add the values as synonyms (attribute spec or project taxonomy) or set "
            "on_unknown_label = \"skip\" to train without them.",
        ))
    if bad_rows and on_bad_row == "error":
        raise DataError(_problem_message(
            f"{path}: {len(bad_rows)} bad row(s) in dataset {config.name!r}",
            bad_rows,
            "Fix or remove those rows, or set on_bad_row = \"skip\" to train without them.",
        ))
    dataset = LabeledDataset(config.name, path, attributes, products, labels, rows, digests, report)
    report.label_counts = {a: dataset.label_counts(a) for a in attributes}
    return dataset


def _problem_message(head: str, problems: Sequence[Problem], advice: str) -> str:
    listed = "; ".join(str(p) for p in problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    return f"{head}: {listed}" + (f"; ... and {more} more" if more > 0 else "") + f". {advice}"


def stratified_split(
    dataset: LabeledDataset, fraction: float, generator: torch.Generator
) -> tuple[list[int], list[int]]:
    """Row indices ``(train, validation)``, stratified on the dataset's first labeled attribute.

    Each label group (unlabeled rows form their own group) gives ``round(fraction · n)`` rows to
    validation; the split is deterministic for a given generator state.
    """
    attribute = dataset.attributes[0]
    groups: dict[str | None, list[int]] = {}
    for i, value in enumerate(dataset.labels[attribute]):
        groups.setdefault(value, []).append(i)
    train: list[int] = []
    val: list[int] = []
    for key in sorted(groups, key=lambda k: (k is None, k or "")):
        members = groups[key]
        order = torch.randperm(len(members), generator=generator).tolist()
        take = int(round(fraction * len(members)))
        if len(members) > 1:
            take = min(take, len(members) - 1)
        val.extend(members[i] for i in order[:take])
        train.extend(members[i] for i in order[take:])
    if not val and len(dataset) > 1 and fraction > 0:
        val.append(train.pop())
    return sorted(train), sorted(val)


def describe_datasets(datasets: Sequence[LabeledDataset]) -> list[dict[str, Any]]:
    """Provenance entries: name, path, sha256, rows and attributes of each dataset."""
    return [
        {
            "name": d.name,
            "path": d.report.path,
            "sha256": d.report.sha256,
            "rows": len(d),
            "rows_read": d.report.rows_read,
            "rows_skipped": d.report.rows_skipped,
            "attributes": d.attributes,
        }
        for d in datasets
    ]


def dumps_reports(reports: Sequence[DataReport]) -> str:
    return json.dumps([r.to_dict() for r in reports], indent=2, default=str)


__all__ = [
    "DataReport",
    "LabeledDataset",
    "Problem",
    "check_image",
    "describe_datasets",
    "label_normalizers",
    "load_dataset",
    "stratified_split",
]
