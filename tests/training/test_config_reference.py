"""The configuration reference (docs/config.md) is generated from the schema and stays in sync;
config objects validate on assignment."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion.cli.reference import TABLES, config_reference
from fashion.errors import ConfigError
from fashion.training import TrainConfig
from fashion.training.config import _Config

ROOT = Path(__file__).resolve().parents[2]


def test_config_reference_is_generated_and_complete():
    reference = (ROOT / "docs" / "config.md").read_text()
    assert reference == config_reference(), "docs/config.md is stale: run `make docs`"
    for _, model in TABLES:
        for name in model.model_fields:
            assert f"| `{name}` |" in reference, f"docs/config.md lacks `{name}`"
    for key in ("progress", "verify_images", "pretrained", "eval_batch_size", "save_bundle"):
        assert f"| `{key}` |" in reference
    assert "alias `image`" in reference


def test_config_reference_fails_when_a_key_is_undocumented():
    class Documented(_Config):
        documented: int = 1
        """Has a docstring."""

    class Undocumented(_Config):
        documented: int = 1
        """Has a docstring."""
        secret_knob: int = 2

    assert "`documented`" in config_reference([("t", Documented)])
    with pytest.raises(ConfigError, match="Undocumented.secret_knob"):
        config_reference([("t", Undocumented)])


def test_config_validates_on_assignment(tmp_path):
    config = TrainConfig.parse({"datasets": [{"name": "a", "path": str(tmp_path)}]})
    config.output_dir = "runs/x"  # type: ignore[assignment]
    assert config.output_dir == Path("runs/x")
    with pytest.raises(ConfigError, match="epochs"):
        config.epochs = 0
    with pytest.raises(ConfigError, match="precision"):
        config.precision = "fp8"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="outptu_dir"):
        config.outptu_dir = "typo"  # type: ignore[attr-defined]
    assert config.epochs == 10
