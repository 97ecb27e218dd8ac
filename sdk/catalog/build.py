"""The entry points: :func:`make_catalog`, :func:`read_ground_truth` and the ``make-catalog`` command."""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import random
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fashion.catalog.info import (
    ATTRIBUTES,
    DATASET_SHARES,
    DATASETS,
    GROUND_TRUTH_COLUMNS,
    MANIFEST_COLUMNS,
    NOISE_COLUMNS,
    NOISE_FILE,
    NOT_APPLICABLE_CELLS,
    SLEEVED,
    SPLITS,
    CatalogInfo,
    DatasetInfo,
    ProgressCallback,
)
from fashion.catalog.products import _Product, _sample_product
from fashion.catalog.render import _render_product
from fashion.catalog.text import _VENDORS, _label_cell, _write_text
from fashion.errors import ConfigError
from fashion.model.taxonomy import Taxonomy
from fashion.model.taxonomy_files import builtin_taxonomies

# ---------------------------------------------------------------------------------------------
# datasets and splits


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    counts = [math.floor(n * f) for f in fractions]
    remainders = sorted(range(len(fractions)), key=lambda i: n * fractions[i] - counts[i])
    for i in reversed(remainders[len(remainders) - (n - sum(counts)) :]):
        counts[i] += 1
    if n >= len(fractions):  # every split with a positive share gets at least one row
        for i, f in enumerate(fractions):
            if f > 0 and counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _assign(
    rng: random.Random,
    products: list[_Product],
    fractions: Sequence[float],
    not_applicable: float = 0.0,
) -> None:
    n = len(products)
    order = list(range(n))
    rng.shuffle(order)
    sleeved = [i for i in order if products[i].category in SLEEVED]
    n_sleeves = min(len(sleeved), round(n * DATASET_SHARES["sleeves"]))
    chosen = set(sleeved[:n_sleeves])
    if not_applicable > 0:  # out-of-scope products join the sleeves dataset, labeled "n/a"
        unsleeved = [i for i in order if products[i].category not in SLEEVED]
        chosen.update(unsleeved[: round(len(unsleeved) * not_applicable)])
    rest = [i for i in order if i not in chosen]
    n_colors = min(len(rest), round(n * DATASET_SHARES["colors_patterns"]))
    members = {
        "colors_patterns": sorted(rest[:n_colors]),
        "categories": sorted(rest[n_colors:]),
        "sleeves": sorted(chosen),
    }
    for name, indices in members.items():
        rng.shuffle(indices)
        start = 0
        for split, count in zip(SPLITS, _split_counts(len(indices), fractions), strict=True):
            for i in indices[start : start + count]:
                products[i].dataset, products[i].split = name, split
            start += count


def _flip_labels(
    rng: random.Random,
    members: Sequence[_Product],
    attributes: Sequence[str],
    share: float,
    taxonomies: Mapping[str, Taxonomy],
) -> dict[tuple[int, str], str]:
    """``{(row, attribute): wrong label}`` for ``share`` of each attribute's labeled rows."""
    given: dict[tuple[int, str], str] = {}
    for a in attributes:
        labeled = [i for i, p in enumerate(members) if getattr(p, a)]
        for i in sorted(rng.sample(labeled, round(len(labeled) * share))):
            true = getattr(members[i], a)
            given[i, a] = rng.choice([label for label in taxonomies[a].labels if label != true])
    return given


def _write_csv(path: Path, header: Sequence[str], rows: Iterator[Sequence[str]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# entry points


def _check_args(
    products: int,
    image_size: int,
    images_per_product: tuple[int, int],
    splits: tuple[float, float, float],
    label_noise: float = 0.0,
    not_applicable: float = 0.0,
) -> None:
    if products < 1:
        raise ConfigError(f"products must be at least 1 (got {products})")
    if not 64 <= image_size <= 4096:
        raise ConfigError(f"image_size must be between 64 and 4096 pixels (got {image_size})")
    lo, hi = images_per_product
    if not 1 <= lo <= hi <= 8:
        raise ConfigError(
            f"images_per_product must be (min, max) with 1 <= min <= max <= 8 (got {lo}, {hi})"
        )
    if len(splits) != 3 or any(f < 0 for f in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise ConfigError(
            f"splits must be three non-negative train/val/test fractions summing to 1 (got {splits})"
        )
    if not 0.0 <= label_noise < 1.0:
        raise ConfigError(f"label_noise must be a share in [0, 1) (got {label_noise})")
    if not 0.0 <= not_applicable <= 1.0:
        raise ConfigError(f"not_applicable must be a share in [0, 1] (got {not_applicable})")


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; choose a folder for the catalog")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "catalog.json").is_file():
            raise ConfigError(f"{out} is not empty and holds no catalog; choose an empty folder")
        if not overwrite:
            raise ConfigError(
                f"{out} already holds a catalog; pass overwrite=True (`--overwrite`) to replace it"
            )
        for name in ("images", "datasets"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("catalog.json", "ground_truth.csv", NOISE_FILE):
            (out / name).unlink(missing_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)


def make_catalog(
    out: str | Path,
    *,
    products: int = 600,
    seed: int = 0,
    image_size: int = 512,
    images_per_product: tuple[int, int] = (1, 3),
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
    progress: ProgressCallback | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    label_noise: float = 0.0,
    not_applicable: float = 0.0,
) -> CatalogInfo:
    """Generate a synthetic catalog under ``out`` and return what was written.

    ``progress(done, total)`` is called as products are rendered. ``workers`` processes draw
    the images (default: up to 4, one per CPU, for catalogs of 200+ products); the output does
    not depend on it. An existing catalog in ``out`` is only replaced with ``overwrite=True``.

    Options for measuring trust (both off by default; the default output does not change):
    ``label_noise`` flips that share of each attribute's labeled cells in the *train* manifests
    to another label (val and test stay clean), listing every flipped cell in
    ``label_noise.csv``; ``not_applicable`` moves that share of the out-of-scope products
    (pants and skirts, which have no sleeves) into the ``sleeves`` dataset with a vendor
    "does not apply" cell ("n/a", "-", "none", ...).
    """
    out = Path(out)
    _check_args(products, image_size, images_per_product, splits, label_noise, not_applicable)
    _prepare_out(out, overwrite)

    rng = random.Random(f"fashion-catalog:{seed}")
    plan = [_sample_product(rng, i, images_per_product) for i in range(products)]
    text_rng = random.Random(f"fashion-catalog-text:{seed}")
    for p in plan:
        _write_text(text_rng, p, text_rng.choice(_VENDORS))
    _assign(random.Random(f"fashion-catalog-split:{seed}"), plan, splits, not_applicable)

    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers = min(cpus or 1, 4) if products >= 200 else 1
    image_dir = str(out / "images")
    tasks = [(p, image_size, seed, image_dir) for p in plan]
    boxes: list[list[str]] = []
    if workers <= 1:
        for p_done, task in enumerate(tasks, start=1):
            boxes.append(_render_product(task))
            if progress:
                progress(p_done, products)
    else:
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            chunk = max(1, min(16, products // (workers * 8)))
            for p_done, result in enumerate(pool.map(_render_product, tasks, chunksize=chunk), 1):
                boxes.append(result)
                if progress:
                    progress(p_done, products)

    # manifests: one dataset per product, canonical labels with some vendor noise
    taxonomies = builtin_taxonomies()
    synonyms: dict[str, dict[str, list[str]]] = {}
    for name, tax in taxonomies.items():
        by_label: dict[str, list[str]] = {}
        for word, label in tax.synonyms.items():
            if word.isascii():
                by_label.setdefault(label, []).append(word)
        synonyms[name] = by_label
    label_rng = random.Random(f"fashion-catalog-labels:{seed}")
    noise_rng = random.Random(f"fashion-catalog-noise:{seed}")
    flipped: list[list[str]] = []
    datasets: dict[str, DatasetInfo] = {}
    for name, attributes in DATASETS.items():
        manifests: dict[str, str] = {}
        rows: dict[str, int] = {}
        for split in SPLITS:
            members = [p for p in plan if p.dataset == name and p.split == split]
            rel = f"datasets/{name}/{split}.csv"
            given: dict[tuple[int, str], str] = {}
            if label_noise > 0 and split == "train":
                given = _flip_labels(noise_rng, members, attributes, label_noise, taxonomies)
                flipped += [
                    [members[i].id, name, split, rel, str(i + 2), a, getattr(members[i], a), label]
                    for (i, a), label in sorted(given.items(), key=lambda item: (item[0][1], item[0][0]))
                ]
            lines = (
                [
                    p.id,
                    "|".join(f"../../images/{n}" for n in p.image_names),
                    p.title,
                    p.description,
                    p.brand,
                    *(
                        given[i, a] if (i, a) in given
                        else noise_rng.choice(NOT_APPLICABLE_CELLS) if not getattr(p, a)
                        else _label_cell(label_rng, getattr(p, a), synonyms[a])
                        for a in attributes
                    ),
                ]
                for i, p in enumerate(members)
            )
            rows[split] = _write_csv(out / rel, (*MANIFEST_COLUMNS, *attributes), lines)
            manifests[split] = rel
        datasets[name] = DatasetInfo(
            name=name, attributes=list(attributes), manifests=manifests, rows=rows
        )

    truth = (
        [
            p.id,
            p.dataset,
            p.split,
            p.vendor,
            p.brand,
            p.title,
            p.description,
            *(getattr(p, a) for a in ATTRIBUTES),
            p.scale,
            "#{:02x}{:02x}{:02x}".format(*p.rgb),
            "|".join(f"images/{n}" for n in p.image_names),
            "|".join(p.shots),
            "|".join(box),
            "|".join(p.mentions),
        ]
        for p, box in zip(plan, boxes, strict=True)
    )
    _write_csv(out / "ground_truth.csv", GROUND_TRUTH_COLUMNS, truth)
    if label_noise > 0:
        _write_csv(out / NOISE_FILE, NOISE_COLUMNS, iter(flipped))

    info = CatalogInfo(
        out=out,
        seed=seed,
        products=products,
        images=sum(len(p.shots) for p in plan),
        image_size=image_size,
        images_per_product=(images_per_product[0], images_per_product[1]),
        splits=dict(zip(SPLITS, splits, strict=True)),
        datasets=datasets,
        vendors=[v.name for v in _VENDORS],
        label_noise=label_noise,
        not_applicable=not_applicable,
    )
    info.save()
    return info


def read_ground_truth(catalog: str | Path | CatalogInfo) -> list[dict[str, str]]:
    """The rows of ``ground_truth.csv`` as dictionaries (one per product, in id order)."""
    path = catalog.ground_truth_path if isinstance(catalog, CatalogInfo) else Path(catalog)
    if path.is_dir():
        path = path / "ground_truth.csv"
    if not path.is_file():
        raise ConfigError(f"{path} not found; generate a catalog with `fashion make-catalog`")
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


__all__ = ["make_catalog", "read_ground_truth"]
