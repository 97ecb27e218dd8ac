"""``fashion push / pull / models / show / compose``: the registry commands.

The registry comes from the URI scheme (``hf://org/name``, ``local://name``); a bare name uses
``--registry`` (default ``local``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fashion.registry.base import ModelSummary
from fashion.registry.bundle import MANIFEST_NAME, read_manifest, verify_bundle
from fashion.registry.uri import get_registry, parse_uri

console = Console()

_registry_option = click.option(
    "--registry", "registry_name", type=click.Choice(["local", "hf"]), default=None,
    help="Registry for a name without a scheme (default: local).",
)
_endpoint_option = click.option("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT).")


def _registry(scheme: str, endpoint: str | None, token: str | None = None) -> Any:
    if scheme == "hf":
        return get_registry("hf", endpoint=endpoint, token=token)
    return get_registry("local")


def _target(value: str, registry_name: str | None) -> tuple[str, str, str | None]:
    """(scheme, name, revision) of a model URI or a bare name."""
    uri = parse_uri(value)
    if uri.scheme == "path":
        name, _, revision = value.partition("@")
        return registry_name or "local", name, revision or None
    if registry_name and registry_name != uri.scheme:
        raise click.UsageError(f"{value} is a {uri.scheme}:// URI but --registry is {registry_name}")
    return uri.scheme, uri.name, uri.revision


@click.command("push")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo")
@_registry_option
@click.option("--tag", default=None, help="Tag the new revision (e.g. v1; tags move).")
@click.option("--message", "-m", default=None, help="Commit / revision message.")
@_endpoint_option
@click.option("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login).")
def push_command(
    bundle: Path, repo: str, registry_name: str | None, tag: str | None, message: str | None,
    endpoint: str | None, token: str | None,
) -> None:
    """Publish BUNDLE as a new revision of REPO (hf://org/name, local://name or a name)."""
    scheme, name, revision = _target(repo, registry_name)
    if revision:
        raise click.UsageError("push creates a revision; name one with --tag, not @revision")
    published = _registry(scheme, endpoint, token).publish(bundle, name, tag=tag, message=message)
    tags = f" (tags: {', '.join(published.tags)})" if published.tags else ""
    click.echo(f"published {published.uri}{tags}")


@click.command("pull")
@click.argument("uri")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the bundle to this folder (default: leave it in the cache).")
@_endpoint_option
def pull_command(uri: str, out: Path | None, endpoint: str | None) -> None:
    """Download a model (hf://org/name[@rev], local://name[@rev]) and verify every file."""
    parsed = parse_uri(uri)
    if parsed.scheme == "path":
        raise click.UsageError(f"{uri} is not a model URI; use hf://org/name or local://name")
    options = {"endpoint": endpoint} if parsed.scheme == "hf" else {}
    folder = Path(get_registry(parsed.scheme, **options).fetch(parsed.name, parsed.revision))
    manifest = verify_bundle(folder)
    if out is not None:
        if out.exists() and any(out.iterdir()):
            raise click.UsageError(f"{out} is not empty; choose a new folder")
        for rel in [*manifest.files, MANIFEST_NAME]:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, out / rel)
        folder = out
    click.echo(str(folder))


@click.command("models")
@_registry_option
@_endpoint_option
@click.option("--author", default=None, help="Hub only: models of this user or organization.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_command(registry_name: str | None, endpoint: str | None, author: str | None,
                   as_json: bool) -> None:
    """List the models of a registry with their latest revision and tags."""
    scheme = registry_name or "local"
    registry = _registry(scheme, endpoint)
    rows: list[ModelSummary] = (registry.list_models(author=author) if scheme == "hf"
                                else registry.list_models())
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    table = Table(title=f"fashion models ({registry!r})")
    for column in ("model", "latest", "tags", "revisions", "updated"):
        table.add_column(column)
    for r in rows:
        tags = ", ".join(t for t in sorted(r.tags) if t != "latest")
        table.add_row(r.uri, (r.latest or "-")[:16], tags or "-",
                      str(r.revisions) if r.revisions is not None else "-", r.updated or "-")
    console.print(table)
    if not rows:
        console.print("no models yet: publish one with `fashion push BUNDLE NAME`.")


@click.command("show")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print the whole fashion.json manifest.")
@_endpoint_option
def show_command(uri: str, as_json: bool, endpoint: str | None) -> None:
    """Show a model's attributes, components, metrics and provenance (URI or bundle folder)."""
    parsed = parse_uri(uri)
    if parsed.scheme == "path":
        manifest = read_manifest(Path(parsed.name)).model_dump(mode="json")
    else:
        options = {"endpoint": endpoint} if parsed.scheme == "hf" else {}
        manifest = get_registry(parsed.scheme, **options).show(parsed.name, parsed.revision)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    console.print(f"[bold]{uri}[/]  format {manifest.get('format_version')}, "
                  f"fashion-sdk {manifest.get('sdk_version')}, created {manifest.get('created')}")
    table = Table(title="attributes")
    for column in ("attribute", "labels", "head", "threshold", "metrics"):
        table.add_column(column)
    metrics = manifest.get("metrics", {})
    for name, a in manifest.get("attributes", {}).items():
        shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in metrics.get(name, {}).items()
                          if not isinstance(v, (list, dict)))
        table.add_row(name, str(len(a["labels"])), a["head"], str(a["threshold"]), shown or "-")
    console.print(table)
    table = Table(title="components")
    for column in ("path", "name", "distribution", "fingerprint"):
        table.add_column(column)
    for path, c in manifest.get("components", {}).items():
        dist = f"{c['distribution']} {c.get('version') or ''}" if c.get("distribution") else "-"
        table.add_row(path, c["name"], dist, c["fingerprint"])
    console.print(table)
    from fashion.optimize.gate import print_verdict

    print_verdict(console, manifest.get("optimizations", {}))
    datasets = manifest.get("provenance", {}).get("datasets", [])
    for d in datasets:
        console.print(f"dataset {d.get('name', '?')}: {d.get('rows', '?')} rows")


@click.command("compose")
@click.argument("base")
@click.argument("heads", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the composed bundle.")
def compose_command(base: str, heads: tuple[str, ...], out: Path) -> None:
    """Combine head bundles trained on the same BASE bundle into one bundle.

    Every HEAD bundle's croppers, backbones and fusion must have BASE's fingerprints.
    """
    from fashion.registry.compose import compose_bundles

    path = compose_bundles(base, list(heads), out)
    attributes = ", ".join(read_manifest(path).attributes)
    click.echo(f"composed {path} with attributes: {attributes}")


@click.command("doctor")
@click.option("--repair", is_flag=True,
              help="Fix what has one right answer (leftovers, journals, damaged blobs, tags).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor_command(repair: bool, as_json: bool) -> None:
    """Check the local registry: every blob and revision against its hash, tags, leftovers.

    Exits with status 1 when problems are left (run again with --repair).
    """
    from fashion.registry.local import LocalRegistry

    report = LocalRegistry().doctor(repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for finding in report.findings:
            click.echo(finding.line())
        click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)


__all__ = [
    "compose_command",
    "doctor_command",
    "models_command",
    "pull_command",
    "push_command",
    "show_command",
]
