"""``fashion add-attribute``: scaffold -> train -> no-regression gate -> publish.

The workflow teams use most: a new attribute, a new dataset labeled only for it, an existing
published model, and a new revision that predicts it without getting worse at anything else.

- ``head-only`` (default): backbones, fusion and every existing head are frozen; only the new
  head trains, on features from the feature cache. Old attributes' predictions stay
  bit-identical.
- ``partial``: like ``finetune`` (replay, same gate), but each image backbone trains only its top
  block (``freeze = ["image-backbone@1"]``) over activations cached at the cut, and text
  backbones stay frozen: between head-only and finetune in cost.
- ``finetune``: joint training of everything, replaying the base model's own datasets (from the
  paths in its provenance, or ``replay=``) so old attributes are not forgotten.

The gate evaluates every existing attribute before and after on its validation data and refuses
to publish when any macro-F1 drops by more than ``max_regression``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion.attributes.config import AddAttributeConfig
from fashion.attributes.labels import (
    resolve_labels,
    scaffold_attribute,
    scope_for,
    slug,
    taxonomy_for,
)
from fashion.attributes.regression import RegressionReport, regression_report
from fashion.errors import ConfigError, GateError
from fashion.model.spec import AttributeSpec, ComponentSpec

# ------------------------------------------------------------------------------ result


@dataclass
class AddAttributeResult:
    """What :func:`add_attribute` did: scaffolded files, or a new bundle and its gate report."""

    attribute: str
    labels: list[str]
    scaffolded: list[Path] = field(default_factory=list)
    label_counts: dict[str, int] | None = None
    bundle_path: Path | None = None
    """The new bundle's folder: ``out``, or ``<name>-bundle`` in the project folder when it is not
    pushed; ``None`` when it was only pushed (the run's temporary files are removed)."""
    gate: RegressionReport | None = None
    revision: Any | None = None  # fashion.registry.base.Revision when published
    next_command: str | None = None
    mining: Any | None = None  # fashion.attributes.mining.mine.MiningResult (--from-text)

    @property
    def published(self) -> bool:
        return self.revision is not None


def _dataset_configs(entries: Sequence[Mapping[str, Any]], what: str) -> list[Any]:
    from fashion.training import DatasetConfig

    configs = []
    for i, entry in enumerate(entries):
        path = entry.get("path")
        if not path or not Path(path).exists():
            raise ConfigError(
                f"the base model's {what} dataset {entry.get('name')!r} is not at {path!r} on "
                f"this machine; pass its manifests with --{'replay' if what == 'training' else 'gate-data'}."
            )
        configs.append(DatasetConfig(
            name=f"{entry.get('name') or Path(path).stem}-{i}", path=Path(path),
            attributes=entry.get("attributes"),
        ))
    return configs


def _as_configs(paths: Sequence[str | Path], attributes: list[str] | None, tag: str) -> list[Any]:
    from fashion.training import DatasetConfig

    # named as the user gave them ("sleeves/val.csv"): reports and warnings show these names;
    # ``tag`` tells apart the same file given in two roles (e.g. --data and --replay)
    configs, seen = [], set()
    for p in paths:
        name = f"{Path(p).parent.name}/{Path(p).name}" if Path(p).parent.name else Path(p).name
        if name in seen:
            name = f"{name} ({tag})"
        seen.add(name)
        configs.append(DatasetConfig(name=name, path=Path(p), attributes=attributes))
    return configs


def add_attribute(
    name: str, config: AddAttributeConfig | Mapping[str, Any] | None = None, **options: Any
) -> AddAttributeResult:
    """Add attribute ``name`` to a published model; see the module docstring and
    ``docs/add-attribute.md``. ``config`` (an :class:`AddAttributeConfig` or a mapping) and/or
    keyword options (its fields, e.g. ``data=[...]``, ``base="local://shop@latest"``) say how.

    Scaffold (no ``data``), or :func:`train_attribute` -> :func:`gate_attribute` ->
    :func:`publish_attribute`. Raises :class:`fashion.errors.GateError` (with ``.report``) when
    an existing attribute regresses; nothing is published then.
    """
    if isinstance(config, AddAttributeConfig):
        config = AddAttributeConfig.parse({**config.model_dump(exclude_unset=True), **options}) if options else config
    else:
        config = AddAttributeConfig.parse({**dict(config or {}), **options})
    if not name or slug(name) != name:
        raise ConfigError(f"attribute name {name!r} must be lowercase snake_case, e.g. sleeve_length.")
    _check_out(config)
    label_list, synonym_map, label_counts = resolve_labels(name, config)
    mining = None
    if config.from_text or config.dry_run or config.zero_shot:  # labels mined from text (and photos)
        from fashion.attributes.mining.run import mine_for_run
        from fashion.attributes.mining.zeroshot import run_functions

        mining, config = mine_for_run(name, label_list, synonym_map, config,
                                      run_functions(name, label_list, config))
        if config.dry_run:
            return AddAttributeResult(name, label_list, mining=mining)
    if not config.data:
        project = config.project_dir if config.project_dir is not None else Path.cwd()
        written = scaffold_attribute(
            name, labels=label_list, synonyms=synonym_map, head=config.head, project_dir=project
        )
        template = written[-1]
        next_command = (
            f"fashion add-attribute {name} --data {template} --base "
            f"{config.base or 'local://MODEL@latest'}"
        )
        return AddAttributeResult(name, label_list, scaffolded=written, next_command=next_command)
    if config.base is None:
        raise ConfigError("--base MODEL_URI is required to train (e.g. local://catalog@latest).")
    # The run's scratch (checkpoints, feature cache, plots, the bundle before it is pushed) is
    # removed at the end; a bundle that is not pushed is kept where the user can find it.
    scratch: Path | None = None
    if config.work_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix=f"fashion-add-{name}-"))
        config = config.model_copy(update={"work_dir": scratch})
    if config.out is None and not config.push:
        project = config.project_dir if config.project_dir is not None else Path.cwd()
        config = config.model_copy(update={"out": default_bundle_dir(project, name)})
    try:
        run = train_attribute(name, label_list, synonym_map, config)
        if mining is not None:
            from fashion.attributes.mining.run import record_mining

            record_mining(run, mining)
        gate = gate_attribute(run, config)
        result = publish_attribute(run, gate, config)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if scratch is not None and result.bundle_path is not None and result.bundle_path.is_relative_to(scratch):
        result.bundle_path = None  # published only: the registry holds it
    result.label_counts, result.mining = label_counts, mining
    return result


def _check_out(config: AddAttributeConfig, base: Path | None = None) -> None:
    """The output guard of every writer on ``out``: a new (or empty) folder, outside every
    input (the base bundle: ``base`` once a URI is resolved, the manifests), refused before
    anything is read."""
    if config.out is None:
        return
    from fashion.data.outputs import check_output_paths
    from fashion.registry.uri import parse_uri

    if base is None and config.base is not None:
        parsed = parse_uri(config.base)
        base = Path(parsed.name) if parsed.scheme == "path" else None
    reads = [*config.data, *config.from_text, *config.validation, *config.replay, *config.gate_data, *([base] if base else [])]
    check_output_paths(reads, new_folders={"--out": config.out})


def default_bundle_dir(project_dir: Path, name: str) -> Path:
    """Where a bundle that is neither pushed nor given ``out`` is kept: ``<name>-bundle`` in the
    project folder (``-2``, ``-3``... when taken; an existing folder is never replaced)."""
    candidate, n = project_dir / f"{name}-bundle", 1
    while candidate.exists():
        n += 1
        candidate = project_dir / f"{name}-bundle-{n}"
    return candidate


@dataclass
class AttributeRun:
    """A trained candidate: the base bundle, the extended model and what the gate needs."""

    name: str
    labels: list[str]
    base_bundle: Any
    model: Any
    provenance: dict[str, Any]
    before: Any  # EvaluationReport of the old attributes on the gate data, before training
    gate_sets: list[Any]
    base_prints: dict[str, str]
    result: Any  # TrainResult
    train_config: Any  # TrainConfig
    run_dir: Path
    after: Any = None  # EvaluationReport after training (set by gate_attribute)


def train_attribute(
    name: str, labels: list[str], synonyms: dict[str, str], config: AddAttributeConfig
) -> AttributeRun:
    """Load the base, score its attributes on the gate data, add the head and train it."""
    import torch

    from fashion.registry import load_bundle
    from fashion.training import OptimizerConfig, TrainConfig, Trainer, evaluate
    from fashion.training.config import STRATEGY_FREEZE
    from fashion.training.samplers import derive_seed

    assert config.base is not None
    base = config.base
    hub_options = {"endpoint": config.endpoint, "token": config.token} if str(base).startswith("hf://") else {}
    base_bundle = load_bundle(base, **hub_options)
    model = base_bundle.model
    if name in model.spec.attributes:
        raise ConfigError(
            f"the base model already predicts {name!r}; choose a new attribute name."
        )
    old_attributes = list(model.spec.attributes)

    # gate data: given, else the base model's recorded validation sets
    provenance = base_bundle.index.provenance.model_dump()
    if config.gate_data:
        gate_sets = _as_configs(config.gate_data, None, "gate")
    else:
        gate_sets = _dataset_configs(provenance.get("validation") or [], "validation")
    if not gate_sets:
        raise ConfigError(
            "the base model records no validation data for the gate; pass --gate-data MANIFEST..."
        )
    before = evaluate(model, gate_sets, on_unknown_label="skip")
    base_prints = model.component_fingerprints()

    taxonomy = taxonomy_for(name, config.project_dir if config.project_dir is not None else Path.cwd())
    spec = AttributeSpec(
        labels=labels, head=ComponentSpec(name=config.head, options=dict(config.head_options)),
        synonyms=synonyms, applies_to=scope_for(name, taxonomy, model.spec.attributes),
        not_applicable=list(taxonomy.not_applicable) if taxonomy is not None else [],
    )
    # the new head's initial weights come from the run's seed, not from whatever the process
    # drew before (two runs of the same command publish the same head)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "add-attribute", name))
        model.add_head(name, spec)
    model.train()

    train_sets = _as_configs(config.data, [name], "new")
    val_sets = _as_configs(config.validation, [name], "new-val") if config.validation else None
    lr = config.lr
    if config.strategy == "head-only":
        freeze = ["croppers", "backbones", "fusion"] + [f"heads/{a}" for a in old_attributes]
        default_epochs, lr_head, lr_backbone = 30, lr or 3e-3, 0.0
    else:
        # partial: like finetune, but image backbones train only their top block over cached
        # activations (the frozen part below the cut is bit-identical) and text backbones are frozen
        freeze = list(STRATEGY_FREEZE["partial"]) if config.strategy == "partial" else []  # = strategy "partial"
        replayed = (
            _as_configs(config.replay, None, "replay") if config.replay
            else _dataset_configs(provenance.get("datasets") or [], "training")
        )
        train_sets = train_sets + replayed
        default_epochs, lr_head, lr_backbone = 5, lr or 1e-3, (lr or 1e-3) * 0.1
    run_dir = config.work_dir or Path(tempfile.mkdtemp(prefix=f"fashion-add-{name}-"))
    train_config = TrainConfig(
        datasets=train_sets,
        validation=val_sets,
        epochs=config.epochs or default_epochs,
        batch_size=config.batch_size,
        freeze=freeze,
        seed=config.seed,
        device=config.device,
        precision=config.precision,
        optimizer=OptimizerConfig(lr_head=lr_head, lr_backbone=lr_backbone),
        output_dir=run_dir / "train",
        cache_dir=run_dir / "cache",
        save_bundle=False,
        on_unknown_label="error",
        progress=config.progress,
        pretrained=False,
        # what this pipeline and its gate were built with; `auto` would fix the base's statistics
        # (partial test's catalog, 3 seeds: fixed refused one update passed, both refused one, by less fixed)
        batchnorm_statistics="update",
    )
    result = Trainer(model, train_config).fit()
    model.eval()
    return AttributeRun(
        name, labels, base_bundle, model, provenance, before, gate_sets, base_prints, result,
        train_config, run_dir,
    )


def gate_attribute(run: AttributeRun, config: AddAttributeConfig) -> RegressionReport:
    """Compare every old attribute before and after; raise :class:`GateError` on a regression."""
    from fashion.training import evaluate

    # Every old attribute's prediction is a function of the old components alone. When training
    # left all of them bit-identical (head-only), "after" equals "before" by construction and
    # the gate does not run the backbones over the gate data a second time.
    prints = run.model.component_fingerprints()
    changed = sorted(p for p, fp in prints.items() if p in run.base_prints and run.base_prints[p] != fp)
    run.after = run.before if not changed else evaluate(run.model, run.gate_sets, on_unknown_label="skip")
    new_report = run.result.evaluation
    name = run.name
    new_metrics = new_report.attributes[name].to_dict() if new_report and name in new_report.attributes else None
    gate = regression_report(run.before, run.after, name, config.max_regression, new_metrics)
    gate.changed_components = changed
    if not gate.passed:
        failed = ", ".join(f"{r.attribute} {r.before:.3f}->{r.after or 0:.3f}" for r in gate.rows if not r.passed)
        raise GateError(
            f"the new revision would regress {failed} (more than {config.max_regression:.3f} macro-F1); "
            "nothing was published. Use --strategy head-only, lower the learning rate, replay "
            "more of the base data, or raise --max-regression if the drop is acceptable.",
            report=gate,
        )
    return gate


def publish_attribute(run: AttributeRun, gate: RegressionReport, config: AddAttributeConfig) -> AddAttributeResult:
    """Write the new bundle (unchanged component files reused from the base) and push it."""
    from fashion.registry import save_bundle
    from fashion.registry.model_card import RELIABILITY, plot_files, plot_key

    name, index = run.name, run.base_bundle.index
    out_dir = config.out or run.run_dir / "bundle"
    metrics = {a: dict(m) for a, m in index.metrics.items()}
    for attribute, m in run.after.attributes.items():
        metrics[attribute] = m.to_dict()
    if gate.new_metrics is not None:
        metrics[name] = gate.new_metrics
    plots: dict[str, Path] = {}
    # the base's plots stay in the card; an old attribute whose components were retrained gets
    # its confusion matrix drawn again from the gate's "after" scores; reliability diagrams are
    # replaced by this run's for every attribute it calibrated again
    for rel in sorted(run.base_bundle.index.files):
        if rel.startswith("plots/") and rel.endswith(".png"):
            attribute = plot_key(Path(rel).stem)
            if attribute.endswith(RELIABILITY):
                plots[attribute] = run.base_bundle.path / rel
            elif attribute in run.after.attributes and gate.changed_components:
                plots[attribute] = run.after.plot_confusion(
                    attribute, run.run_dir / "plots" / f"confusion_{attribute}.png"
                )
            else:
                plots[attribute] = run.base_bundle.path / rel
    new_report = run.result.evaluation
    if new_report is not None:
        plots[name] = new_report.plot_confusion(name, run.run_dir / "plots" / f"confusion_{name}.png")
        if new_report.trust is not None:
            plots |= plot_files(new_report.trust.reliability_plots())
    parent = _pinned_uri(run.base_bundle)
    new_provenance = dict(run.provenance)
    trained = {d.name for d in run.train_config.datasets}
    loaded = result_provenance(run.result)
    new_provenance["datasets"] = list(run.provenance.get("datasets") or []) + [
        d for d in loaded if d["name"] in trained and name in (d.get("attributes") or [])
    ]
    new_provenance["validation"] = list(run.provenance.get("validation") or []) + [
        d for d in loaded if d["name"] not in trained
    ]
    if gate.changed_components:  # the base's test scores hold only while its components do
        for key in ("test", "test_metrics"):
            new_provenance.pop(key, None)
    if config.push:
        new_provenance["name"] = (
            config.push if "://" in config.push else f"{config.registry}://{config.push}"
        )
    new_provenance["parent"] = parent
    new_provenance["added_attribute"] = {"name": name, "strategy": config.strategy, "gate": gate.to_dict(),
                                         "labels": "mined" if name in (run.provenance.get("mined_labels") or {}) else "given"}
    _check_out(config, run.base_bundle.path)
    if out_dir.exists():  # an empty --out, or the run's own scratch
        shutil.rmtree(out_dir)
    bundle_path = save_bundle(
        run.model, out_dir, metrics=metrics, provenance=new_provenance,
        training_config=run.train_config.model_dump(mode="json"), parent=parent, plots=plots,
        reuse_from=run.base_bundle.path,
    )
    revision = None
    if config.push:
        from fashion.registry import get_registry

        options = {"endpoint": config.endpoint, "token": config.token} if config.registry == "hf" else {}
        revision = get_registry(config.registry, **options).publish(
            bundle_path, config.push, tag=config.tag, message=f"add attribute {name} ({config.strategy})"
        )
    return AddAttributeResult(name, run.labels, bundle_path=bundle_path, gate=gate, revision=revision)


def _pinned_uri(bundle: Any) -> str:
    """The base's URI pinned to its revision id (tags like ``latest`` move; parents must not)."""
    import re

    from fashion.registry import get_registry, parse_uri

    if not bundle.uri:
        return str(bundle.path)
    uri = parse_uri(bundle.uri)
    if uri.scheme == "local":
        for revision in get_registry("local").list_revisions(uri.name):
            if uri.revision in (None, revision.id, *revision.tags) and (
                uri.revision is not None or "latest" in revision.tags
            ):
                return f"local://{uri.name}@{revision.id}"
    if uri.scheme == "hf" and re.fullmatch(r"[0-9a-f]{40}", bundle.path.name):
        return f"hf://{uri.name}@{bundle.path.name}"  # the snapshot folder is the commit
    return bundle.uri


def result_provenance(result: Any) -> list[dict[str, Any]]:
    """The training datasets a finished run loaded, as provenance entries."""
    return [
        {"name": r.dataset, "path": str(r.path), "sha256": r.sha256, "rows": r.rows_used,
         "attributes": list(r.attributes)}
        for r in result.data_reports
    ]
