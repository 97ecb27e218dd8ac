"""Small generated catalogs for the training tests (PNG files + CSV manifests).

Two datasets label disjoint attributes of TINY_SPEC with an easy signal each:
- ``colors``: ``color`` (red/blue) = the color of a solid image; titles carry no signal.
- ``categories``: ``category`` (dress/shirt/pants) = a keyword in the title; images carry none.

(A uniquely named module rather than conftest.py helpers: several test folders have a
conftest.py, and ``from conftest import ...`` would depend on collection order.)
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from PIL import Image

FILLER = ["soft", "cotton", "classic", "summer", "new", "daily", "blend", "fit", "easy", "light"]
CATEGORY_WORDS = {"dress": "dress", "shirt": "shirt", "pants": "trousers"}


def _write_images(folder: Path, rng: random.Random) -> dict[str, list[str]]:
    """Eight shades per color, as 20x20 PNGs; returns relative paths by color."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[str]] = {"red": [], "blue": []}
    for color in out:
        for k in range(8):
            strong = 150 + rng.randrange(100)
            weak = rng.randrange(60)
            rgb = (strong, weak, weak) if color == "red" else (weak, weak, strong)
            path = folder / f"{color}-{k}.png"
            Image.new("RGB", (20, 20), rgb).save(path)
            out[color].append(f"images/{path.name}")
    return out


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def make_catalog(root: Path, n_colors: int = 60, n_categories: int = 60, seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    images = _write_images(root / "images", rng)
    color_rows = []
    color_spelling = {"red": ["red", "Red", " RED ", "crimson"], "blue": ["blue", "Blue", "navy", "BLUE"]}
    for i in range(n_colors):
        color = ["red", "blue"][i % 2]
        color_rows.append({
            "id": f"c{i}",
            "images": rng.choice(images[color]),
            "title": " ".join(rng.sample(FILLER, 3)),
            "color": rng.choice(color_spelling[color]),
        })
    category_rows = []
    for i in range(n_categories):
        category = ["dress", "shirt", "pants"][i % 3]
        words = rng.sample(FILLER, 2) + [CATEGORY_WORDS[category]]
        rng.shuffle(words)
        category_rows.append({
            "id": f"k{i}",
            "images": rng.choice(images[rng.choice(["red", "blue"])]),
            "title": " ".join(words),
            "category": category,
        })
    return {
        "colors": write_manifest(root / "colors.csv", color_rows),
        "categories": write_manifest(root / "categories.csv", category_rows),
    }
