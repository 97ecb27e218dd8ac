"""``fashion add-attribute``: the command line of :func:`fashion.attributes.add_attribute`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from fashion.attributes.config import Strategy
from fashion.attributes.pipeline import add_attribute
from fashion.errors import GateError
from fashion.model.taxonomy import DEFAULT_HEAD


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
@click.option("--head", default=DEFAULT_HEAD, show_default=True, help="Head plugin for the new attribute.")
@click.option("--strategy", type=click.Choice(["head-only", "partial", "finetune"]), default="head-only", show_default=True)
@click.option("--max-regression", type=float, default=0.01, show_default=True,
              help="Largest allowed macro-F1 drop of any existing attribute.")
@click.option("--push", metavar="REPO", help="Publish the new revision as REPO.")
@click.option("--registry", type=click.Choice(["local", "hf"]), default="local", show_default=True)
@click.option("--tag", help="Tag the published revision.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write the new bundle here (default: NAME-bundle in --project-dir unless --push).")
@click.option("--replay", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="finetune: base datasets to replay (default: from the base's provenance).")
@click.option("--gate-data", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Validation data of the existing attributes (default: from the base's provenance).")
@click.option("--epochs", type=int, help="Training epochs (default: 30 head-only, 5 partial and finetune).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, help="Learning rate of the new head.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "auto"]), default="fp32", show_default=True,
              help="Training precision. fp32: a rerun publishes the same head; auto: bf16 where this "
                   "CPU computes it natively and a timed step says it is faster.")
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where the team's attribute file lives.")
@click.option("--endpoint", help="Hub endpoint (hf registry).")
@click.option("--from-text", "from_text", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Manifest(s) whose vendor text NAME's labels are mined from (instead of --data).")
@click.option("--rules", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="--from-text: a TOML/YAML rules file of labelling functions (keywords, regex, field, label).")
@click.option("--min-confidence", type=float, default=0.7, show_default=True,
              help="--from-text: the label model's confidence a mined label needs.")
@click.option("--label-model", type=click.Choice(["dawid-skene", "majority"]), default="dawid-skene",
              show_default=True, help="--from-text: how votes combine (majority is the baseline).")
@click.option("--text-dropout", type=float, default=1.0, show_default=True,
              help="--from-text: share of mined products trained without their text (the photos learn it).")
@click.option("--dry-run", is_flag=True, help="--from-text: print the functions and mined labels; train nothing.")
@click.option("--zero-shot", "zero_shot", multiple=True, metavar="PROMPT",
              help="--from-text: also vote from the photos, scored against this prompt with {label} "
                   "(repeatable: the prompts are averaged), e.g. 'a photo of a {label} garment'.")
@click.option("--clip-model", metavar="MODEL",
              help="--zero-shot: open_clip weights, a folder (open_clip_config.json + "
                   "open_clip_model.safetensors) or hf-hub:org/repo in the Hugging Face cache.")
@click.option("--zero-shot-confidence", type=float, default=0.5, show_default=True,
              help="--zero-shot: the top label's probability a photo needs to vote.")
@click.option("--json", "as_json", is_flag=True, help="Print the gate report as JSON.")
def add_attribute_command(
    name: str, labels: list[str] | None, synonyms: Path | None, data: tuple[Path, ...],
    validation: tuple[Path, ...], base: str | None, head: str, strategy: Strategy,
    max_regression: float, push: str | None, registry: str, tag: str | None, out: Path | None,
    replay: tuple[Path, ...], gate_data: tuple[Path, ...], epochs: int | None, batch_size: int,
    lr: float | None, seed: int, device: str, precision: str, project_dir: Path, endpoint: str | None,
    from_text: tuple[Path, ...], rules: Path | None, min_confidence: float, label_model: str,
    text_dropout: float, dry_run: bool, zero_shot: tuple[str, ...], clip_model: str | None,
    zero_shot_confidence: float, as_json: bool,
) -> None:
    """Add attribute NAME: scaffold -> train -> no-regression gate -> publish.

    Without --data it writes NAME into the team's attribute file and a manifest template, and
    prints the next command. With --data and --base it trains the new head (head-only by
    default: everything else frozen, on cached features), checks that no existing attribute
    regresses, and publishes a new revision whose parent is the base.

    With --from-text instead of --data, NAME's labels are mined from the vendor text: keyword
    functions from NAME's taxonomy, --rules and plugins vote, a label model combines the votes,
    and the head trains on the mined labels (--dry-run: show the functions and labels only).
    --zero-shot adds the votes of an image-text model (--clip-model) on the photos.
    """
    import json

    out_console = Console()
    try:
        result = add_attribute(
            name, labels=labels, synonyms=synonyms, data=data, validation=validation, base=base,
            head=head, strategy=strategy, max_regression=max_regression, push=push,
            registry=registry, out=out, replay=replay, gate_data=gate_data, epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, device=device, precision=precision,
            project_dir=project_dir,
            endpoint=endpoint, tag=tag, from_text=from_text, rules=rules,
            min_confidence=min_confidence, label_model=label_model, text_dropout=text_dropout,
            dry_run=dry_run, zero_shot=zero_shot, clip_model=clip_model,
            zero_shot_confidence=zero_shot_confidence,
        )
    except GateError as exc:
        if exc.report is not None:
            out_console.print(exc.report.table())
        raise
    if result.mining is not None:
        for table in result.mining.tables():
            out_console.print(table)
        for warning in result.mining.warnings:
            out_console.print(f"[yellow]warning: {warning}[/]", highlight=False)
        if result.mining.audit_note:
            out_console.print(f"audit: {result.mining.audit_note}", highlight=False)
        elif result.mining.audited:
            shown = ", ".join(f"{s.id} ({s.mined} -> {s.suggested}?)" for s in result.mining.suspects[:5])
            out_console.print(f"audit (cleanlab): {len(result.mining.suspects)} mined labels the photos "
                              f"disagree with{': ' + shown if shown else ''}", highlight=False)
        if dry_run:
            out_console.print(f"dry run: {result.mining.mined_count} of {len(result.mining.rows)} "
                              "products mined; nothing was trained.", highlight=False)
            return
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
    if result.bundle_path is not None:
        out_console.print(f"bundle: {result.bundle_path}", highlight=False)
    if result.revision is not None:
        out_console.print(f"published: {result.revision.uri}", highlight=False)
    elif result.bundle_path is not None:
        out_console.print(
            f"not published; publish it with: fashion push {result.bundle_path} MODEL", highlight=False
        )


__all__ = ["add_attribute_command"]
