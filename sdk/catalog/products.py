"""Sampling the products: category, color, pattern, style, sleeves and their look, from the seed."""

from __future__ import annotations

import colorsys
import random
from collections.abc import Sequence
from dataclasses import dataclass

from fashion.catalog.info import SLEEVED
from fashion.data.images import RGB

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
