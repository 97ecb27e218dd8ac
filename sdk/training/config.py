"""The training config: model spec, datasets, sampler, loss, optimizer, schedule and run options.

A config file (TOML, YAML or JSON) holds the same keys as :class:`TrainConfig`; relative paths
in it are relative to the file's folder. See ``docs/training.md`` for a worked example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from .._config import StrictModel, explain_validation_error
from ..errors import ConfigError
from ..spec import ModelSpec, load_config_file

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")


class DatasetConfig(StrictModel):
    """One labeled dataset.

    ``path`` is a manifest file (CSV, JSONL, Parquet) or a folder holding ``<split>.csv``
    (``.jsonl``/``.parquet``). ``attributes`` lists the attribute columns it labels; ``None``
    takes every column of the manifest that names one of the model's attributes.
    """

    name: str
    path: Path
    attributes: list[str] | None = None
    split: str = "train"

    def manifest_path(self) -> Path:
        """The manifest file: ``path`` itself, or ``path/<split>.<csv|jsonl|parquet>``."""
        if self.path.is_dir():
            for suffix in MANIFEST_SUFFIXES:
                candidate = self.path / f"{self.split}{suffix}"
                if candidate.is_file():
                    return candidate
            raise ConfigError(
                f"dataset {self.name!r}: folder {self.path} has no {self.split}.csv, "
                f"{self.split}.jsonl or {self.split}.parquet; set `split` or point `path` at a "
                "manifest file."
            )
        return self.path


class OptimizerConfig(StrictModel):
    """AdamW with one learning rate for backbones and one for fusion + heads."""

    lr_backbone: float = Field(1e-4, ge=0.0)
    lr_head: float = Field(1e-3, ge=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(StrictModel):
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` (or constant)."""

    warmup_steps: int = Field(0, ge=0)
    cosine: bool = True
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)


class TrainConfig(StrictModel):
    """Everything a training run needs. Build it in code or load it with :meth:`load`."""

    model: ModelSpec | None = None
    datasets: list[DatasetConfig] = Field(min_length=1)
    validation: list[DatasetConfig] | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)

    sampler: str = "proportional"
    sampler_options: dict[str, Any] = Field(default_factory=dict)
    loss: str = "sum"
    loss_options: dict[str, Any] = Field(default_factory=dict)
    class_weights: Literal["balanced"] | None = None

    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(1.0, gt=0.0)
    freeze: list[str] = Field(default_factory=list)
    seed: int = 0
    early_stopping_patience: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)

    output_dir: Path = Path("runs/train")
    resume: bool = False
    checkpoint_every: int | None = Field(None, ge=1)
    save_bundle: bool = True

    num_workers: int = Field(0, ge=0)
    cache_dir: Path | None = None
    feature_cache: bool = True
    on_unknown_label: Literal["error", "skip"] = "error"
    on_bad_row: Literal["error", "skip"] = "skip"
    verify_images: bool = True
    taxonomies: Path | None = None

    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    pretrained: bool = True
    progress: bool | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model_from_file(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)):
            return ModelSpec.load(value)
        return value

    @classmethod
    def parse(cls, data: Any, *, base_dir: Path | None = None, source: str = "training config") -> TrainConfig:
        """Validate a mapping; relative paths resolve against ``base_dir`` (default: cwd)."""
        if isinstance(data, TrainConfig):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping, got {type(data).__name__}")
        data = _resolve_paths(dict(data), base_dir) if base_dir is not None else data
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid {source}: {explain_validation_error(exc)}. "
                f"Accepted keys: {', '.join(cls.model_fields)}."
            ) from None
        check_compatible(config.sampler, config.loss)
        return config

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Load a TOML/YAML/JSON config; relative paths are relative to the file's folder."""
        path = Path(path)
        return cls.parse(load_config_file(path), base_dir=path.parent, source=f"training config {path}")

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A validated copy with some fields replaced (``None`` values are ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.parse(data)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def fix(value: Any) -> Any:
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else base / path

    for key in ("output_dir", "cache_dir", "taxonomies"):
        if key in data:
            data[key] = fix(data[key])
    if isinstance(data.get("model"), str):
        data["model"] = fix(data["model"])
    for key in ("datasets", "validation"):
        if isinstance(data.get(key), list):
            data[key] = [
                {**item, "path": fix(item["path"])} if isinstance(item, dict) and "path" in item
                else item
                for item in data[key]
            ]
    return data


def check_compatible(sampler: str, loss: str) -> None:
    """Refuse an unregistered sampler or loss, and a loss that needs several tasks per step with
    a sampler that gives one dataset."""
    from ..manager import component_table

    table = component_table()
    for kind, name, hook in (("sampler", sampler, "register_samplers"), ("loss", loss, "register_losses")):
        if name not in table[kind]:
            raise ConfigError(
                f"{kind} = {name!r} is not registered; registered: "
                f"{', '.join(sorted(table[kind])) or 'none'}. A plugin adds one through the "
                f"`{hook}` hook (see `fashion plugins --kind {kind}`)."
            )
    sampler_cls = table["sampler"][sampler].cls
    loss_cls = table["loss"][loss].cls
    if loss_cls.requires_all_tasks and not sampler_cls.all_tasks_per_step:
        others = [n for n, r in sorted(table["loss"].items()) if not r.cls.requires_all_tasks]
        raise ConfigError(
            f"loss {loss!r} projects the gradients of several tasks within one step, but sampler "
            f"{sampler!r} gives each step a batch of one dataset. Set sampler = \"all_tasks\" "
            f"(one batch from every dataset per step) or choose another loss ({', '.join(others)})."
        )


__all__ = [
    "DatasetConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "check_compatible",
]
