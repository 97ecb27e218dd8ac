"""A synthetic retail catalog with known ground truth, for demos, tests and benchmarks.

:func:`make_catalog` draws garments procedurally (PIL + numpy), writes vendor-style text with
the noise real feeds have (synonyms, ALL CAPS, HTML, mojibake, copy-paste, typos, missing
descriptions) and partitions the products by label into three datasets, as in multi-data
multi-task learning: each product is labeled in exactly one dataset, for that dataset's
attributes only. Layout of ``out``::

    catalog.json                      CatalogInfo: datasets, splits, row counts, settings
    ground_truth.csv                  every attribute of every product, shots and garment boxes
    images/p00012_0.png ...           one to three shots per product
    datasets/<dataset>/<split>.csv    id,images,title,description,brand,<its attributes>

Manifest ``images`` cells hold paths relative to the manifest file joined by ``|``; about 10% of
label cells use a vendor synonym or odd casing ("Ruby", "POLKA DOT") and about 3% are empty, so
read them through :mod:`fashion.heads.taxonomy`. ``ground_truth.csv`` has one row per product:
its dataset and split, vendor and text, every attribute in canonical form (``sleeve_length`` is
empty for pants and skirts), ``pattern_scale`` (fine/coarse), ``color_rgb``, and per image
(``|``-joined, in order) the path relative to ``out``, the shot type (product, fabric, artistic,
model) and the garment box ``left,top,right,bottom`` in pixels (right/bottom exclusive), plus
``text_mentions``: the attributes the text states correctly. Everything is a pure function of
the seed: the same seed gives byte-identical files, whatever the number of workers.
"""

from __future__ import annotations

import colorsys
import csv
import json
import math
import multiprocessing
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import BaseModel, ConfigDict, Field

from fashion.errors import ConfigError
from fashion.heads.taxonomy import builtin_taxonomies

FORMAT_VERSION = 1

DATASETS: dict[str, tuple[str, ...]] = {
    "colors_patterns": ("color", "pattern"),
    "categories": ("category", "style"),
    "sleeves": ("sleeve_length",),
}
"""Dataset name -> the attributes it labels (each product is labeled in one dataset only)."""

DATASET_SHARES: dict[str, float] = {"colors_patterns": 0.40, "categories": 0.35, "sleeves": 0.25}
ATTRIBUTES: tuple[str, ...] = ("category", "color", "pattern", "style", "sleeve_length")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SHOT_TYPES: tuple[str, ...] = ("product", "fabric", "artistic", "model")
SLEEVED: frozenset[str] = frozenset({"t_shirt", "shirt", "dress", "jacket", "sweater"})
MANIFEST_COLUMNS: tuple[str, ...] = ("id", "images", "title", "description", "brand")
GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "id",
    "dataset",
    "split",
    "vendor",
    "brand",
    "title",
    "description",
    *ATTRIBUTES,
    "pattern_scale",
    "color_rgb",
    "images",
    "shots",
    "boxes",
    "text_mentions",
)

ProgressCallback = Callable[[int, int], None]
Point = tuple[float, float]
RGB = tuple[int, int, int]


# ---------------------------------------------------------------------------------------------
# public result


class DatasetInfo(BaseModel):
    """One generated dataset: the attributes it labels and its split manifests."""

    model_config = ConfigDict(extra="forbid")

    name: str
    attributes: list[str]
    manifests: dict[str, str]  # split -> manifest path relative to the catalog folder
    rows: dict[str, int]  # split -> number of products

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class CatalogInfo(BaseModel):
    """What :func:`make_catalog` wrote; also saved (without ``out``) as ``out/catalog.json``."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(exclude=True)
    format_version: int = FORMAT_VERSION
    seed: int
    products: int
    images: int
    image_size: int
    images_per_product: tuple[int, int]
    splits: dict[str, float]
    datasets: dict[str, DatasetInfo]
    ground_truth: str = "ground_truth.csv"
    shot_types: list[str] = list(SHOT_TYPES)
    vendors: list[str] = []

    @property
    def dataset_names(self) -> list[str]:
        return list(self.datasets)

    @property
    def attributes(self) -> dict[str, list[str]]:
        """Dataset name -> the attributes its manifests label."""
        return {name: list(ds.attributes) for name, ds in self.datasets.items()}

    @property
    def ground_truth_path(self) -> Path:
        return self.out / self.ground_truth

    def manifest_path(self, dataset: str, split: str) -> Path:
        """Absolute path of one split manifest, e.g. ``manifest_path("sleeves", "train")``."""
        if dataset not in self.datasets:
            raise ConfigError(
                f"catalog {self.out} has no dataset {dataset!r}; choose one of {self.dataset_names}"
            )
        manifests = self.datasets[dataset].manifests
        if split not in manifests:
            raise ConfigError(f"dataset {dataset!r} has no split {split!r}; use {list(manifests)}")
        return self.out / manifests[split]

    @property
    def manifests(self) -> dict[str, dict[str, Path]]:
        """Dataset -> split -> absolute manifest path."""
        return {
            name: {split: self.out / rel for split, rel in ds.manifests.items()}
            for name, ds in self.datasets.items()
        }

    def save(self) -> Path:
        path = self.out / "catalog.json"
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, out: str | Path) -> CatalogInfo:
        """Read ``out/catalog.json`` written by :func:`make_catalog`."""
        out = Path(out)
        path = out / "catalog.json"
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: {out} is not a generated catalog; create one with "
                f"`fashion make-catalog {out}`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.model_validate({**data, "out": out})
        except ValueError as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); generate the catalog again") from None


def load_catalog(out: str | Path) -> CatalogInfo:
    """Shortcut for :meth:`CatalogInfo.load`."""
    return CatalogInfo.load(out)


# ---------------------------------------------------------------------------------------------
# sampling the products

_CATEGORIES = ("t_shirt", "shirt", "dress", "pants", "skirt", "jacket", "sweater")
_COLORS = ("red", "white", "black", "blue", "green", "yellow", "pink", "grey")
_PATTERNS = ("solid", "striped", "polka_dot", "plaid", "floral")
_STYLES = ("casual", "formal", "sporty")
_SLEEVES = ("sleeveless", "short", "long")

_STYLE_PRIOR = {  # casual, formal, sporty
    "t_shirt": (0.55, 0.07, 0.38),
    "shirt": (0.45, 0.50, 0.05),
    "dress": (0.50, 0.42, 0.08),
    "pants": (0.40, 0.32, 0.28),
    "skirt": (0.50, 0.38, 0.12),
    "jacket": (0.35, 0.35, 0.30),
    "sweater": (0.60, 0.20, 0.20),
}
_SLEEVE_PRIOR = {  # sleeveless, short, long
    "t_shirt": (0.22, 0.58, 0.20),
    "shirt": (0.10, 0.35, 0.55),
    "dress": (0.40, 0.30, 0.30),
    "jacket": (0.15, 0.10, 0.75),
    "sweater": (0.15, 0.15, 0.70),
}
_COLOR_PRIOR = {  # red white black blue green yellow pink grey
    "casual": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "formal": (0.8, 1.5, 2.0, 1.8, 0.7, 0.3, 0.4, 1.8),
    "sporty": (1.4, 1.0, 1.2, 1.3, 1.1, 1.1, 0.9, 1.0),
}
_PATTERN_PRIOR = {  # solid striped polka_dot plaid floral
    "casual": (0.30, 0.18, 0.17, 0.17, 0.18),
    "formal": (0.40, 0.30, 0.10, 0.15, 0.05),
    "sporty": (0.45, 0.30, 0.10, 0.10, 0.05),
}
_FINE_SHARE = {"solid": 0.0, "striped": 0.45, "polka_dot": 0.45, "plaid": 0.3, "floral": 0.3}

# hue, saturation and value ranges of each palette color (hue wraps around 1.0)
_HSV: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-0.025, 0.02), (0.62, 0.95), (0.48, 0.90)),
    "white": ((0.0, 1.0), (0.0, 0.05), (0.91, 0.99)),
    "black": ((0.0, 1.0), (0.0, 0.20), (0.05, 0.16)),
    "blue": ((0.57, 0.66), (0.45, 0.90), (0.32, 0.85)),
    "green": ((0.25, 0.42), (0.38, 0.80), (0.32, 0.75)),
    "yellow": ((0.12, 0.16), (0.62, 0.95), (0.82, 0.98)),
    "pink": ((0.88, 0.97), (0.25, 0.58), (0.84, 0.98)),
    "grey": ((0.0, 1.0), (0.0, 0.05), (0.36, 0.66)),
}
_SKIN = ((241, 200, 170), (224, 172, 135), (198, 134, 96), (141, 85, 54), (94, 58, 38))


@dataclass
class _Product:
    index: int
    id: str
    category: str
    color: str
    pattern: str
    style: str
    sleeve_length: str  # "" for pants and skirts
    scale: str  # "fine", "coarse", or "" for solid
    rgb: RGB
    accent: RGB
    accent2: RGB
    period: float  # pattern period in pixels of a 512 px product shot
    duty: float
    angle: int
    phase: float
    shape: tuple[float, float, float]  # width, length and flare jitter in [-1, 1]
    variant: int
    shots: tuple[str, ...]
    vendor: str = ""
    brand: str = ""
    title: str = ""
    description: str = ""
    mentions: tuple[str, ...] = ()
    dataset: str = ""
    split: str = ""

    @property
    def image_names(self) -> list[str]:
        return [f"{self.id}_{j}.png" for j in range(len(self.shots))]


def _pick(rng: random.Random, options: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(list(options), weights=list(weights))[0]


def _hsv_to_rgb(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _sample_color(rng: random.Random, color: str, style: str) -> RGB:
    (h0, h1), (s0, s1), (v0, v1) = _HSV[color]
    us, uv = rng.random(), rng.random()
    if style == "formal":  # darker, desaturated end of the range
        us, uv = us * 0.55, uv * 0.55
    elif style == "sporty":  # bright, saturated end
        us, uv = 0.35 + 0.65 * us, 0.35 + 0.65 * uv
    return _hsv_to_rgb(rng.uniform(h0, h1), s0 + (s1 - s0) * us, v0 + (v1 - v0) * uv)


def _luma(rgb: RGB) -> float:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255.0


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _contrast(rng: random.Random, base: RGB, color: str, fine: bool) -> RGB:
    """An accent that reads against ``base`` without changing what its color label is."""
    light = _luma(base) >= 0.5
    roll = rng.random()
    if fine or roll < 0.3:  # a shade of the base color
        return _mix(base, (20, 20, 24), 0.55) if light else _mix(base, (250, 250, 248), 0.6)
    if roll < 0.8 or color in ("white", "black"):
        if color == "white":
            other = rng.choice(("black", "blue", "red", "grey"))
            return _sample_color(rng, other, "casual")
        return (rng.randint(18, 45),) * 3 if light else (rng.randint(232, 250),) * 3
    other = rng.choice([c for c in _COLORS if c not in (color, "white", "black")])
    return _sample_color(rng, other, "casual")


def _sample_product(rng: random.Random, index: int, images: tuple[int, int]) -> _Product:
    category = rng.choice(_CATEGORIES)
    style = _pick(rng, _STYLES, _STYLE_PRIOR[category])
    sleeve = _pick(rng, _SLEEVES, _SLEEVE_PRIOR[category]) if category in SLEEVED else ""
    color = _pick(rng, _COLORS, _COLOR_PRIOR[style])
    weights = list(_PATTERN_PRIOR[style])
    if category in ("dress", "skirt"):
        weights[4] *= 2.0
    elif category in ("pants", "jacket"):
        weights[4] *= 0.5
    pattern = _pick(rng, _PATTERNS, weights)
    fine = rng.random() < _FINE_SHARE[pattern]
    scale = "" if pattern == "solid" else ("fine" if fine else "coarse")
    rgb = _sample_color(rng, color, style)
    accent = _contrast(rng, rgb, color, fine)
    accent2 = _sample_color(rng, rng.choice([c for c in _COLORS if c != color]), "casual")
    angle = 0
    if pattern == "striped":
        period = rng.choice((2, 3, 4)) if fine else rng.uniform(14, 40)
        duty = rng.uniform(0.2, 0.45)
        angle = rng.choice((0, 90)) if fine else rng.choice((0, 90, 90, 45, -45))
    elif pattern == "polka_dot":
        period = rng.choice((4, 5, 6)) if fine else rng.uniform(20, 44)
        duty = rng.uniform(0.9, 1.25) if fine else rng.uniform(0.18, 0.3)  # fine: radius in px
    elif pattern == "plaid":
        period = rng.uniform(6, 10) if fine else rng.uniform(40, 90)
        duty = 0.5 if fine else rng.uniform(0.2, 0.35)
    elif pattern == "floral":
        period = rng.uniform(8, 12) if fine else rng.uniform(30, 60)
        duty = rng.uniform(0.33, 0.42)
    else:
        period, duty = 0.0, 0.0
    count = rng.randint(images[0], images[1])
    first = _pick(rng, ("product", "model", "artistic"), (0.85, 0.1, 0.05))
    rest = rng.choices(
        ("fabric", "artistic", "model", "product"), (0.35, 0.3, 0.15, 0.2), k=count - 1
    )
    return _Product(
        index=index,
        id=f"p{index:05d}",
        category=category,
        color=color,
        pattern=pattern,
        style=style,
        sleeve_length=sleeve,
        scale=scale,
        rgb=rgb,
        accent=accent,
        accent2=accent2,
        period=period,
        duty=duty,
        angle=angle,
        phase=rng.random(),
        shape=(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)),
        variant=rng.randrange(4),
        shots=(first, *rest),
    )


# ---------------------------------------------------------------------------------------------
# vendor text


@dataclass(frozen=True)
class _Vendor:
    name: str
    brands: tuple[str, ...]
    habit: str  # clean | synonyms | caps | html | mojibake | copypasta | typos | terse


_VENDORS: tuple[_Vendor, ...] = (
    _Vendor("northwind", ("Northwind Apparel", "Northwind Basics"), "clean"),
    _Vendor("maison_verte", ("Maison Verte", "Atelier Rubis"), "synonyms"),
    _Vendor("urban_stock", ("Urban Stock Co", "US Co"), "caps"),
    _Vendor("lumen", ("Lumen & Co.", "Lumen Studio"), "html"),
    _Vendor("cafe_creme", ("Café Crème Paris", "Crème de la Mode"), "mojibake"),
    _Vendor("bulkbuy", ("BulkBuy Outlet", "BulkBuy Value"), "copypasta"),
    _Vendor("quickthreads", ("QuickThreads", "Quick Threads Kids & Adults"), "typos"),
    _Vendor("mnml", ("MNML Supply", "mnml"), "terse"),
)

_COLOR_WORDS = {
    "red": ("Red",),
    "white": ("White",),
    "black": ("Black",),
    "blue": ("Blue",),
    "green": ("Green",),
    "yellow": ("Yellow",),
    "pink": ("Pink",),
    "grey": ("Grey", "Gray"),
}
_COLOR_SYNONYMS = {
    "red": ("Ruby", "Crimson", "Scarlet", "Cherry", "Burgundy"),
    "white": ("Cream", "Ivory", "Off White", "Snow"),
    "black": ("Onyx", "Jet Black", "Ebony", "Ink"),
    "blue": ("Navy", "Cobalt", "Azure", "Denim"),
    "green": ("Emerald", "Olive", "Sage", "Mint"),
    "yellow": ("Mustard", "Lemon", "Canary", "Saffron"),
    "pink": ("Blush", "Rose", "Fuchsia", "Coral"),
    "grey": ("Charcoal", "Slate", "Heather", "Ash"),
}
_COLOR_FANCY = {  # marketing names that no taxonomy knows
    "red": ("Sunset", "Lava"),
    "white": ("Cloud", "Whisper"),
    "black": ("Midnight", "Shadow"),
    "blue": ("Lagoon", "Horizon"),
    "green": ("Meadow", "Leaf"),
    "yellow": ("Sunbeam", "Lemonade"),
    "pink": ("Candyfloss", "Sorbet"),
    "grey": ("Storm", "Pebble"),
}
_COLOR_FRENCH = {
    "red": "Rouge",
    "white": "Crème",
    "black": "Noir",
    "blue": "Bleu",
    "green": "Vert",
    "yellow": "Jaune",
    "pink": "Rosé",
    "grey": "Gris",
}
_CATEGORY_WORDS = {
    "t_shirt": ("T-Shirt", "Tee", "T-shirt", "Crew Neck Tee"),
    "shirt": ("Shirt", "Oxford Shirt", "Button-Down Shirt", "Poplin Shirt"),
    "dress": ("Dress", "Midi Dress", "Maxi Dress", "Mini Dress", "Wrap Dress"),
    "pants": ("Pants", "Trousers", "Chinos", "Wide Leg Pants"),
    "skirt": ("Skirt", "Midi Skirt", "Mini Skirt", "Pleated Skirt"),
    "jacket": ("Jacket", "Bomber Jacket", "Parka", "Coat"),
    "sweater": ("Sweater", "Jumper", "Pullover", "Cardigan"),
}
_CATEGORY_STYLED = {
    ("shirt", "formal"): ("Dress Shirt",),
    ("pants", "formal"): ("Slacks", "Tailored Trousers"),
    ("pants", "sporty"): ("Joggers", "Track Pants"),
    ("skirt", "formal"): ("Pencil Skirt",),
    ("jacket", "formal"): ("Blazer",),
    ("jacket", "sporty"): ("Track Jacket", "Windbreaker"),
    ("sweater", "sporty"): ("Hoodie", "Sweatshirt"),
    ("dress", "formal"): ("Sheath Dress", "Cocktail Dress"),
    ("t_shirt", "sporty"): ("Training Tee",),
}
_CATEGORY_SYNONYMS = {
    "t_shirt": ("Tee", "Tee Shirt"),
    "shirt": ("Blouse", "Button Up"),
    "dress": ("Frock", "Gown", "Sundress"),
    "pants": ("Trousers", "Slacks", "Chinos"),
    "skirt": ("Skirt", "Skort"),
    "jacket": ("Blazer", "Overcoat", "Anorak"),
    "sweater": ("Jumper", "Pullover", "Knit"),
}
_CATEGORY_FRENCH = {
    "t_shirt": "Tee",
    "shirt": "Chemise",
    "dress": "Robe",
    "pants": "Pantalon",
    "skirt": "Jupe",
    "jacket": "Veste",
    "sweater": "Pull",
}
_CATEGORY_VAGUE = {
    "t_shirt": ("Top", "Essential"),
    "shirt": ("Top", "Essential"),
    "dress": ("Piece", "Look"),
    "pants": ("Bottoms", "Essential"),
    "skirt": ("Bottoms", "Piece"),
    "jacket": ("Layer", "Outer Layer"),
    "sweater": ("Layer", "Top"),
}
_PATTERN_WORDS = {
    ("striped", "fine"): ("Pinstripe", "Pinstriped", "Fine Stripe"),
    ("striped", "coarse"): ("Striped", "Stripe", "Breton Stripe", "Bold Stripe"),
    ("polka_dot", "fine"): ("Micro-Dot", "Pin Dot"),
    ("polka_dot", "coarse"): ("Polka Dot", "Dotted", "Spotted"),
    ("plaid", "fine"): ("Gingham", "Mini Check"),
    ("plaid", "coarse"): ("Plaid", "Tartan", "Check"),
    ("floral", "fine"): ("Ditsy Floral", "Ditsy Print"),
    ("floral", "coarse"): ("Floral", "Flower Print"),
    ("solid", ""): ("Solid", "Plain"),
}
_SLEEVE_WORDS = {
    "sleeveless": ("Sleeveless",),
    "short": ("Short Sleeve", "Short-Sleeved"),
    "long": ("Long Sleeve", "Long-Sleeved"),
}
_STYLE_WORDS = {
    "casual": ("Casual", "Relaxed", "Everyday", "Weekend"),
    "formal": ("Formal", "Tailored", "Elegant", "Business"),
    "sporty": ("Sporty", "Athletic", "Performance", "Active"),
}
_STYLE_SENTENCES = {
    "casual": (
        "An easy everyday piece for relaxed weekends.",
        "Casual and comfortable, made for off-duty days.",
        "Laid-back style you will reach for every day.",
    ),
    "formal": (
        "Tailored for the office and formal evenings.",
        "An elegant choice for business meetings and weddings.",
        "Sharp, polished and ready for formal occasions.",
    ),
    "sporty": (
        "Built for training days and athletic performance.",
        "Sporty and breathable, ready for your next workout.",
        "Made for the gym, the track and everything in between.",
    ),
}
_COLOR_SENTENCES = (
    "{this} {noun} {comes} in {color}.",
    "Shown here in {color}.",
    "Available in a rich {color} shade.",
    "A {color} {noun} for every wardrobe.",
)
_NOUN_SENTENCES = (
    "Our {noun}, cut for a clean silhouette.",
    "A {noun} you will wear on repeat.",
    "The {noun} of the season, designed with a modern fit.",
    "Finished with neat seams, this {noun} is built to last.",
)
_FILLER = (
    "Machine washable at 30 degrees.",
    "Soft and comfortable all day long.",
    "Model is 178 cm tall and wears size M.",
    "Made from 100% organic cotton.",
    "Crafted from a soft, durable blend.",
    "True to size; order your usual.",
    "Part of our new season collection.",
    "Imported.",
)
_FRENCH_FLAIR = (
    "Une pièce élégante, très chic.",
    "Designed in Paris with savoir-faire — a café classic.",
    "Naïve, fresh and très française.",
    "Qualité supérieure, façon atelier.",
    "It’s the crème de la crème of the season.",
)
_BOILERPLATE = (
    "Free shipping on orders over $50!",
    "Buy 2 get 1 free — limited time only.",
    "Check out our other listings for more great deals.",
)


def _mojibake(text: str) -> str:
    """UTF-8 bytes read back as Windows-1252 (or Latin-1): "Café" -> "CafÃ©"."""
    raw = text.encode("utf-8")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _typos(rng: random.Random, text: str, rate: float) -> str:
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) < 4 or not word.isalpha() or rng.random() >= rate:
            continue
        k = rng.randrange(1, len(word) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            word = word[:k] + word[k + 1 :]  # drop a letter
        elif kind == 1:
            word = word[:k] + word[k + 1] + word[k] + word[k + 2 :]  # swap two letters
        else:
            word = word[:k] + word[k] + word[k:]  # double a letter
        words[i] = word
    return " ".join(words)


def _htmlify(rng: random.Random, text: str) -> str:
    text = text.replace(" and ", " &amp; ")
    words = text.split(" ")
    k = rng.randrange(len(words))
    words[k] = f"<b>{words[k]}</b>"
    out = words[0]
    nbsp = {rng.randrange(1, len(words))} if len(words) > 1 else set()
    for i, word in enumerate(words[1:], start=1):
        out += ("&nbsp;" if i in nbsp else " ") + word
    html = f"<p>{out.replace('. ', '.<br> ', 1)}</p>"
    if rng.random() < 0.4:
        html += "<ul><li>Machine wash cold</li><li>Imported &amp; fair made</li></ul>"
    elif "&" not in html:
        html += "<p>Care:&nbsp;machine wash</p>"
    return html


def _write_text(rng: random.Random, p: _Product, vendor: _Vendor) -> None:
    habit = vendor.habit
    mentions: set[str] = set()

    # words for each attribute, by vendor habit
    roll = rng.random()
    color_word: str | None = None
    color_ok = True
    if habit == "mojibake" and roll < 0.8:
        color_word = _COLOR_FRENCH[p.color]
    elif habit == "synonyms" and roll < 0.9:
        color_word = rng.choice(_COLOR_SYNONYMS[p.color])
    elif roll < 0.7:
        color_word = rng.choice(_COLOR_WORDS[p.color])
    elif roll < 0.82:
        color_word = rng.choice(_COLOR_SYNONYMS[p.color])
    elif roll < 0.92:
        color_word, color_ok = rng.choice(_COLOR_FANCY[p.color]), False  # no taxonomy knows it
    elif roll < 0.94:  # the vendor got it wrong
        color_word = rng.choice(_COLOR_WORDS[rng.choice([c for c in _COLORS if c != p.color])])
        color_ok = False
    if color_word and color_ok:
        mentions.add("color")

    if habit == "mojibake" and rng.random() < 0.6:
        category_word = _CATEGORY_FRENCH[p.category]
    elif habit == "synonyms" and rng.random() < 0.6:
        category_word = rng.choice(_CATEGORY_SYNONYMS[p.category])
    elif rng.random() < 0.07:
        category_word = rng.choice(_CATEGORY_VAGUE[p.category])
    elif (p.category, p.style) in _CATEGORY_STYLED and rng.random() < 0.5:
        category_word = rng.choice(_CATEGORY_STYLED[(p.category, p.style)])
    else:
        category_word = rng.choice(_CATEGORY_WORDS[p.category])
    if category_word not in _CATEGORY_VAGUE[p.category]:
        mentions.add("category")

    pattern_word = None
    if rng.random() < (0.12 if p.pattern == "solid" else 0.3):
        pattern_word = rng.choice(_PATTERN_WORDS[(p.pattern, p.scale)])
        mentions.add("pattern")
    sleeve_word = None
    if p.sleeve_length and rng.random() < 0.3:
        sleeve_word = rng.choice(_SLEEVE_WORDS[p.sleeve_length])
        if p.category == "t_shirt" and p.sleeve_length == "sleeveless" and rng.random() < 0.5:
            sleeve_word, category_word = None, "Tank Top"
        mentions.add("sleeve_length")
    style_mode = rng.random()  # < .25: in title, < .55: a sentence, else not mentioned
    if style_mode < 0.55:
        mentions.add("style")
    in_title = {"category", "sleeve_length"} & mentions if category_word == "Tank Top" else set()
    in_title |= {"category"} & mentions

    # title: [style] [color] [pattern] [sleeve] category
    parts: list[str] = []
    if style_mode < 0.25:
        parts.append(rng.choice(_STYLE_WORDS[p.style]))
        in_title.add("style")
    color_in_title = color_word is not None and (rng.random() < 0.75 or habit == "terse")
    if color_in_title and color_word:
        parts.append(color_word)
        in_title |= {"color"} & mentions
    if pattern_word and (rng.random() < 0.6 or habit == "terse"):
        parts.append(pattern_word)
        pattern_word = None
        in_title.add("pattern")
    if sleeve_word and (rng.random() < 0.5 or habit == "terse"):
        parts.append(sleeve_word)
        sleeve_word = None
        in_title.add("sleeve_length")
    parts.append(category_word)
    title = " ".join(parts)
    if habit == "mojibake" and rng.random() < 0.5:
        title += " « Édition Café »"

    # description: one to three sentences carrying what the title left out
    sentences: list[str] = []
    noun = category_word.lower()
    plural = noun.endswith("s") and not noun.endswith("ss")
    if not color_in_title and color_word:
        template = rng.choice(_COLOR_SENTENCES)
        this, comes = ("These", "come") if plural else ("This", "comes")
        sentences.append(
            template.format(noun=noun, color=color_word.lower(), this=this, comes=comes)
        )
    elif rng.random() < 0.5:
        sentences.append(rng.choice(_NOUN_SENTENCES).format(noun=noun))
    if pattern_word:
        sentences.append(f"Features an all-over {pattern_word.lower()} design.")
    if sleeve_word:
        sentences.append(f"{sleeve_word.replace('-', ' ').capitalize()} cut for easy layering.")
    if 0.25 <= style_mode < 0.55:
        sentences.append(rng.choice(_STYLE_SENTENCES[p.style]))
    while len(sentences) < 3 and rng.random() < 0.5 or not sentences:
        sentences.append(rng.choice(_FILLER))
    if habit == "mojibake":
        sentences.append(rng.choice(_FRENCH_FLAIR))
    description = " ".join(sentences)

    brand = rng.choice(vendor.brands)
    if habit == "caps":
        title, description, brand = title.upper(), description.upper(), brand.upper()
    elif habit == "html":
        description = _htmlify(rng, description)
        if rng.random() < 0.3:
            title = title.replace(" ", "&nbsp;", 1)
        brand = brand.replace("&", "&amp;")
    elif habit == "mojibake":
        if rng.random() < 0.8:
            title, description, brand = _mojibake(title), _mojibake(description), _mojibake(brand)
    elif habit == "copypasta":
        roll = rng.random()
        if roll < 0.5:
            description = f"{description} {description}"  # the paragraph pasted twice
        elif roll < 0.8:
            description = f"{description} {sentences[0]}"
        boiler = rng.choice(_BOILERPLATE)
        description += f" {boiler}" * rng.randint(1, 2)
    elif habit == "typos":
        title, description = _typos(rng, title, 0.15), _typos(rng, description, 0.15)
    elif habit == "terse" and rng.random() < 0.65:
        description = ""
        mentions = in_title

    p.vendor, p.brand, p.title, p.description = vendor.name, brand, title, description
    p.mentions = tuple(a for a in ATTRIBUTES if a in mentions)


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


def _assign(rng: random.Random, products: list[_Product], fractions: Sequence[float]) -> None:
    n = len(products)
    order = list(range(n))
    rng.shuffle(order)
    sleeved = [i for i in order if products[i].category in SLEEVED]
    n_sleeves = min(len(sleeved), round(n * DATASET_SHARES["sleeves"]))
    chosen = set(sleeved[:n_sleeves])
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


# ---------------------------------------------------------------------------------------------
# drawing


@dataclass(frozen=True)
class _Frame:
    """Maps garment frame units ([0, 1] square) to image pixels."""

    x0: float
    y0: float
    size: float

    def __call__(self, u: float, v: float) -> Point:
        return (self.x0 + u * self.size, self.y0 + v * self.size)

    def pts(self, points: Sequence[Point]) -> list[Point]:
        return [self(u, v) for u, v in points]


def _mirror(points: Sequence[Point]) -> list[Point]:
    return [(1.0 - u, v) for u, v in points]


@dataclass
class _Geometry:
    polygons: list[list[Point]]
    bands: list[list[Point]]  # sporty side-band polylines
    band_width: float
    hem: float
    half_width: float  # torso / waist half width
    neck: float = 0.085
    arm: tuple[Point, Point] = ((0.0, 0.0), (0.0, 0.0))  # a model's left shoulder and hand


def _geometry(p: _Product) -> _Geometry:
    sw, sl, sf = p.shape
    sleeve = p.sleeve_length
    if p.category in ("t_shirt", "shirt", "sweater", "jacket"):
        bw = 0.21 + 0.025 * sw
        hem = min(
            0.99,
            {"t_shirt": 0.9, "shirt": 0.95, "sweater": 0.9, "jacket": 0.96}[p.category] + 0.03 * sl,
        )
        left_x = 0.5 - bw
        neck = 0.085
        if sleeve == "sleeveless":
            side: list[Point] = [(left_x + 0.06, 0.07), (left_x + 0.02, 0.2), (left_x, 0.33)]
        else:
            side = [(left_x - 0.02, 0.1), (left_x, 0.33)]
        dip = {"t_shirt": 0.16 if sleeve == "sleeveless" else 0.11, "sweater": 0.1}.get(
            p.category, 0.07
        )
        left = [(0.5 - neck, 0.05), *side, (left_x - 0.01, hem)]
        collar = [(0.5 - neck * 0.55, dip - 0.015), (0.5, dip), (0.5 + neck * 0.55, dip - 0.015)]
        torso = left + list(reversed(_mirror(left))) + list(reversed(collar))
        polygons = [torso]
        bands = [[(left_x + 0.022, 0.34), (left_x + 0.012, hem)]]
        if sleeve == "short":
            arm = [
                (left_x - 0.02, 0.1),
                (left_x - 0.17, 0.31),
                (left_x - 0.09, 0.37),
                (left_x, 0.3),
            ]
            bands.append([(left_x - 0.03, 0.13), (left_x - 0.125, 0.33)])
        elif sleeve == "long":
            arm = [
                (left_x - 0.02, 0.1),
                (left_x - 0.22, 0.8),
                (left_x - 0.12, 0.83),
                (left_x, 0.33),
            ]
            bands.append([(left_x - 0.035, 0.13), (left_x - 0.17, 0.8)])
        else:
            arm = []
        if arm:
            polygons += [arm, _mirror(arm)]
        hand = (left_x - 0.165, 0.85) if sleeve == "long" else (left_x - 0.07, 0.86)
        return _Geometry(
            polygons,
            bands + [_mirror(b) for b in bands],
            0.032,
            hem,
            bw,
            neck,
            ((left_x - 0.03, 0.14), hand),
        )
    if p.category == "dress":
        bw = 0.12 + 0.015 * sw
        waist = 0.105 + 0.01 * sw
        hem = 0.95 + 0.03 * sl
        flare = (0.2 if p.style == "formal" else 0.28) + 0.05 * sf
        left_x = 0.5 - bw
        if sleeve == "sleeveless":
            side = [(0.5 - 0.09, 0.04), (left_x + 0.01, 0.21)]
        else:
            side = [(left_x - 0.01, 0.07), (left_x, 0.21)]
        left = [(0.5 - 0.06, 0.04), *side, (0.5 - waist, 0.4), (0.5 - flare, hem)]
        collar = [(0.5 - 0.035, 0.1), (0.5, 0.12), (0.5 + 0.035, 0.1)]
        polygons = [left + list(reversed(_mirror(left))) + list(reversed(collar))]
        bands = [[(left_x + 0.018, 0.22), (0.5 - waist + 0.016, 0.4), (0.5 - flare + 0.03, hem)]]
        if sleeve == "short":
            arm = [
                (left_x - 0.01, 0.07),
                (left_x - 0.11, 0.22),
                (left_x - 0.05, 0.27),
                (left_x, 0.21),
            ]
            bands.append([(left_x - 0.02, 0.09), (left_x - 0.08, 0.24)])
        elif sleeve == "long":
            arm = [
                (left_x - 0.01, 0.07),
                (left_x - 0.16, 0.62),
                (left_x - 0.085, 0.645),
                (left_x + 0.005, 0.22),
            ]
            bands.append([(left_x - 0.025, 0.1), (left_x - 0.12, 0.62)])
        else:
            arm = []
        if arm:
            polygons += [arm, _mirror(arm)]
        hand = (left_x - 0.13, 0.66) if sleeve == "long" else (left_x - 0.09, 0.6)
        return _Geometry(
            polygons,
            bands + [_mirror(b) for b in bands],
            0.028,
            hem,
            waist,
            0.06,
            ((left_x - 0.01, 0.09), hand),
        )
    if p.category == "pants":
        w = 0.22 + 0.02 * sw
        hw = (0.25 if p.style == "formal" else 0.29) + 0.03 * sf
        hem = 0.97
        poly = [
            (0.5 - w, 0.02),
            (0.5 + w, 0.02),
            (0.5 + hw, hem),
            (0.53, hem),
            (0.5, 0.34),
            (0.47, hem),
            (0.5 - hw, hem),
        ]
        bands = [[(0.5 - w + 0.018, 0.04), (0.5 - hw + 0.022, hem)]]
        return _Geometry([poly], bands + [_mirror(b) for b in bands], 0.035, hem, w)
    # skirt
    w = 0.16 + 0.015 * sw
    hem = 0.8 + 0.05 * sl
    flare = (0.2 if p.style == "formal" else 0.3) + 0.05 * sf
    poly = [(0.5 - w, 0.1), (0.5 + w, 0.1), (0.5 + flare, hem), (0.5 - flare, hem)]
    bands = [[(0.5 - w + 0.02, 0.12), (0.5 - flare + 0.035, hem)]]
    return _Geometry([poly], bands + [_mirror(b) for b in bands], 0.035, hem, w)


def _texture(p: _Product, h: int, w: int, ox: int, oy: int, scale: float) -> np.ndarray:
    """The product's fabric as an (h, w, 3) float32 array; (ox, oy) is the pattern offset."""
    xs = np.arange(w, dtype=np.float32)[None, :] + ox
    ys = np.arange(h, dtype=np.float32)[:, None] + oy
    out = np.empty((h, w, 3), np.float32)
    out[:] = p.rgb
    if p.pattern == "solid":
        return out
    fine = p.scale == "fine"
    period = float(max(2, round(p.period * scale))) if fine else max(3.0, p.period * scale)
    shift = math.floor(p.phase * period) if fine else p.phase * period
    accent = np.asarray(p.accent, np.float32)
    full = (h, w)
    if p.pattern == "striped":
        if p.angle == 0:
            u = xs + shift
        elif p.angle == 90:
            u = ys + shift
        else:
            u = (xs + np.sign(p.angle) * ys) * 0.7071 + shift
        width = max(1.0, round(p.duty * period)) if fine else max(1.0, p.duty * period)
        out[np.broadcast_to(np.mod(u, period) < width, full)] = accent
    elif p.pattern == "polka_dot":
        radius = p.duty if fine else p.duty * period
        row = np.floor((ys + shift) / period)
        dy = np.mod(ys + shift, period) - period / 2 + (0.5 if fine else 0.0)
        dx = np.mod(xs + shift + (row % 2) * (period / 2), period) - period / 2
        dx = dx + (0.5 if fine else 0.0)
        out[dx * dx + dy * dy <= radius * radius] = accent
    elif p.pattern == "plaid":
        band = p.duty * period
        horizontal = np.broadcast_to(np.mod(ys + shift, period) < band, full)
        vertical = np.broadcast_to(np.mod(xs + shift * 0.7, period) < band, full)
        base = np.asarray(p.rgb, np.float32)
        out[horizontal | vertical] = base + (accent - base) * 0.55
        out[horizontal & vertical] = base + (accent - base) * 0.9
        if not fine:
            line = max(1.0, period * 0.05)
            thin = (np.mod(xs + shift * 0.7 + period / 2, period) < line) | (
                np.mod(ys + shift + period / 2, period) < line
            )
            out[thin] = p.accent2
    elif p.pattern == "floral":
        cell = period
        gx = np.floor((xs + shift) / cell).astype(np.float64)
        gy = np.floor((ys + shift) / cell).astype(np.float64)
        h1 = np.mod(np.sin(gx * 12.9898 + gy * 78.233) * 43758.5453, 1.0)
        h2 = np.mod(np.sin(gx * 39.3468 + gy * 11.135) * 24634.6345, 1.0)
        dx = xs + shift - (gx + 0.5 + (h1 - 0.5) * 0.35) * cell
        dy = ys + shift - (gy + 0.5 + (h2 - 0.5) * 0.35) * cell
        r = np.hypot(dx, dy)
        r0 = p.duty * cell
        petal = r < r0 * (0.62 + 0.38 * np.cos(5 * np.arctan2(dy, dx) + h1 * 6.2832))
        out[petal & (h2 < 0.5)] = accent
        out[petal & (h2 >= 0.5)] = p.accent2
        out[r < 0.28 * r0] = (246, 214, 90) if _luma(p.rgb) < 0.8 else (250, 250, 245)
    return out


def _lighting(
    h: int, w: int, ox: int, oy: int, size: float, rng: np.random.Generator, strength: float
) -> np.ndarray:
    """Soft folds and a top-down light falloff, as a (h, w, 1) multiplier."""
    xs = (np.arange(w, dtype=np.float32)[None, :] + ox) / size
    ys = (np.arange(h, dtype=np.float32)[:, None] + oy) / size
    f1, f2, p1, p2 = (
        rng.uniform(0.8, 2.2),
        rng.uniform(0.5, 1.5),
        rng.uniform(0, 6.3),
        rng.uniform(0, 6.3),
    )
    folds = np.sin(2 * np.pi * xs * f1 + p1 + 1.5 * ys) * np.cos(2 * np.pi * ys * f2 + p2)
    return (1.0 + strength * folds - 0.05 * (ys - 0.5))[..., None]


def _background(shot: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """The (size, size, 3) uint8 backdrop of a shot."""
    if shot in ("product", "model"):  # near-white seamless, or a light studio wall
        ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
        if shot == "product":
            column = rng.uniform(246, 255) - rng.uniform(0, 8) * ramp + rng.uniform(-2, 2, size=3)
        else:
            warm = np.array([rng.uniform(0, 6), rng.uniform(0, 4), 0.0], np.float32)
            column = rng.uniform(222, 238) + 14 * (1 - ramp) + warm
        column = np.clip(column, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.broadcast_to(column[:, None, :], (size, size, 3)))
    # artistic: a pastel gradient, sometimes with a soft disc, drawn small and scaled up
    n = 48
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    c1 = np.array(_hsv_to_rgb(rng.random(), rng.uniform(0.08, 0.25), rng.uniform(0.9, 0.98)))
    c2 = np.array(_hsv_to_rgb(rng.random(), rng.uniform(0.08, 0.25), rng.uniform(0.88, 0.97)))
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * ramp[None, :] + np.sin(a) * ramp[:, None] + 1.0) / 2.0
    arr = c1 + (c2 - c1) * t[..., None]
    if rng.random() < 0.5:
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.3)
        dist = np.hypot(ramp[None, :] - cx, ramp[:, None] - cy)
        alpha = np.clip((r - dist) / 0.03, 0.0, 1.0)[..., None] * 0.6
        c3 = np.array(_hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.3), rng.uniform(0.85, 0.95)))
        arr = arr * (1 - alpha) + c3 * alpha
    small = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return np.array(small.resize((size, size), Image.Resampling.BILINEAR))


def _draw_figure(
    draw: ImageDraw.ImageDraw, p: _Product, geo: _Geometry, tf: _Frame, skin: RGB, hair: RGB
) -> None:
    """A simple skin-toned model behind the garment."""
    s = tf.size
    if p.category in ("pants", "skirt"):
        waist = 0.02 if p.category == "pants" else 0.1
        head_v = waist - 0.62
        shoulder = waist - 0.46
        torso = [
            (0.5 - geo.half_width, waist + 0.02),
            (0.5 - 0.2, shoulder),
            (0.5 + 0.2, shoulder),
            (0.5 + geo.half_width, waist + 0.02),
        ]
        draw.polygon(tf.pts(torso), fill=skin)
        for side in (-1, 1):
            draw.line(
                [tf(0.5 + side * 0.23, shoulder + 0.04), tf(0.5 + side * 0.27, waist + 0.25)],
                fill=skin,
                width=max(2, round(0.07 * s)),
            )
        if p.category == "skirt":
            for side in (-1, 1):
                draw.line(
                    [tf(0.5 + side * 0.08, geo.hem - 0.05), tf(0.5 + side * 0.09, 1.6)],
                    fill=skin,
                    width=max(2, round(0.09 * s)),
                )
    else:
        top = 0.04 if p.category == "dress" else 0.06
        head_v = top - 0.2
        (su, sv), (hu, hv) = geo.arm
        for side in (-1, 1):
            draw.line(
                [tf(0.5 + side * (su - 0.5), sv), tf(0.5 + side * (hu - 0.5), hv)],
                fill=skin,
                width=max(2, round(0.055 * s)),
            )
            hand = tf(0.5 + side * (hu - 0.5), hv + 0.01)
            r = 0.04 * s
            draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=skin)
            draw.line(
                [tf(0.5 + side * 0.08, geo.hem - 0.05), tf(0.5 + side * 0.09, 1.7)],
                fill=skin,
                width=max(2, round(0.09 * s)),
            )
        x0, y0 = tf(0.5 - 0.04, head_v + 0.06)
        x1, y1 = tf(0.5 + 0.04, top + 0.05)
        draw.rectangle([x0, y0, x1, y1], fill=skin)
    cx, cy = tf(0.5, head_v)
    rx, ry = 0.075 * s, 0.095 * s
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    draw.chord([cx - rx * 1.05, cy - ry * 1.1, cx + rx * 1.05, cy + ry * 0.9], 180, 360, fill=hair)


def _draw_details(draw: ImageDraw.ImageDraw, p: _Product, geo: _Geometry, tf: _Frame) -> None:
    """Seams, collars, buttons, zips and ribbing: the cues of category and style."""
    s = tf.size
    lw = max(1, round(0.008 * s))
    dark = _mix(p.rgb, (15, 15, 18), 0.5)
    light = _mix(p.rgb, (252, 252, 250), 0.35)
    button = (236, 234, 228) if _luma(p.rgb) < 0.6 else (40, 36, 34)
    cat, hem, formal = p.category, geo.hem, p.style == "formal"

    def line(points: Sequence[Point], width: int = lw, fill: RGB = dark) -> None:
        draw.line(tf.pts(points), fill=fill, width=width)

    def buttons(top: float, bottom: float, step: float = 0.12, x: float = 0.5) -> None:
        r = max(1.0, 0.013 * s)
        v = top
        while v <= bottom:
            cx, cy = tf(x, v)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=button, outline=dark)
            v += step

    def collar(depth: float, spread: float) -> None:
        for side in (-1, 1):
            flap = [
                (0.5 + side * spread, 0.035),
                (0.5 + side * 0.005, 0.07),
                (0.5 + side * 0.03, 0.07 + depth),
                (0.5 + side * (spread + 0.02), 0.09),
            ]
            draw.polygon(tf.pts(flap), fill=light, outline=dark)

    if cat == "t_shirt":
        dip = 0.16 if p.sleeve_length == "sleeveless" else 0.11
        line(
            [
                (0.5 - geo.neck, 0.05),
                (0.5 - geo.neck * 0.55, dip - 0.015),
                (0.5, dip),
                (0.5 + geo.neck * 0.55, dip - 0.015),
                (0.5 + geo.neck, 0.05),
            ],
            width=2 * lw,
        )
        if formal:  # a polo: small collar and two buttons
            collar(0.06, 0.085)
            buttons(0.13, 0.22, 0.08)
    elif cat == "shirt":
        line([(0.5, 0.08), (0.5, hem)])
        collar(0.09, 0.095)
        buttons(0.12 if formal else 0.24, hem - 0.05, 0.12)
        if not formal:
            draw.rectangle([*tf(0.56, 0.22), *tf(0.66, 0.32)], outline=dark, width=lw)
        if p.sleeve_length == "long":
            x = 0.5 - geo.half_width
            line([(x - 0.205, 0.74), (x - 0.105, 0.77)], width=2 * lw)
            line(_mirror([(x - 0.205, 0.74), (x - 0.105, 0.77)]), width=2 * lw)
    elif cat == "dress":
        line([(0.5 - geo.half_width, 0.4), (0.5 + geo.half_width, 0.4)])
        if formal:
            collar(0.06, 0.07)
            buttons(0.15, 0.38, 0.075)
    elif cat == "jacket":
        if formal or p.variant < 2:  # open front over a shirt, with lapels
            inner = (245, 244, 240) if _luma(p.rgb) < 0.7 else (60, 60, 66)
            draw.polygon(tf.pts([(0.5 - 0.07, 0.05), (0.5 + 0.07, 0.05), (0.5, 0.45)]), fill=inner)
            for side in (-1, 1):
                lapel = [
                    (0.5 + side * 0.07, 0.05),
                    (0.5 + side * 0.13, 0.12),
                    (0.5 + side * 0.06, 0.2),
                    (0.5 + side * 0.01, 0.45),
                ]
                draw.polygon(tf.pts(lapel), fill=light if formal else p.rgb, outline=dark)
            line([(0.5, 0.45), (0.5, hem)])
            buttons(0.55, 0.7, 0.13, x=0.52)
        else:  # zip front with a stand collar
            line([(0.5, 0.05), (0.5, hem)], width=max(2, 2 * lw), fill=(176, 178, 184))
            draw.rectangle([*tf(0.49, 0.1), *tf(0.515, 0.16)], fill=(176, 178, 184))
            line([(0.5 - geo.neck, 0.05), (0.5 + geo.neck, 0.05)], width=3 * lw)
        line([(0.5 - geo.half_width + 0.03, 0.64), (0.5 - 0.06, 0.64)])
        line([(0.5 + 0.06, 0.64), (0.5 + geo.half_width - 0.03, 0.64)])
    elif cat == "sweater":
        left, right = 0.5 - geo.half_width - 0.01, 0.5 + geo.half_width + 0.01
        line([(left, hem - 0.06), (right, hem - 0.06)])
        step = 0.018
        u = left + step / 2
        while u < right:  # ribbed hem
            line([(u, hem - 0.055), (u, hem - 0.005)], width=1)
            u += step
        if formal:  # v-neck showing a shirt collar
            draw.polygon(tf.pts([(0.5 - 0.07, 0.05), (0.5 + 0.07, 0.05), (0.5, 0.22)]), fill=dark)
            collar(0.05, 0.065)
        else:
            line(
                [
                    (0.5 - geo.neck, 0.05),
                    (0.5 - geo.neck * 0.55, 0.085),
                    (0.5, 0.1),
                    (0.5 + geo.neck * 0.55, 0.085),
                    (0.5 + geo.neck, 0.05),
                ],
                width=3 * lw,
            )
        if p.sleeve_length == "long":
            x = 0.5 - geo.half_width
            cuff = [(x - 0.2, 0.75), (x - 0.1, 0.78)]
            line(cuff, width=3 * lw)
            line(_mirror(cuff), width=3 * lw)
    elif cat == "pants":
        w = geo.half_width
        line([(0.5 - w, 0.07), (0.5 + w, 0.07)], width=lw)
        line([(0.5, 0.07), (0.5, 0.27)])
        line([(0.5 - w + 0.02, 0.08), (0.5 - w + 0.09, 0.17)])
        line([(0.5 + w - 0.02, 0.08), (0.5 + w - 0.09, 0.17)])
        if formal:  # pressed creases
            line([(0.39, 0.1), (0.5 - (0.03 + 0.27) / 2 - 0.02, hem)], fill=light)
            line([(0.61, 0.1), (0.5 + (0.03 + 0.27) / 2 + 0.02, hem)], fill=light)
    else:  # skirt
        line([(0.5 - geo.half_width, 0.15), (0.5 + geo.half_width, 0.15)], width=lw)
        if formal:
            line([(0.5, hem - 0.12), (0.5, hem)])
        elif p.variant % 2 == 0:  # pleats
            for k in (-2, -1, 1, 2):
                line([(0.5 + k * 0.05, 0.16), (0.5 + k * 0.085, hem)], width=1)


def _place(shot: str, p: _Product, size: int, rng: np.random.Generator) -> _Frame:
    if shot == "artistic":  # small, off-center, away from the middle
        f = rng.uniform(0.25, 0.4) * size
        offsets = []
        for _ in range(2):
            reach = rng.uniform(0.19, 0.5 - f / size / 2 - 0.02) * size
            offsets.append(reach if rng.random() < 0.5 else -reach)
        return _Frame(size / 2 + offsets[0] - f / 2, size / 2 + offsets[1] - f / 2, f)
    if shot == "model":
        f = rng.uniform(0.5, 0.6) * size
        x0 = (size - f) / 2 + rng.uniform(-0.03, 0.03) * size
        top = {"pants": -0.72, "skirt": -0.64}.get(p.category, -0.3)
        y0 = max((size - f * (1.0 - top)) / 2 - top * f, 0.02 * size - top * f)
        return _Frame(x0, min(y0, size - 0.98 * f), f)
    f = rng.uniform(0.6, 0.8) * size
    jitter = rng.uniform(-0.03, 0.03, size=2) * size
    return _Frame((size - f) / 2 + jitter[0], (size - f) / 2 + jitter[1], f)


def _render(p: _Product, shot: str, size: int, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Draw one shot; returns the image and the garment box as ``left,top,right,bottom``."""
    if shot == "fabric":  # a zoomed swatch: only color and pattern are visible
        zoom = rng.uniform(2.0, 3.5) * size / 512
        ox, oy = (int(v) for v in rng.integers(0, 4 * size, size=2))
        tex = _texture(p, size, size, ox, oy, zoom)
        tex *= _lighting(size, size, 0, 0, size / 1.5, rng, 0.06)
        return Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8)), f"0,0,{size},{size}"

    geo = _geometry(p)
    tf = _place(shot, p, size, rng)
    arr = _background(shot, size, rng)
    if shot == "model":
        img = Image.fromarray(arr)
        hair = _HAIR[int(rng.integers(len(_HAIR)))]
        _draw_figure(ImageDraw.Draw(img), p, geo, tf, _SKIN[int(rng.integers(len(_SKIN)))], hair)
        arr = np.array(img)

    mask_img = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask_img)
    for polygon in geo.polygons:
        mask_draw.polygon(tf.pts(polygon), fill=255)
    mask = np.asarray(mask_img) > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    if shot in ("product", "artistic"):  # a soft drop shadow, computed around the garment only
        dx, dy = round(0.015 * tf.size), round(0.02 * tf.size)
        pad = max(2, round(0.04 * tf.size))
        wl, wt = max(0, left - pad), max(0, top - pad)
        wr, wb = min(size, right + pad + dx), min(size, bottom + pad + dy)
        shifted = mask_img.crop((wl - dx, wt - dy, wr - dx, wb - dy))
        small = shifted.resize((max(1, (wr - wl) // 4), max(1, (wb - wt) // 4)))
        small = small.filter(ImageFilter.GaussianBlur(max(1.0, size / 256)))
        shade = np.asarray(small.resize((wr - wl, wb - wt), Image.Resampling.BILINEAR))
        window = arr[wt:wb, wl:wr]
        window[:] = window * (1.0 - shade[..., None].astype(np.float32) * (0.2 / 255))

    h, w = bottom - top, right - left
    scale = tf.size / (0.7 * 512)
    ox, oy = left - round(tf.x0), top - round(tf.y0)
    cloth = _texture(p, h, w, ox, oy, scale)
    if p.style == "sporty":
        band_img = Image.new("L", (size, size), 0)
        band_draw = ImageDraw.Draw(band_img)
        width = max(2, round(geo.band_width * tf.size))
        for band in geo.bands:
            band_draw.line(tf.pts(band), fill=255, width=width)
        band = np.asarray(band_img)[top:bottom, left:right] > 0
        cloth[band] = (250, 250, 250) if _luma(p.rgb) < 0.55 else (22, 22, 26)
    cloth *= _lighting(h, w, ox, oy, tf.size, rng, 0.05)
    np.clip(cloth, 0, 255, out=cloth)
    region = mask[top:bottom, left:right]
    view = arr[top:bottom, left:right]
    np.copyto(view, cloth.astype(np.uint8), where=region[..., None])
    inner = region.copy()  # a dark outline: garment pixels with a background neighbour
    inner[0, :] = inner[-1, :] = False
    inner[:, 0] = inner[:, -1] = False
    inner[1:, :] &= region[:-1, :]
    inner[:-1, :] &= region[1:, :]
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    edge = region & ~inner
    view[edge] = (view[edge] * 0.55).astype(np.uint8)

    img = Image.fromarray(arr)
    _draw_details(ImageDraw.Draw(img), p, geo, tf)
    return img, f"{left},{top},{right},{bottom}"


_HAIR: tuple[RGB, ...] = ((40, 28, 20), (90, 60, 30), (20, 20, 22), (170, 130, 70), (120, 40, 20))


def _render_product(args: tuple[_Product, int, int, str]) -> list[str]:
    """Render and save every shot of one product; returns the garment boxes (a worker task)."""
    p, size, seed, image_dir = args
    boxes = []
    for j, (shot, name) in enumerate(zip(p.shots, p.image_names, strict=True)):
        rng = np.random.default_rng([seed, p.index, j])
        img, box = _render(p, shot, size, rng)
        img.save(os.path.join(image_dir, name), format="PNG", compress_level=1)
        boxes.append(box)
    return boxes


# ---------------------------------------------------------------------------------------------
# manifests


def _label_cell(rng: random.Random, label: str, synonyms: dict[str, list[str]]) -> str:
    """Mostly the canonical label; sometimes a vendor synonym or odd casing; rarely empty."""
    roll = rng.random()
    if roll < 0.03:
        return ""
    if roll < 0.08 and synonyms.get(label):
        word = rng.choice(synonyms[label])
        return rng.choice((word.title(), word.upper(), word))
    if roll < 0.13:
        spaced = label.replace("_", " ")
        return rng.choice(
            (
                spaced.upper(),
                spaced.title().replace(" ", "-"),
                f" {spaced.capitalize()} ",
                label.upper(),
                label.replace("_", "").upper(),
            )
        )
    return label


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
        for name in ("catalog.json", "ground_truth.csv"):
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
) -> CatalogInfo:
    """Generate a synthetic catalog under ``out`` and return what was written.

    ``progress(done, total)`` is called as products are rendered. ``workers`` processes draw
    the images (default: up to 4, one per CPU, for catalogs of 200+ products); the output does
    not depend on it. An existing catalog in ``out`` is only replaced with ``overwrite=True``.
    """
    out = Path(out)
    _check_args(products, image_size, images_per_product, splits)
    _prepare_out(out, overwrite)

    rng = random.Random(f"fashion-catalog:{seed}")
    plan = [_sample_product(rng, i, images_per_product) for i in range(products)]
    text_rng = random.Random(f"fashion-catalog-text:{seed}")
    for p in plan:
        _write_text(text_rng, p, text_rng.choice(_VENDORS))
    _assign(random.Random(f"fashion-catalog-split:{seed}"), plan, splits)

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
    datasets: dict[str, DatasetInfo] = {}
    for name, attributes in DATASETS.items():
        manifests: dict[str, str] = {}
        rows: dict[str, int] = {}
        for split in SPLITS:
            members = [p for p in plan if p.dataset == name and p.split == split]
            rel = f"datasets/{name}/{split}.csv"
            lines = (
                [
                    p.id,
                    "|".join(f"../../images/{n}" for n in p.image_names),
                    p.title,
                    p.description,
                    p.brand,
                    *(_label_cell(label_rng, getattr(p, a), synonyms[a]) for a in attributes),
                ]
                for p in members
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


@click.command("make-catalog")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--products",
    default=600,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of products to generate.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option(
    "--image-size",
    default=512,
    show_default=True,
    type=click.IntRange(64, 4096),
    help="Side of the square images, in pixels.",
)
@click.option(
    "--images-per-product",
    nargs=2,
    type=int,
    default=(1, 3),
    show_default=True,
    metavar="MIN MAX",
    help="Range of shots per product.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes drawing images [default: one per CPU, at most 4].",
)
@click.option("--overwrite", is_flag=True, help="Replace a catalog already in OUT.")
def make_catalog_command(
    out: Path,
    products: int,
    seed: int,
    image_size: int,
    images_per_product: tuple[int, int],
    workers: int | None,
    overwrite: bool,
) -> None:
    """Generate a synthetic retail catalog with known ground truth in OUT."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    start = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("Drawing products", total=products)
        info = make_catalog(
            out,
            products=products,
            seed=seed,
            image_size=image_size,
            images_per_product=images_per_product,
            workers=workers,
            overwrite=overwrite,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    elapsed = time.perf_counter() - start

    table = Table(title=f"Catalog in {out}")
    table.add_column("dataset")
    table.add_column("labels")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for ds in info.datasets.values():
        table.add_row(
            ds.name, ", ".join(ds.attributes), *(str(ds.rows[s]) for s in SPLITS), str(ds.total)
        )
    console.print(table)
    console.print(
        f"{info.products} products, {info.images} images of {info.image_size} px in "
        f"{elapsed:.1f} s; ground truth: {info.ground_truth_path}"
    )


__all__ = [
    "ATTRIBUTES",
    "DATASETS",
    "SHOT_TYPES",
    "SPLITS",
    "CatalogInfo",
    "DatasetInfo",
    "load_catalog",
    "make_catalog",
    "make_catalog_command",
    "read_ground_truth",
]
