"""Garment geometry: outlines, seams and where a garment sits in a shot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fashion.catalog.info import Point
from fashion.catalog.products import _Product

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
