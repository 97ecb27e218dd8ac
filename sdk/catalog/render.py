"""Drawing the shots: fabric texture, lighting, backgrounds, figures and details."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashion.catalog.geometry import _Frame, _Geometry, _geometry, _mirror, _place
from fashion.catalog.info import Point
from fashion.catalog.products import _SKIN, _hsv_to_rgb, _luma, _mix, _Product
from fashion.data.images import RGB


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
