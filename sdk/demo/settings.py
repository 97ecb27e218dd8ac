"""The demo's fixed names and sizes, and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_ATTRIBUTES = ("category", "color", "pattern", "style")
NEW_ATTRIBUTE = "sleeve_length"
MODEL_NAME = "fashion-demo"
MODALITY_DROPOUT = 0.3  # share of training products shown with only their images or only their text


@dataclass
class DemoSettings:
    """Sizes of one demo run (``small`` is the fast variant the test suite runs)."""

    products: int = 700
    image_size: int = 512
    view_size: int = 224
    epochs: int = 25
    batch_size: int = 32
    seed: int = 0
    ablation: bool = True

    @classmethod
    def small(cls) -> DemoSettings:
        return cls(products=160, image_size=256, view_size=128, epochs=12, batch_size=16)


@dataclass
class DemoResult:
    out: Path
    backbones: str
    test_metrics: dict[str, dict[str, Any]]
    ablation: dict[str, float] | None
    modalities: dict[str, dict[str, float]] | None
    gate: dict[str, Any] | None
    published: list[str] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    test_manifest: Path | None = None


__all__ = ["BASE_ATTRIBUTES", "MODALITY_DROPOUT", "MODEL_NAME", "NEW_ATTRIBUTE", "DemoResult", "DemoSettings"]
