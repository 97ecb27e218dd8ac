from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashion.catalog import (
    ATTRIBUTES,
    DATASETS,
    SPLITS,
    CatalogInfo,
    load_catalog,
    make_catalog,
    read_ground_truth,
)
from fashion.cli.catalog import make_catalog_command
from fashion.errors import ConfigError
from fashion.model.taxonomy_files import builtin_taxonomies

PINNED_CATALOG_DIGEST = "71a1ba61057a8a81fb1acfa44ace8c75fea9f3e05da79c12d46c0a7b56dc7bd9"
SLEEVED = {"t_shirt", "shirt", "dress", "jacket", "sweater"}


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def box_of(cell: str) -> tuple[int, int, int, int]:
    left, top, right, bottom = (int(v) for v in cell.split(","))
    return left, top, right, bottom


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> CatalogInfo:
    return make_catalog(tmp_path_factory.mktemp("catalog"), products=300, image_size=256, seed=0)


@pytest.fixture(scope="module")
def truth(catalog: CatalogInfo) -> dict[str, dict[str, str]]:
    return {row["id"]: row for row in read_ground_truth(catalog)}


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    kwargs = {"products": 24, "image_size": 96, "images_per_product": (1, 3)}
    a = make_catalog(tmp_path / "a", seed=7, workers=1, **kwargs)
    b = make_catalog(tmp_path / "b", seed=7, workers=2, **kwargs)  # workers never change output
    c = make_catalog(tmp_path / "c", seed=8, workers=1, **kwargs)
    files_a = sorted(p.relative_to(a.out) for p in a.out.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b.out) for p in b.out.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes(), rel
    assert (a.out / "ground_truth.csv").read_bytes() != (c.out / "ground_truth.csv").read_bytes()
    assert (a.out / "images/p00000_0.png").read_bytes() != (
        c.out / "images/p00000_0.png"
    ).read_bytes()


def test_catalog_json_round_trip(catalog: CatalogInfo) -> None:
    assert load_catalog(catalog.out) == catalog
    assert json.loads((catalog.out / "catalog.json").read_text())["products"] == 300
    assert "out" not in json.loads((catalog.out / "catalog.json").read_text())
    assert catalog.dataset_names == list(DATASETS)
    assert catalog.attributes == {name: list(attrs) for name, attrs in DATASETS.items()}
    assert catalog.manifest_path("sleeves", "val") == catalog.out / "datasets/sleeves/val.csv"
    with pytest.raises(ConfigError, match="colors_patterns"):
        catalog.manifest_path("colours", "train")
    with pytest.raises(ConfigError, match="make-catalog"):
        load_catalog(catalog.out / "datasets")


def test_every_product_in_exactly_one_dataset_and_split(
    catalog: CatalogInfo, truth: dict[str, dict[str, str]]
) -> None:
    seen: Counter[str] = Counter()
    for name, ds in catalog.datasets.items():
        for split in SPLITS:
            _, rows = read_rows(catalog.manifest_path(name, split))
            assert len(rows) == ds.rows[split]
            for row in rows:
                seen[row["id"]] += 1
                assert (truth[row["id"]]["dataset"], truth[row["id"]]["split"]) == (name, split)
        assert ds.rows["train"] > ds.rows["val"] > 0 and ds.rows["test"] > 0
    assert len(seen) == catalog.products == len(truth) and set(seen.values()) == {1}
    shares = {name: ds.total / catalog.products for name, ds in catalog.datasets.items()}
    assert shares == pytest.approx({"colors_patterns": 0.4, "categories": 0.35, "sleeves": 0.25})
    assert sum(len(row["images"].split("|")) for row in truth.values()) == catalog.images


def test_manifests_hold_only_their_labels(catalog: CatalogInfo) -> None:
    for name, attributes in DATASETS.items():
        for split in SPLITS:
            header, _ = read_rows(catalog.manifest_path(name, split))
            assert header == ["id", "images", "title", "description", "brand", *attributes]


def test_image_paths_resolve_relative_to_the_manifest(catalog: CatalogInfo) -> None:
    checked = 0
    for name in DATASETS:
        path = catalog.manifest_path(name, "val")
        for row in read_rows(path)[1]:
            for rel in row["images"].split("|"):
                assert not Path(rel).is_absolute()
                image = (path.parent / rel).resolve()
                assert image.is_file(), image
                with Image.open(image) as img:
                    assert img.size == (256, 256) and img.format == "PNG"
                checked += 1
    assert checked > 60


def test_manifest_labels_normalize_to_ground_truth(
    catalog: CatalogInfo, truth: dict[str, dict[str, str]]
) -> None:
    taxonomies = builtin_taxonomies()
    cells = empty = raw = 0
    for name, attributes in DATASETS.items():
        for split in SPLITS:
            for row in read_rows(catalog.manifest_path(name, split))[1]:
                for attribute in attributes:
                    cells += 1
                    resolved = taxonomies[attribute].resolve(row[attribute])
                    if resolved.missing:
                        empty += 1
                        continue
                    assert resolved.label == truth[row["id"]][attribute], (row, attribute)
                    raw += row[attribute] != resolved.label
    assert 0.01 < empty / cells < 0.07  # ~3% missing cells
    assert 0.05 < raw / cells < 0.2  # ~10% vendor synonyms and odd casing


def test_ground_truth_is_canonical(truth: dict[str, dict[str, str]]) -> None:
    taxonomies = builtin_taxonomies()
    for row in truth.values():
        for attribute in ATTRIBUTES:
            if attribute == "sleeve_length" and row["category"] not in SLEEVED:
                assert row[attribute] == ""
            else:
                assert row[attribute] in taxonomies[attribute].labels
        if row["dataset"] == "sleeves":
            assert row["category"] in SLEEVED
    for attribute in ATTRIBUTES:  # every label occurs
        found = {row[attribute] for row in truth.values()} - {""}
        assert found == set(taxonomies[attribute].labels), attribute


def _energy(pixels: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: high-frequency detail."""
    return float(
        (np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean()) / 2
    )


def test_fine_patterns_wash_out_when_downsampled(tmp_path: Path) -> None:
    info = make_catalog(tmp_path, products=60, image_size=512, seed=0, images_per_product=(1, 1))
    ratios: dict[str, list[float]] = {"fine": [], "coarse": []}
    for row in read_ground_truth(info):
        if row["shots"] != "product" or row["pattern"] not in ("striped", "polka_dot"):
            continue
        with Image.open(info.out / row["images"]) as opened:
            img = opened.convert("RGB")
        left, top, right, bottom = box_of(row["boxes"])
        w, h = right - left, bottom - top
        inside = (left + w // 4, top + h // 4, right - w // 4, bottom - h // 4)
        full = np.asarray(img.crop(inside), np.float32)
        small = img.resize((128, 128), Image.Resampling.BILINEAR)
        back = small.resize(img.size, Image.Resampling.BILINEAR).crop(inside)
        e_full, e_back = _energy(full), _energy(np.asarray(back, np.float32))
        if row["pattern_scale"] == "fine":
            assert e_full > 8.0, f"{row['id']}: fine pattern not visible at full resolution"
        ratios[row["pattern_scale"]].append(e_full / max(e_back, 0.5))
    assert ratios["fine"] and ratios["coarse"], "seed 0 should give fine and coarse patterns"
    assert min(ratios["fine"]) > 5.0  # the detail is there at 512 px and gone at 128 px
    assert max(ratios["coarse"]) < 3.0  # coarse patterns survive downsampling


def test_shot_types_and_boxes(catalog: CatalogInfo, truth: dict[str, dict[str, str]]) -> None:
    size = catalog.image_size
    shots: Counter[str] = Counter()
    for row in truth.values():
        kinds, boxes = row["shots"].split("|"), row["boxes"].split("|")
        assert len(kinds) == len(boxes) == len(row["images"].split("|"))
        for kind, cell in zip(kinds, boxes, strict=True):
            shots[kind] += 1
            left, top, right, bottom = box_of(cell)
            assert 0 <= left < right <= size and 0 <= top < bottom <= size
            longest = max(right - left, bottom - top) / size
            center = np.hypot((left + right) / 2 - size / 2, (top + bottom) / 2 - size / 2)
            if kind == "fabric":
                assert (left, top, right, bottom) == (0, 0, size, size)
            elif kind == "artistic":
                assert longest <= 0.41 and center >= 0.15 * size, row["id"]
            elif kind == "product":
                assert longest >= 0.38 and center <= 0.1 * size, row["id"]
    assert set(shots) == {"product", "fabric", "artistic", "model"}
    assert shots["product"] > catalog.products * 0.7


def test_text_has_vendor_noise(truth: dict[str, dict[str, str]]) -> None:
    rows = list(truth.values())
    text = [f"{r['title']} {r['description']} {r['brand']}" for r in rows]
    assert any(re.search("Ã[©¨§¯]", t) for t in text), "mojibake"
    assert any("&amp;" in t or "&nbsp;" in t for t in text), "HTML entities"
    assert any("<b>" in t or "<p>" in t for t in text), "HTML tags"
    assert any(r["title"].isupper() and len(r["title"]) > 4 for r in rows), "ALL CAPS"
    assert sum(not r["description"] for r in rows) > 10, "missing descriptions"
    duplicated = 0
    for r in rows:
        sentences = [s.strip() for s in re.split(r"(?<=[.!])\s+", r["description"]) if s.strip()]
        duplicated += len(sentences) != len(set(sentences))
    assert duplicated > 5, "copy-pasted sentences"
    words = Counter(w.lower() for t in text for w in re.findall(r"[A-Za-z]+", t))
    assert {"navy", "ruby", "cream", "emerald"} & set(words), "color synonyms"
    assert len({r["vendor"] for r in rows}) == 8


def test_text_carries_real_but_imperfect_signal(truth: dict[str, dict[str, str]]) -> None:
    color = builtin_taxonomies()["color"]
    rows = [r for r in truth.values() if r["vendor"] not in ("quickthreads", "lumen")]
    hits = 0
    for row in rows:
        words = re.findall(r"[\wÃ©¨§]+(?:[- ][\wÃ©¨§]+)?", f"{row['title']} {row['description']}")
        singles = {w for pair in words for w in re.split(r"[- ]", pair)}
        found = {color.normalize(w) for w in [*words, *singles]} - {None}
        if "color" in row["text_mentions"].split("|"):
            assert row["color"] in found, row
            hits += 1
    assert 0.6 < hits / len(rows) < 0.95  # mostly there, not always
    mentions = Counter(m for r in truth.values() for m in r["text_mentions"].split("|") if m)
    assert mentions["pattern"] < 0.45 * len(truth) < mentions["category"]


def test_existing_folders_are_protected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        make_catalog(tmp_path, products=3, image_size=64)
    out = tmp_path / "cat"
    make_catalog(out, products=3, image_size=64)
    with pytest.raises(ConfigError, match="overwrite"):
        make_catalog(out, products=3, image_size=64)
    info = make_catalog(out, products=2, image_size=64, overwrite=True)
    assert len(read_ground_truth(out)) == 2 == info.products
    assert len(list((out / "images").iterdir())) == info.images


@pytest.mark.parametrize(
    "kwargs",
    [{"splits": (0.5, 0.2, 0.2)}, {"products": 0}, {"images_per_product": (3, 1)}],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_catalog(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_cli_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        make_catalog_command, [str(tmp_path / "cli"), "--products", "12", "--image-size", "64"]
    )
    assert result.exit_code == 0, result.output
    assert "colors_patterns" in result.output and "12 products" in result.output
    assert load_catalog(tmp_path / "cli").products == 12


def catalog_digest(out: Path) -> str:
    """sha256 over every file of a catalog: text files byte for byte, images by their pixels
    (so a different PNG encoder build cannot change the digest, a different drawing does)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        digest.update(path.relative_to(out).as_posix().encode() + b"\0")
        if path.suffix == ".png":
            with Image.open(path) as image:
                digest.update(f"{image.mode}{image.size}".encode() + np.asarray(image).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_catalog_output_is_pinned(tmp_path: Path) -> None:
    """The generator's output for a seed never changes by accident (texts, splits, pixels)."""
    info = make_catalog(
        tmp_path / "c", products=24, image_size=96, images_per_product=(1, 3), seed=7, workers=1
    )
    assert catalog_digest(info.out) == PINNED_CATALOG_DIGEST
