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

from fashion.data.outputs import check_output_paths
from fashion.errors import BundleError
from fashion.registry.base import ModelSummary
from fashion.registry.bundle import INDEX_NAME, BundleIndex, read_index, verify_bundle
from fashion.registry.bundle_format import parse_index
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
    if out is not None:  # the output guard of every writer: a new folder, never the cached copy
        check_output_paths({"pulled bundle": folder}, new_folders={"--out": out})
    index = verify_bundle(folder)
    if out is not None:
        for rel in [*index.files, INDEX_NAME]:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, out / rel)
        folder = out
    click.echo(str(folder))


@click.command("models")
@click.argument("name", required=False)
@_registry_option
@_endpoint_option
@click.option("--author", default=None, help="Hub only: models of this user or organization.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_command(name: str | None, registry_name: str | None, endpoint: str | None,
                   author: str | None, as_json: bool) -> None:
    """List the models of a registry with their latest revision and tags; with NAME, list that
    model's revisions (oldest first) with their tags and messages."""
    from fashion._util.tables import print_table

    if name is not None:
        scheme, name, _ = _target(name, registry_name)
        registry = _registry(scheme, endpoint)
        revisions = registry.list_revisions(name)
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in revisions], indent=2))
            return
        print_table(console, f"revisions of {name} ({registry!r})",
                    ("revision", "tags", "created", "message"),
                    [(r.uri, ", ".join(r.tags) or "-", r.created or "-", r.message or "-")
                     for r in revisions])
        return
    scheme = registry_name or "local"
    registry = _registry(scheme, endpoint)
    rows: list[ModelSummary] = (registry.list_models(author=author) if scheme == "hf"
                                else registry.list_models())
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    print_table(console, f"fashion models ({registry!r})",
                ("model", "latest", "tags", "revisions", "updated"),
                [(r.uri, r.latest or "-", ", ".join(t for t in sorted(r.tags) if t != "latest") or "-",
                  str(r.revisions) if r.revisions is not None else "-", r.updated or "-")
                 for r in rows])
    if not rows:
        console.print(f"no models yet in {registry!r}: publish one with `fashion push BUNDLE "
                      "NAME` (FASHION_HOME chooses the local registry's folder).", highlight=False)


def _local(registry_name: str | None, value: str) -> tuple[Any, str, str | None]:
    """The local registry, model name and revision of a command that only the local one has."""
    scheme, name, revision = _target(value, registry_name)
    if scheme != "local":
        raise click.UsageError(f"{value}: this command works on the local registry only; on the "
                               "Hub use the Hub's own tools (huggingface-cli, the web page)")
    return _registry("local", None), name, revision


@click.command("tag")
@click.argument("model")
@click.argument("tag")
@_registry_option
def tag_command(model: str, tag: str, registry_name: str | None) -> None:
    """Point TAG at a revision of the local registry: MODEL is name@revision (id, id prefix or
    tag; default latest)."""
    registry, name, revision = _local(registry_name, model)
    tagged = registry.tag(name, revision or "latest", tag)
    click.echo(f"{tagged.uri} tags: {', '.join(tagged.tags)}")


@click.command("delete")
@click.argument("model")
@_registry_option
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
def delete_command(model: str, registry_name: str | None, yes: bool) -> None:
    """Delete one revision (name@revision) of the local registry; its tags go with it and
    latest moves to the newest revision left. Free the space with `fashion gc`."""
    registry, name, revision = _local(registry_name, model)
    if not revision:
        raise click.UsageError(f"name the revision to delete: {name}@REVISION (see `fashion models "
                               f"{name}`)")
    if not yes:
        click.confirm(f"delete {name}@{revision}?", abort=True)
    dropped = registry.delete(name, revision)
    click.echo(f"deleted {name}@{revision}" + (f" (tags removed: {', '.join(dropped)})" if dropped else ""))


@click.command("gc")
def gc_command() -> None:
    """Remove stored files of the local registry that no revision uses any more."""
    from fashion.registry.local import LocalRegistry

    removed, freed = LocalRegistry().gc()
    click.echo(f"removed {removed} unused file(s), {freed / 1e6:.1f} MB freed")


@click.command("show")
@click.argument("uri")
@_registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole fashion.json index.")
@_endpoint_option
def show_command(uri: str, registry_name: str | None, as_json: bool, endpoint: str | None) -> None:
    """Show a model's revision, parent, attributes, components, metrics and provenance.

    URI is a bundle folder, hf://org/name[@rev], local://name[@rev] or a registry name (like
    `fashion predict`; --registry chooses the registry, default local). A folder or a local
    revision is verified (every file against its sha256): a damaged one is shown, then the
    command exits 1 saying what is damaged and how to repair it."""
    revision_line = ""
    folder: Path | None = None
    parsed: BundleIndex | None = None
    damage: str | None = None
    if parse_uri(uri).scheme == "path" and Path(uri).is_dir():
        folder = Path(uri)
    else:
        scheme, name, revision = _target(uri, registry_name)
        registry = _registry(scheme, endpoint)
        if scheme == "local":
            resolved = registry.list_revisions(name)
            folder = registry.fetch(name, revision, verify=False)  # refuses an edited index
            wanted = folder.name
            tags = next((r.tags for r in resolved if r.id == wanted), [])
            revision_line = f"revision local://{name}@{wanted}" + (f" (tags: {', '.join(tags)})" if tags else "")
            problem = registry.check_revision(name, wanted)
            if problem is not None:
                damage = (f"local://{name}@{wanted} is damaged: {problem}. Loading it is refused; "
                          "run `fashion doctor --repair` to set it aside, then publish the bundle "
                          f"again (`fashion push BUNDLE {name}`)")
        else:
            index = registry.show(name, revision)
            revision_line = f"revision {scheme}://{name}@{revision or 'main'}"
            parsed = parse_index(index, f"{scheme}://{name}/{INDEX_NAME}", f"{scheme}://{name}")
            if not as_json:
                index = parsed.model_dump(mode="json")
    if folder is not None:
        parsed = read_index(folder)
        index = parsed.model_dump(mode="json")
        if as_json:  # the file as it is
            index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
        if not revision_line:  # a folder (a local revision was checked above)
            try:
                verify_bundle(folder, parsed)
            except BundleError as exc:
                damage = str(exc)
    if as_json:
        click.echo(json.dumps(index, indent=2))
        if damage:
            raise BundleError(damage)
        return
    console.print(f"[bold]{uri}[/]  format {index.get('format_version')}, "
                  f"fashion-sdk {index.get('sdk_version')}", soft_wrap=True)
    if revision_line:
        console.print(revision_line, highlight=False, soft_wrap=True)
    parent = index.get("provenance", {}).get("parent")
    console.print(f"parent {parent or '- (trained from scratch or from backbones)'}",
                  highlight=False, soft_wrap=True)
    from fashion._util.tables import print_table

    metrics = index.get("metrics", {})
    rows = []
    for name, a in index.get("attributes", {}).items():
        shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in metrics.get(name, {}).items()
                          if not isinstance(v, (list, dict)))
        rows.append((name, str(len(a["labels"])), a["head"], str(a["threshold"]), shown or "-"))
    print_table(console, "attributes", ("attribute", "labels", "head", "threshold", "metrics"), rows)
    print_table(console, "components", ("path", "name", "distribution", "fingerprint"), [
        (path, c["name"], f"{c['distribution']} {c.get('version') or ''}".strip()
         if c.get("distribution") else "-", c["fingerprint"])
        for path, c in index.get("components", {}).items()])
    from fashion.predict.gate import print_verdict

    if parsed is not None and parsed.optimizations_problem:
        console.print(f"optimizations: {parsed.optimizations_problem}", highlight=False, soft_wrap=True)
    else:
        print_verdict(console, index.get("optimizations", {}))
    datasets = index.get("provenance", {}).get("datasets", [])
    for d in datasets:
        console.print(f"dataset {d.get('name', '?')}: {d.get('rows', '?')} rows")
    if damage:
        console.print("integrity: DAMAGED", style="bold red")
        raise BundleError(damage)
    if folder is not None and parsed is not None:
        console.print(f"integrity: ok ({len(parsed.files)} files match their sha256)", highlight=False)


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
    attributes = ", ".join(read_index(path).attributes)
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
    "delete_command",
    "doctor_command",
    "gc_command",
    "models_command",
    "pull_command",
    "push_command",
    "show_command",
    "tag_command",
]
