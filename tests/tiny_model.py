"""A briefly trained tiny model and small generated products, shared by the suite (the
``tiny_model`` and ``hub`` fixtures in tests/conftest.py build on them)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from fashion import FashionModel
from tests.tiny_plugin import TINY_SPEC

COLORS = {"red": (220, 30, 30), "blue": (30, 40, 210)}
TRAIN = [
    ("red", "dress", "red summer dress"),
    ("blue", "shirt", "blue cotton shirt"),
    ("red", "pants", "red trousers"),
    ("blue", "dress", "navy evening dress"),
]


def image(color: str, size: tuple[int, int] = (24, 20)) -> Image.Image:
    return Image.new("RGB", size, COLORS.get(color, color))  # type: ignore[arg-type]


def png_bytes(color: str) -> bytes:
    buffer = io.BytesIO()
    image(color).save(buffer, format="PNG")
    return buffer.getvalue()


def train_briefly(model: FashionModel, attributes: Sequence[str] | None = None, steps: int = 4,
                  seed: int = 0, lr: float = 0.5) -> FashionModel:
    """A few SGD steps so the weights are not the initial ones (deterministic for a seed)."""
    torch.manual_seed(seed)
    attributes = list(attributes or model.attributes)
    products = [{"images": [image(c)], "title": t} for c, _, t in TRAIN]
    labels: dict[str, list[Any]] = {"color": [c for c, _, _ in TRAIN],
                                    "category": [k for _, k, _ in TRAIN]}
    targets = {}
    for a in attributes:
        values = labels.get(a) or [model.task(a).labels[i % 2] for i in range(len(TRAIN))]
        targets[a] = model.task(a).encode(values)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr)
    model.train()
    batch = model.prepare(products)
    for _ in range(steps):
        losses = model.losses(model(batch, attributes), targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        optimizer.step()
    return model.eval()


def make_model(seed: int = 0, spec: dict[str, Any] | None = None) -> FashionModel:
    torch.manual_seed(seed)
    return train_briefly(FashionModel(spec or TINY_SPEC), seed=seed)


def products() -> list[dict[str, Any]]:
    """Mixed inputs: PIL, bytes, text only, image only (a product with neither is an error)."""
    return [
        {"id": "p1", "images": [image("red")], "title": "red dress"},
        {"id": "p2", "images": [png_bytes("blue")], "title": "blue shirt", "brand": "Acme"},
        {"id": "p3", "title": "trousers", "description": "wide leg"},
        {"id": "p4", "images": [image("blue"), image("red", (30, 30))]},
    ]


def as_plain(results: Sequence[Any]) -> list[dict[str, Any]]:
    return [r.to_dict() if hasattr(r, "to_dict") else
            {a: p.to_dict() for a, p in r.items()} for r in results]


def assert_close_predictions(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]],
                             tol: float = 1e-5) -> None:
    """Same labels and abstentions; scores equal to float tolerance."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        xa, ya = x.get("attributes", x), y.get("attributes", y)
        assert xa.keys() == ya.keys()
        for attribute in xa:
            p, q = xa[attribute], ya[attribute]
            assert p["label"] == q["label"] and p["abstained"] == q["abstained"], attribute
            assert abs(p["score"] - q["score"]) <= tol, (attribute, p, q)
            assert [lbl for lbl, _ in p["top_k"]] == [lbl for lbl, _ in q["top_k"]]
