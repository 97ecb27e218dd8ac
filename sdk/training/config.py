"""The training config: model spec, datasets, sampler, loss, optimizer, schedule and run options.

A config file (TOML, YAML or JSON) holds the same keys as :class:`TrainConfig`; relative paths
in it are relative to the file's folder. See ``docs/training.md`` for a worked example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from fashion._util.config import StrictModel, explain_validation_error
from fashion.data.manifest import MANIFEST_SUFFIXES
from fashion.errors import ConfigError
from fashion.model.spec import ModelSpec, load_config_file


class _Config(StrictModel):
    """Training config models: unknown keys refused, assignments validated at once, and every
    field documented by the docstring under it (the generated reference, ``docs/config.md``)."""

    model_config = ConfigDict(validate_assignment=True, use_attribute_docstrings=True)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(f"invalid {type(self).__name__}.{name}: {explain_validation_error(exc)}") from None


class DatasetConfig(_Config):
    """One labeled dataset.

    ``path`` is a manifest file (CSV, JSONL, Parquet) or a folder holding ``<split>.csv``
    (``.jsonl``/``.parquet``). ``attributes`` lists the attribute columns it labels; ``None``
    takes every column of the manifest that names one of the model's attributes.
    """

    name: str
    """The dataset's name (unique in a run): reports, history and the feature cache use it."""
    path: Path
    """A manifest file (`.csv`, `.jsonl`, `.parquet`) or a folder holding `<split>.csv|jsonl|parquet`; relative to the config file."""
    attributes: list[str] | None = None
    """The attribute columns this dataset labels; default: every column named like one of the model's attributes."""
    split: str = "train"
    """With a folder `path`: the manifest file's stem (`train` reads `train.csv`)."""

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
        if not self.path.exists():
            raise ConfigError(
                f"dataset {self.name!r}: {self.path} does not exist; check `path` (relative paths "
                "are relative to the config file)."
            )
        return self.path


class OptimizerConfig(_Config):
    """AdamW with one learning rate for backbones and one for fusion + heads."""

    lr_backbone: float = Field(1e-4, ge=0.0)
    """Learning rate of backbone parameters (the blocks above a cut point included)."""
    lr_head: float = Field(1e-3, ge=0.0)
    """Learning rate of fusion, heads and loss-combination parameters."""
    weight_decay: float = Field(0.01, ge=0.0)
    """AdamW weight decay (never applied to biases and norm weights)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""


class ScheduleConfig(_Config):
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` (or constant)."""

    warmup_steps: int = Field(0, ge=0)
    """Steps of linear warmup from 0 to the learning rates."""
    cosine: bool = True
    """Cosine decay over the run's steps after warmup; `false`: constant."""
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    """The cosine decay's floor, as a fraction of the learning rates."""


class TrainConfig(_Config):
    """Everything a training run needs. Build it in code or load it with `TrainConfig.load(path)`."""

    model: ModelSpec | None = None
    """The model spec (a table, or the path of a spec file); default: the model given to the `Trainer`."""
    datasets: list[DatasetConfig] = Field(min_length=1)
    """The training datasets (`[[datasets]]` tables: `name`, `path`, `attributes`, `split`)."""
    validation: list[DatasetConfig] | None = None
    """Validation datasets; default: `val_fraction` of each training dataset is held out."""
    test: list[DatasetConfig] | None = None
    """Held-out test datasets (`split = "test"` for a catalog folder): scored once with the kept weights at the end, never used to choose them; the bundle's model card reports them as test metrics."""
    name: str | None = None
    """The model's name, e.g. `local://shop` or `hf://org/shop` (the URI you will publish it under): the model card's load example and title use it."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Without `validation`: the fraction of each dataset held out (stratified, seeded)."""

    sampler: str = "proportional"
    """How an epoch's steps are drawn: `proportional`, `round_robin`, `temperature`, `all_tasks` or a plugin's."""
    sampler_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the sampler (e.g. `{temperature = 2.0}`)."""
    loss: str = "sum"
    """How the per-attribute losses combine: `sum`, `mean`, `uncertainty`, `dwa`, `pcgrad` or a plugin's."""
    loss_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the loss combination (e.g. `{temperature = 2.0}` for `dwa`)."""
    class_weights: Literal["balanced"] | None = None
    """`balanced`: weight each class by n / (C · n_c) over the training rows; default: unweighted."""

    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """AdamW settings (`[optimizer]` table: `lr_backbone`, `lr_head`, `weight_decay`, `betas`)."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """Learning-rate schedule (`[schedule]` table: `warmup_steps`, `cosine`, `min_lr_ratio`)."""
    epochs: int = Field(10, ge=1)
    """Epochs to train (an epoch is what the sampler schedules)."""
    batch_size: int = Field(32, ge=1)
    """Rows per training batch (per dataset part with `all_tasks`)."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Rows per batch when scoring validation and filling the feature cache; default: `batch_size` (at least 64 for the cache)."""
    grad_clip: float | None = Field(1.0, gt=0.0)
    """Clip the gradient norm to this; `null`: no clipping."""
    strategy: Literal["full", "partial", "head-only"] = "full"
    """What trains: `full` (everything not in `freeze`), `partial` (each image backbone trains only its top block over activations cached at the cut, text backbones frozen: `freeze = ["croppers", "image-backbone@1", "text-backbone"]`, what `fashion add-attribute --strategy partial` does) or `head-only` (every backbone frozen, fusion and heads train on cached features: `freeze = ["croppers", "backbones"]`). Entries of `freeze` add to it."""
    freeze: list[str] = Field(default_factory=list)
    """Parameter groups that do not train: `image-backbone`, `text-backbone`, `backbones`, `fusion`, `heads`, a component path (`heads/color`), or partial fine-tuning, `image-backbone@N`: the image backbone's top N blocks train, the blocks below are frozen and their activations cached (a cut the backbone lacks is refused when the config loads, naming the valid ones)."""
    modality_dropout: float = Field(0.0, ge=0.0, le=1.0)
    """Probability, per product and step, of hiding its images or its text (half the time each) when it has both, so each modality alone gives sensible answers; 0 turns it off (the demo uses 0.3)."""
    seed: int = 0
    """Seeds torch, `random`, NumPy and every shuffle: a run is reproducible."""
    calibrate: bool = True
    """At the end, fit each attribute's temperature (calibrated scores) and abstention threshold on the validation data (`fashion.trust`, docs/trust.md)."""
    min_precision: float | None = Field(0.95, gt=0.0, le=1.0)
    """The precision `abstain=True` predictions aim for: each attribute's threshold is chosen on validation to reach it; `null`: no threshold."""
    early_stopping_patience: int | Literal["auto"] | None = "auto"
    """Stop after this many epochs without a better validation score; `auto`: 3 when the run trains over cached features or activations (`head-only`, `partial`: they reach their best in a few epochs, then memorize), never otherwise; `null`: never."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps in all; default: no cap."""

    output_dir: Path = Path("runs/train")
    """Where history, reports, checkpoints, best weights, evaluation and the bundle go."""
    resume: bool = False
    """Continue the checkpoint in `output_dir` from the exact step it stopped at."""
    checkpoint_every: int | None = Field(None, ge=1)
    """Also checkpoint every this many steps (always at epoch ends)."""
    save_bundle: bool = True
    """Write the trained model as a bundle to `output_dir/bundle`."""

    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes running `model.prepare` (decode, crop, preprocess)."""
    cache_dir: Path | None = None
    """Folder of the feature cache; default `output_dir/feature-cache`. Point several runs at one folder to share it."""
    feature_cache: bool = True
    """Cache the outputs of frozen backbones (or of the frozen part below a cut point) and train on them."""
    cache_variants: int = Field(2, ge=1, le=64)
    """With augmentation (a view's `augment` options) and cached activations: how many augmented variants of each image the cache stores; each epoch trains on one of them (epoch e reads variant e mod K). The cache's size on disk is logged before it fills. Without augmentation the cache holds the plain view once. The default, 2, is measured: on real photos two flipped variants gained most of what four did at about 60% of their wall time (docs/training.md)."""
    batchnorm_statistics: Literal["auto", "update", "fixed"] = "auto"
    """The backbones' BatchNorm running statistics while they train: `update` (PyTorch's train mode: each batch normalizes with its own statistics and moves the running ones), `fixed` (they normalize with the statistics they were loaded with, as at prediction, which never move; their scale and shift still train) or `auto`: `fixed` for a backbone whose BatchNorm layers were loaded with trained statistics (pretrained weights, a `weights_path`, a bundle), `update` for one randomly initialised (PyTorch's initial statistics). Fine-tuning a trained backbone with small batches, per-batch statistics are noisy and the running ones drift from what the weights were trained with: fixed statistics gained 2.8 points of accuracy on real photos (docs/training.md). Decided per backbone when the run starts, printed, and recorded in the bundle (`add-attribute` keeps `update`, what its no-regression gate was built with). Layers frozen by `freeze` or a cut keep theirs fixed either way."""
    quantization_aware: bool = False
    """Train with int8 simulated in every image backbone (inputs of each convolution rounded to 8 bits per tensor, weights to 7 bits per channel after folding their BatchNorm, residual branches before their addition; `fashion.model.quantization`), so that the bundle's `fashion optimize --precision int8-static` graph computes what training optimized. Meant for fine-tuning a trained model a few epochs (low learning rate) when the int8 error is spread over the layers; the accuracy gate still compares the int8 graph with the bundle's own fp32 predictions (measured in docs/training.md). Needs the image backbones to run every step: not with cached features (`feature_cache = false` with a frozen backbone). The epochs' validation scores the simulation; the final evaluation and the bundle are fp32."""
    on_unknown_label: Literal["error", "skip"] = "error"
    """A label no taxonomy knows: `error` stops the run naming file:line and value; `skip` reports it and leaves the cell unlabeled."""
    on_bad_row: Literal["error", "skip"] = "skip"
    """A missing, empty or undecodable image, or text that is not text: `skip` reports it and leaves the row out; `error` stops."""
    verify_images: bool = True
    """Open and decode every image once when a dataset loads (bad rows are found before training starts)."""
    taxonomies: Path | None = None
    """A project taxonomy file (label synonyms), see `fashion.model.taxonomy`."""

    device: str = "auto"
    """`auto` (CUDA when available, else the CPU), `cpu`, `cuda` or `cuda:N`."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """`auto`: bf16 autocast on CUDA with bf16 (fp16 + gradient scaler without); on the CPU a few training steps of fp32, of fp32 with channels_last weights (when a convolution trains) and, where the CPU has native bf16 (AVX512-BF16/AMX), of bf16 + channels_last are timed on the real model and batch, and another candidate is kept over fp32 only when at least 1.1x faster (never one measured slower than fp32, nor a pick within the timing's noise; a resumed run keeps the one it began in). `bf16`/`fp16`/`fp32` force one (`bf16` on a CPU without native bf16 and `fp16` on a CPU fall back to fp32 with a warning). The precision asked and used is printed at the start and recorded in the history and the bundle."""
    threads: int | None = Field(None, ge=1)
    """Torch intra-op threads for this run (`torch.set_num_threads`); default: torch's own choice (the cores it sees). Printed at the start with the CPU's features."""
    pretrained: bool = True
    """Load the backbones' pretrained weights when the model is built from `model` (false: random init)."""
    progress: bool | None = None
    """Show a live bar (training with the epoch's and the run's ETA, feature-cache fill); default: when stderr is a terminal. Plain lines go to the `fashion.training` logger either way (`fashion train` prints them on stdout): one per epoch, and without a live bar one every `log_every` steps."""
    log_every: int | None = Field(50, ge=1)
    """Without a live bar: a plain line every this many steps (loss, steps/s, rows/s, the epoch's and the run's ETA); `null`: epoch lines only."""

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
            raise ConfigError(f"invalid {source}: {explain_validation_error(exc, model=cls)}.") from None
        check_compatible(config.sampler, config.loss)
        if config.model is not None:
            check_cuts(config.model, config.frozen_groups())
        if config.quantization_aware and config.feature_cache and config.strategy != "full":
            raise ConfigError(
                f"{source}: quantization_aware = true simulates int8 inside the image backbones, which "
                f"strategy = {config.strategy!r} skips by training on cached features; set "
                "feature_cache = false (the frozen part then runs, simulated, every step) or strategy = \"full\"."
            )
        return config

    def frozen_groups(self) -> list[str]:
        """What does not train: the `strategy`'s groups, then the `freeze` entries."""
        return list(dict.fromkeys([*STRATEGY_FREEZE[self.strategy], *self.freeze]))

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
    for key in ("datasets", "validation", "test"):
        if isinstance(data.get(key), list):
            data[key] = [
                {**item, "path": fix(item["path"])} if isinstance(item, dict) and "path" in item
                else item
                for item in data[key]
            ]
    return data


STRATEGY_FREEZE: dict[str, list[str]] = {
    "full": [],
    "partial": ["croppers", "image-backbone@1", "text-backbone"],
    "head-only": ["croppers", "backbones"],
}
"""The groups each `strategy` freezes (`partial` is what `fashion add-attribute --strategy
partial` trains)."""


def cut_backbones(spec: ModelSpec, group: str, modality_of: Any) -> list[str] | None:
    """The backbone keys a cut's group names (``image-backbone``, ``text-backbone``,
    ``backbones``, ``backbones/KEY``); ``None``: not a group a cut applies to."""
    if group in ("image-backbone", "text-backbone"):
        return [k for k in spec.backbones if modality_of(k) == group.split("-")[0]]
    if group == "backbones":
        return list(spec.backbones)
    if group.startswith("backbones/") and group.removeprefix("backbones/") in spec.backbones:
        return [group.removeprefix("backbones/")]
    return None


def valid_cuts(group: str, points: list[str]) -> str:
    """``image-backbone@1 (layer4 trains), image-backbone@2 (layer3 and up), …``."""
    return ", ".join(
        f"{group}@{n} ({points[-n]} {'trains' if n == 1 else 'and up train'})" for n in range(1, len(points) + 1)
    )


def check_cuts(spec: ModelSpec, entries: list[str]) -> None:
    """Refuse a ``GROUP@CUT`` entry whose backbone has no such cut, naming the valid cuts (the
    backbones are built without pretrained weights to read their cut points)."""
    from fashion.contract.manager import build_component, get_component_info

    cut_entries = [e for e in entries if "@" in e]
    if not cut_entries:
        return
    built: dict[str, Any] = {}

    def backbone(key: str) -> Any:
        if key not in built:
            s = spec.backbones[key]
            built[key] = build_component("backbone", s.name, s.options, pretrained=False)
        return built[key]

    def modality_of(key: str) -> str:
        return str(get_component_info("backbone", spec.backbones[key].name).cls.modality)

    for entry in cut_entries:
        group, _, cut = entry.partition("@")
        keys = cut_backbones(spec, group, modality_of)
        if keys is None:
            raise ConfigError(
                f"freeze entry {entry!r}: a cut applies to image-backbone, text-backbone or one of "
                f"{[f'backbones/{k}' for k in spec.backbones]}, e.g. \"image-backbone@1\" (its top block trains)."
            )
        for key in keys:
            try:
                backbone(key).resolve_cut(cut)
            except ConfigError:
                points = backbone(key).cut_points()
                listed = valid_cuts(group, points) if points else "none (freeze all of it or none of it)"
                raise ConfigError(
                    f"freeze entry {entry!r}: backbone {key!r} ({spec.backbones[key].name}) has no cut "
                    f"{cut!r}; its valid cuts are {listed}."
                ) from None


def check_compatible(sampler: str, loss: str) -> None:
    """Refuse an unregistered sampler or loss, and a loss that needs several tasks per step with
    a sampler that gives one dataset."""
    from fashion.contract.kinds import KINDS
    from fashion.contract.manager import component_table

    table = component_table()
    for kind, name in (("sampler", sampler), ("loss", loss)):
        hook = KINDS[kind].hook
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
    "STRATEGY_FREEZE",
    "TrainConfig",
    "check_compatible",
    "check_cuts",
]
