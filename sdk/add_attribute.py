"""``fashion add-attribute``: scaffold -> train -> no-regression gate -> publish.

The workflow teams use most: a new attribute, a new dataset labeled only for it, an existing
published model, and a new revision that predicts it without getting worse at anything else.

- ``head-only`` (default): backbones, fusion and every existing head are frozen; only the new
  head trains, on features from the feature cache. Old attributes' predictions stay
  bit-identical.
- ``finetune``: joint training of everything, replaying the base model's own datasets (from the
  paths in its provenance, or ``replay=``) so old attributes are not forgotten.

The gate evaluates every existing attribute before and after on its validation data and refuses
to publish when any macro-F1 drops by more than ``max_regression``.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
from rich.console import Console
from rich.table import Table

from .errors import ConfigError, DataError, GateError
from .manifest import iter_manifest, manifest_columns
from .spec import AttributeSpec, ComponentSpec

Strategy = Literal["head-only", "finetune"]
console = Console(stderr=True)


# ----------------------------------------------------------------------------- labels


def _taxonomy_for(name: str, project_dir: Path | None) -> Any:
    """The team's project taxonomy for ``name``, else the built-in one, else None."""
    from fashion.heads.taxonomy import PROJECT_FILE, builtin_taxonomies, load_project_taxonomies

    if project_dir is not None and (project_dir / PROJECT_FILE).is_file():
        project = load_project_taxonomies(project_dir / PROJECT_FILE)
        if name in project:
            return project[name]
    return builtin_taxonomies().get(name)


def _slug(value: str) -> str:
    from fashion.heads.taxonomy import normalize_text

    return normalize_text(value).replace(" ", "_")


def propose_labels(
    name: str, manifests: Sequence[str | Path], *, project_dir: Path | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Count the values of column ``name`` across manifests, mapped through the taxonomy.

    Returns ``(label -> count, unmapped raw value -> count)``. Values the taxonomy knows map to
    canonical labels (vendor synonyms included); without a taxonomy, values are normalized
    (case, accents, spacing) into snake_case labels.
    """
    taxonomy = _taxonomy_for(name, project_dir)
    counts: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    for manifest in manifests:
        if name not in manifest_columns(manifest):
            raise DataError(
                f"{manifest} has no column {name!r}; add one holding the {name} label of each row."
            )
        for row in iter_manifest(manifest):
            raw = row.values.get(name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            raw = str(raw)
            if taxonomy is not None:
                label = taxonomy.normalize(raw)
                if label is None:
                    unmapped[raw] += 1
                else:
                    counts[label] += 1
            else:
                counts[_slug(raw)] += 1
    return dict(counts.most_common()), dict(unmapped.most_common())


def scaffold_attribute(
    name: str,
    *,
    labels: Sequence[str],
    synonyms: Mapping[str, str] | None = None,
    head: str = "mlp",
    project_dir: Path,
) -> list[Path]:
    """Write the attribute into the project's taxonomy file and a manifest template."""
    from fashion.heads.taxonomy import PROJECT_FILE, Taxonomy, save_project_taxonomy

    taxonomy = Taxonomy(
        name=name, labels=list(labels), synonyms=dict(synonyms or {}),
        description=f"{name} (head: {head})",
    )
    project_dir.mkdir(parents=True, exist_ok=True)
    written = [save_project_taxonomy(project_dir / PROJECT_FILE, taxonomy)]
    template = project_dir / f"{name}-manifest.csv"
    if not template.exists():
        with template.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "images", "title", "description", "brand", name])
            writer.writerow(
                ["sku-001", "images/sku-001_0.jpg|images/sku-001_1.jpg",
                 "Vendor title", "Vendor description", "Brand", labels[0]]
            )
        written.append(template)
    return written


def _read_synonyms(synonyms: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    if synonyms is None:
        return {}
    if isinstance(synonyms, Mapping):
        return dict(synonyms)
    from .spec import load_config_file

    data = load_config_file(synonyms)
    data = data.get("synonyms", data)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{synonyms}: synonyms must map vendor words to labels (strings).")
    return dict(data)


# ------------------------------------------------------------------------------- gate


@dataclass
class GateRow:
    attribute: str
    before: float | None
    after: float | None
    delta: float | None
    passed: bool


@dataclass
class GateReport:
    """Before/after macro-F1 of every existing attribute, and the new attribute's metrics."""

    attribute: str
    max_regression: float
    rows: list[GateRow] = field(default_factory=list)
    new_metrics: dict[str, Any] | None = None
    #: components of the base model that training changed; empty: the old attributes' outputs
    #: are bit-identical (fingerprints verified) and "after" was not evaluated again.
    changed_components: list[str] | None = None

    @property
    def unchanged(self) -> bool:
        return self.changed_components == []

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def table(self) -> Table:
        table = Table(
            title=f"no-regression gate (max drop {self.max_regression:.3f} macro-F1)",
            caption=(
                "old components bit-identical (fingerprints verified): after = before" if self.unchanged
                else f"retrained: {', '.join(self.changed_components)}" if self.changed_components else None
            ),
        )
        for column in ("attribute", "before", "after", "delta", "verdict"):
            table.add_column(column, justify="right" if column != "attribute" else "left")
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        for r in self.rows:
            verdict = "[green]ok[/]" if r.passed else "[red]REGRESSED[/]"
            table.add_row(r.attribute, fmt(r.before), fmt(r.after),
                          "-" if r.delta is None else f"{r.delta:+.3f}", verdict)
        if self.new_metrics is not None:
            table.add_row(
                f"{self.attribute} (new)", "-", f"{self.new_metrics.get('macro_f1', 0.0):.3f}",
                "-", "[cyan]new[/]",
            )
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "max_regression": self.max_regression,
            "passed": self.passed,
            "rows": [r.__dict__ for r in self.rows],
            "new_metrics": self.new_metrics,
            "changed_components": self.changed_components,
        }


def _gate(
    before: Any, after: Any, attribute: str, max_regression: float, new_metrics: dict | None
) -> GateReport:
    report = GateReport(attribute, max_regression, new_metrics=new_metrics)
    for name in sorted(before.attributes):
        if name == attribute:
            continue
        b = before.attributes[name].macro_f1
        a = after.attributes[name].macro_f1 if name in after.attributes else None
        delta = None if a is None else a - b
        report.rows.append(
            GateRow(name, b, a, delta, a is not None and (b - a) <= max_regression + 1e-12)
        )
    return report


# ------------------------------------------------------------------------------ result


@dataclass
class AddAttributeResult:
    """What :func:`add_attribute` did: scaffolded files, or a new bundle and its gate report."""

    attribute: str
    labels: list[str]
    scaffolded: list[Path] = field(default_factory=list)
    label_counts: dict[str, int] | None = None
    bundle_path: Path | None = None
    gate: GateReport | None = None
    revision: Any | None = None  # fashion.registry.base.Revision when published
    next_command: str | None = None

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

    return [
        DatasetConfig(name=f"{tag}-{i}-{Path(p).parent.name}-{Path(p).stem}", path=Path(p),
                      attributes=attributes)
        for i, p in enumerate(paths)
    ]


def add_attribute(
    name: str,
    *,
    labels: Sequence[str] | None = None,
    synonyms: str | Path | Mapping[str, str] | None = None,
    data: Sequence[str | Path] = (),
    validation: Sequence[str | Path] = (),
    base: str | Path | None = None,
    head: str = "mlp",
    head_options: Mapping[str, Any] | None = None,
    strategy: Strategy = "head-only",
    max_regression: float = 0.01,
    push: str | None = None,
    registry: Literal["local", "hf"] = "local",
    out: str | Path | None = None,
    replay: Sequence[str | Path] = (),
    gate_data: Sequence[str | Path] = (),
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    project_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    tag: str | None = None,
    progress: bool | None = None,
    work_dir: str | Path | None = None,
) -> AddAttributeResult:
    """Add attribute ``name`` to a published model; see the module docstring and
    ``docs/add-attribute.md``. Raises :class:`fashion.errors.GateError` (with ``.report``)
    when an existing attribute regresses; nothing is published then."""
    from fashion.heads.taxonomy import normalize_text

    if not name or _slug(name) != name:
        raise ConfigError(f"attribute name {name!r} must be lowercase snake_case, e.g. sleeve_length.")
    if strategy not in ("head-only", "finetune"):
        raise ConfigError(f"unknown strategy {strategy!r}; use head-only or finetune.")
    project = Path(project_dir) if project_dir is not None else Path.cwd()
    synonym_map = _read_synonyms(synonyms)
    taxonomy = _taxonomy_for(name, project)
    label_counts: dict[str, int] | None = None

    # 1. labels: given, proposed from the data, or the taxonomy's
    if labels:
        label_list = [_slug(label) for label in labels]
    elif data:
        label_counts, unmapped = propose_labels(name, data, project_dir=project)
        if unmapped:
            shown = ", ".join(f"{v!r} ({n})" for v, n in list(unmapped.items())[:10])
            raise DataError(
                f"column {name!r} has values the {name} taxonomy does not know: {shown}. "
                "Map them with --synonyms FILE (vendor word -> label) or pass --labels."
            )
        label_list = list(label_counts)
        if len(label_list) < 2:
            raise DataError(
                f"column {name!r} holds fewer than two distinct labels ({label_list}); "
                "an attribute needs at least two. Check the data or pass --labels."
            )
    elif taxonomy is not None:
        label_list = list(taxonomy.labels)
    else:
        raise ConfigError(
            f"no labels for {name!r}: pass --labels a,b,c (or --data to propose them from a "
            "labeled manifest)."
        )
    if taxonomy is not None:
        merged = dict(taxonomy.synonyms)
        merged.update(synonym_map)
        synonym_map = {k: v for k, v in merged.items() if v in label_list}
    synonym_map = {normalize_text(k): v for k, v in synonym_map.items()}
    bad = {k: v for k, v in synonym_map.items() if v not in label_list}
    if bad:
        raise ConfigError(f"synonyms point at labels that are not in {label_list}: {bad}")

    # 2. scaffold only
    if not data:
        written = scaffold_attribute(
            name, labels=label_list, synonyms=synonym_map, head=head, project_dir=project
        )
        template = written[-1]
        next_command = (
            f"fashion add-attribute {name} --data {template} --base "
            f"{base or 'local://MODEL@latest'}"
        )
        return AddAttributeResult(name, label_list, scaffolded=written, next_command=next_command)

    if base is None:
        raise ConfigError("--base MODEL_URI is required to train (e.g. local://catalog@latest).")
    return _train_and_publish(
        name, label_list, synonym_map, label_counts, data=data, validation=validation, base=base,
        head=head, head_options=head_options, strategy=strategy, max_regression=max_regression,
        push=push, registry=registry, out=out, replay=replay, gate_data=gate_data, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, device=device, endpoint=endpoint, token=token,
        tag=tag, progress=progress, work_dir=work_dir,
    )


def _train_and_publish(
    name: str,
    labels: list[str],
    synonyms: dict[str, str],
    label_counts: dict[str, int] | None,
    *,
    data: Sequence[str | Path],
    validation: Sequence[str | Path],
    base: str | Path,
    head: str,
    head_options: Mapping[str, Any] | None,
    strategy: Strategy,
    max_regression: float,
    push: str | None,
    registry: str,
    out: str | Path | None,
    replay: Sequence[str | Path],
    gate_data: Sequence[str | Path],
    epochs: int | None,
    batch_size: int,
    lr: float | None,
    seed: int,
    device: str,
    endpoint: str | None,
    token: str | None,
    tag: str | None,
    progress: bool | None,
    work_dir: str | Path | None,
) -> AddAttributeResult:
    from fashion.registry import load_bundle, save_bundle
    from fashion.training import OptimizerConfig, TrainConfig, Trainer, evaluate

    hub_options = {"endpoint": endpoint, "token": token} if str(base).startswith("hf://") else {}
    base_bundle = load_bundle(base, **hub_options)
    model = base_bundle.model
    manifest = base_bundle.manifest
    if name in model.spec.attributes:
        raise ConfigError(
            f"the base model already predicts {name!r}; choose a new attribute name."
        )
    old_attributes = list(model.spec.attributes)

    # gate data: given, else the base model's recorded validation sets
    provenance = manifest.provenance.model_dump()
    if gate_data:
        gate_sets = _as_configs(gate_data, None, "gate")
    else:
        gate_sets = _dataset_configs(provenance.get("validation") or [], "validation")
    if not gate_sets:
        raise ConfigError(
            "the base model records no validation data for the gate; pass --gate-data MANIFEST..."
        )
    before = evaluate(model, gate_sets, on_unknown_label="skip")
    base_prints = model.component_fingerprints()

    spec = AttributeSpec(
        labels=labels, head=ComponentSpec(name=head, options=dict(head_options or {})),
        synonyms=synonyms,
    )
    model.add_attribute(name, spec)
    model.train()

    train_sets = _as_configs(data, [name], "new")
    val_sets = _as_configs(validation, [name], "new-val") if validation else None
    if strategy == "head-only":
        freeze = ["croppers", "backbones", "fusion"] + [f"heads/{a}" for a in old_attributes]
        default_epochs, lr_head, lr_backbone = 30, lr or 3e-3, 0.0
    else:
        freeze = []
        replayed = (
            _as_configs(replay, None, "replay") if replay
            else _dataset_configs(provenance.get("datasets") or [], "training")
        )
        train_sets = train_sets + replayed
        default_epochs, lr_head, lr_backbone = 5, lr or 1e-3, (lr or 1e-3) * 0.1
    run_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix=f"fashion-add-{name}-"))
    config = TrainConfig(
        datasets=train_sets,
        validation=val_sets,
        epochs=epochs or default_epochs,
        batch_size=batch_size,
        freeze=freeze,
        seed=seed,
        device=device,
        optimizer=OptimizerConfig(lr_head=lr_head, lr_backbone=lr_backbone),
        output_dir=run_dir / "train",
        cache_dir=run_dir / "cache",
        save_bundle=False,
        on_unknown_label="error",
        progress=progress,
        pretrained=False,
    )
    result = Trainer(model, config).fit()
    model.eval()
    # Every old attribute's prediction is a function of the old components alone. When training
    # left all of them bit-identical (head-only), "after" equals "before" by construction and
    # the gate does not run the backbones over the gate data a second time.
    changed = sorted(p for p, fp in model.component_fingerprints().items() if p in base_prints and base_prints[p] != fp)
    after = before if not changed else evaluate(model, gate_sets, on_unknown_label="skip")
    new_report = result.evaluation
    new_metrics = new_report.attributes[name].to_dict() if new_report and name in new_report.attributes else None
    gate = _gate(before, after, name, max_regression, new_metrics)
    gate.changed_components = changed
    if not gate.passed:
        failed = ", ".join(f"{r.attribute} {r.before:.3f}->{r.after or 0:.3f}" for r in gate.rows if not r.passed)
        raise GateError(
            f"the new revision would regress {failed} (more than {max_regression:.3f} macro-F1); "
            "nothing was published. Use --strategy head-only, lower the learning rate, replay "
            "more of the base data, or raise --max-regression if the drop is acceptable.",
            report=gate,
        )

    # 4. publish: a new bundle whose unchanged component files are reused from the base
    out_dir = Path(out) if out else run_dir / "bundle"
    metrics = {a: dict(m) for a, m in manifest.metrics.items()}
    for attribute, m in after.attributes.items():
        metrics[attribute] = m.to_dict()
    if new_metrics is not None:
        metrics[name] = new_metrics
    plots: dict[str, Path] = {}
    if new_report is not None:
        plot_dir = run_dir / "plots"
        plots[name] = new_report.plot_confusion(name, plot_dir / f"confusion_{name}.png")
    parent = _pinned_uri(base_bundle)
    new_provenance = dict(provenance)
    new_provenance["datasets"] = list(provenance.get("datasets") or []) + [
        d for d in result_provenance(result) if name in (d.get("attributes") or [])
    ]
    new_provenance["parent"] = parent
    new_provenance["added_attribute"] = {"name": name, "strategy": strategy,
                                         "gate": gate.to_dict()}
    if out_dir.exists():
        shutil.rmtree(out_dir)
    bundle_path = save_bundle(
        model, out_dir, metrics=metrics, provenance=new_provenance,
        training_config=config.model_dump(mode="json"), parent=parent, plots=plots,
        reuse_from=base_bundle.path,
    )
    revision = None
    if push:
        from fashion.registry import get_registry

        options = {"endpoint": endpoint, "token": token} if registry == "hf" else {}
        revision = get_registry(registry, **options).publish(
            bundle_path, push, tag=tag, message=f"add attribute {name} ({strategy})"
        )
    return AddAttributeResult(
        name, labels, label_counts=label_counts, bundle_path=bundle_path, gate=gate,
        revision=revision,
    )


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


def _split_labels(_: click.Context, __: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    labels = [v.strip() for v in value.split(",") if v.strip()]
    if len(labels) < 2:
        raise click.BadParameter("give at least two comma-separated labels, e.g. short,long")
    return labels


@click.command("add-attribute")
@click.argument("name")
@click.option("--labels", callback=_split_labels, help="Comma-separated labels (default: from the data or taxonomy).")
@click.option("--synonyms", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON/TOML/YAML file mapping vendor words to labels.")
@click.option("--data", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Manifest(s) labeling NAME (repeatable). Without it: scaffold only.")
@click.option("--validation", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Validation manifest(s) for NAME (default: split from --data).")
@click.option("--base", help="The published model to extend: local://name@rev, hf://org/name@rev or a folder.")
@click.option("--head", default="mlp", show_default=True, help="Head plugin for the new attribute.")
@click.option("--strategy", type=click.Choice(["head-only", "finetune"]), default="head-only", show_default=True)
@click.option("--max-regression", type=float, default=0.01, show_default=True,
              help="Largest allowed macro-F1 drop of any existing attribute.")
@click.option("--push", metavar="REPO", help="Publish the new revision as REPO.")
@click.option("--registry", type=click.Choice(["local", "hf"]), default="local", show_default=True)
@click.option("--tag", help="Tag the published revision.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write the new bundle here.")
@click.option("--replay", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="finetune: base datasets to replay (default: from the base's provenance).")
@click.option("--gate-data", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Validation data of the existing attributes (default: from the base's provenance).")
@click.option("--epochs", type=int, help="Training epochs (default: 30 head-only, 5 finetune).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, help="Learning rate of the new head.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where the team's attribute file lives.")
@click.option("--endpoint", help="Hub endpoint (hf registry).")
@click.option("--json", "as_json", is_flag=True, help="Print the gate report as JSON.")
def add_attribute_command(
    name: str, labels: list[str] | None, synonyms: Path | None, data: tuple[Path, ...],
    validation: tuple[Path, ...], base: str | None, head: str, strategy: Strategy,
    max_regression: float, push: str | None, registry: str, tag: str | None, out: Path | None,
    replay: tuple[Path, ...], gate_data: tuple[Path, ...], epochs: int | None, batch_size: int,
    lr: float | None, seed: int, device: str, project_dir: Path, endpoint: str | None,
    as_json: bool,
) -> None:
    """Add attribute NAME: scaffold -> train -> no-regression gate -> publish.

    Without --data it writes NAME into the team's attribute file and a manifest template, and
    prints the next command. With --data and --base it trains the new head (head-only by
    default: everything else frozen, on cached features), checks that no existing attribute
    regresses, and publishes a new revision whose parent is the base.
    """
    import json

    out_console = Console()
    try:
        result = add_attribute(
            name, labels=labels, synonyms=synonyms, data=data, validation=validation, base=base,
            head=head, strategy=strategy, max_regression=max_regression, push=push,
            registry=registry, out=out, replay=replay, gate_data=gate_data, epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, device=device, project_dir=project_dir,
            endpoint=endpoint, tag=tag,
        )
    except GateError as exc:
        if exc.report is not None:
            out_console.print(exc.report.table())
        raise
    if result.scaffolded:
        for path in result.scaffolded:
            out_console.print(f"wrote {path}")
        out_console.print(f"labels: {', '.join(result.labels)}")
        out_console.print(f"next: fill the manifest, then run\n  {result.next_command}")
        return
    if result.label_counts:
        counts = ", ".join(f"{k} ({v})" for k, v in result.label_counts.items())
        out_console.print(f"labels proposed from the data: {counts}")
    assert result.gate is not None
    if as_json:
        click.echo(json.dumps(result.gate.to_dict(), indent=2, default=str))
    else:
        out_console.print(result.gate.table())
    out_console.print(f"bundle: {result.bundle_path}")
    if result.revision is not None:
        out_console.print(f"published: {result.revision.uri}")
