"""Every option of ``fashion add-attribute`` / :func:`~fashion.attributes.pipeline.add_attribute`,
validated in one model (the CLI's flags have the same names)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from fashion._util.config import StrictModel, explain_validation_error
from fashion.errors import ConfigError
from fashion.model.taxonomy import DEFAULT_HEAD

Strategy = Literal["head-only", "partial", "finetune"]


class AddAttributeConfig(StrictModel):
    """Every option of :func:`add_attribute` (``fashion add-attribute`` flags have the same names).

    ``data`` absent: scaffold only. ``base`` is required to train. ``from_text`` (instead of
    ``data``): labels mined from the vendor text of these manifests (``rules``,
    ``min_confidence``, ``label_model``; ``text_dropout`` is the share of mined products trained
    without their text); ``dry_run`` mines and reports without training.
    """

    labels: list[str] | None = None
    synonyms: Path | dict[str, str] | None = None
    data: list[Path] = Field(default_factory=list)
    validation: list[Path] = Field(default_factory=list)
    base: str | None = None
    head: str = DEFAULT_HEAD
    head_options: dict[str, Any] = Field(default_factory=dict)
    strategy: Strategy = "head-only"
    max_regression: float = Field(0.01, ge=0.0)
    push: str | None = None
    registry: Literal["local", "hf"] = "local"
    out: Path | None = None
    replay: list[Path] = Field(default_factory=list)
    gate_data: list[Path] = Field(default_factory=list)
    epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float | None = Field(None, gt=0.0)
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "fp32"
    """fp32 by default, so that a rerun on the same data publishes the same head: ``auto`` times
    bf16 against fp32 on a CPU with native bf16 and its pick can differ between runs."""
    project_dir: Path | None = None
    endpoint: str | None = None
    token: str | None = None
    tag: str | None = None
    progress: bool | None = None
    work_dir: Path | None = None
    # labels mined from vendor text (fashion.attributes.mining; docs/add-attribute.md)
    from_text: list[Path] = Field(default_factory=list)
    rules: Path | None = None
    min_confidence: float = Field(0.7, ge=0.0, le=1.0)
    label_model: Literal["dawid-skene", "majority"] = "dawid-skene"
    text_dropout: float = Field(1.0, ge=0.0, le=1.0)
    dry_run: bool = False
    # zero-shot votes of an image-text model on the photos (fashion.attributes.mining.zeroshot)
    zero_shot: list[str] = Field(default_factory=list)
    clip_model: str | None = None
    zero_shot_confidence: float = Field(0.5, ge=0.0, le=1.0)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> AddAttributeConfig:
        """Validate options; a bad one raises :class:`ConfigError` naming it."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(
                f"invalid add-attribute options: {explain_validation_error(exc)}. "
                f"Accepted options: {', '.join(cls.model_fields)}."
            ) from None


__all__ = ["AddAttributeConfig", "Strategy"]
