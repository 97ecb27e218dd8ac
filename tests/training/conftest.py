"""Fixtures for the training tests: a TrainConfig factory over the generated catalog (the
``catalog`` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def train_config(tmp_path: Path, catalog: dict[str, Path]) -> Callable[..., Any]:
    """A factory of small TrainConfigs over the catalog (quiet, no bundle unless asked)."""
    from fashion.training import TrainConfig
    from tests.tiny_plugin import TINY_SPEC

    def make(**overrides: Any) -> TrainConfig:
        data: dict[str, Any] = {
            "model": TINY_SPEC,
            "datasets": [
                {"name": "colors", "path": catalog["colors"]},
                {"name": "categories", "path": catalog["categories"]},
            ],
            "epochs": 4,
            "batch_size": 8,
            "optimizer": {"lr_backbone": 0.03, "lr_head": 0.03, "weight_decay": 0.0},
            "val_fraction": 0.25,
            "output_dir": tmp_path / "run",
            "progress": False,
            "save_bundle": False,
            "device": "cpu",
            # fixed: `auto` times fp32 against bf16 on a CPU with native bf16, and the tests that
            # compare two runs (resume, cache, workers) need both in one precision
            "precision": "fp32",
        }
        data.update(overrides)
        return TrainConfig.parse(data)

    return make
