"""The ``fashion`` command line: every command's front (parse, call, print), one module per
area (``train``, ``predict``, ``optimize``, ``trust``, ``attributes``, ``registry``, ``serve``,
``catalog``, ``demo``), and ``reference`` for the generated docs/cli.md and docs/config.md.

Errors raised on purpose (:class:`fashion.FashionError`) become one-line messages in
:func:`main`; ``FASHION_DEBUG=1`` shows the traceback instead.

May import: every layer (nothing imports it). Exports ``cli`` (the click group) and ``main``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from fashion._util.version import __version__
from fashion.contract.kinds import KINDS
from fashion.contract.manager import get_plugin_manager, list_components
from fashion.errors import FashionError

console = Console()
err_console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fashion")
def cli() -> None:
    """Product attribute models: train, publish and predict category, color, pattern, ...

    Start with `fashion demo`, or `fashion plugins` to see what is installed.
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with options schemas).")
@click.option(
    "--kind", type=click.Choice(sorted(KINDS)), help="Only this kind."
)
def plugins(as_json: bool, kind: str | None) -> None:
    """List registered components: name, kind, distribution, version."""
    rows = list_components(kind)
    if as_json:
        click.echo(json.dumps([r.describe() for r in rows], indent=2))
        return
    from fashion._util.tables import print_table

    print_table(console, "fashion components", ("name", "kind", "distribution", "version", "plugin"),
                [(r.name, r.kind, r.distribution or "-", r.version or "-", r.plugin) for r in rows])


# pip's lines that say nothing happened; `fashion install` leaves them out.
_PIP_NOISE = ("Requirement already satisfied:",)


def _pip(args: list[str]) -> None:
    """Run pip in this environment, passing its output through without the no-op lines."""
    command = [sys.executable, "-m", "pip", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    assert process.stdout is not None
    for line in process.stdout:
        if not line.startswith(_PIP_NOISE):
            click.echo(line, nl=False)
    if process.wait() != 0:
        raise click.ClickException(f"pip exited with status {process.returncode}")


@cli.command()
@click.argument("packages", nargs=-1)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade packages to the latest version.")
@click.option("-e", "--editable", help="Install a project in editable mode from this path.")
@click.option("--no-cache-dir", is_flag=True, help="Disable the pip cache.")
def install(packages: tuple[str, ...], upgrade: bool, editable: str | None, no_cache_dir: bool) -> None:
    """Install plugins with pip into the environment this `fashion` runs in.

    PACKAGES are pip requirements (fashion-plugin-x, ./folder); `-e PATH` installs a plugin
    you are writing in editable mode, with or without PACKAGES.
    """
    if not packages and not editable:
        raise click.UsageError("name a package to install (fashion install PACKAGE) or a "
                               "folder with -e PATH")
    args = ["install"]
    if upgrade:
        args.append("--upgrade")
    if no_cache_dir:
        args.append("--no-cache-dir")
    if editable:
        args.extend(["--editable", editable])
    _pip(args + list(packages))


@cli.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
def uninstall(packages: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugins from the environment this `fashion` runs in."""
    _pip(["uninstall", *packages] + (["-y"] if yes else []))


# Commands that live beside the code they drive; attached when their module is present.
_COMMAND_MODULES = (
    "fashion.cli.catalog:make_catalog_command",
    "fashion.cli.train:train_command",
    "fashion.cli.train:evaluate_command",
    "fashion.cli.registry:push_command",
    "fashion.cli.registry:pull_command",
    "fashion.cli.registry:models_command",
    "fashion.cli.registry:show_command",
    "fashion.cli.registry:tag_command",
    "fashion.cli.registry:delete_command",
    "fashion.cli.registry:gc_command",
    "fashion.cli.registry:compose_command",
    "fashion.cli.registry:doctor_command",
    "fashion.cli.predict:predict_command",
    "fashion.cli.attributes:add_attribute_command",
    "fashion.cli.demo:demo_command",
    "fashion.cli.optimize:export_command",
    "fashion.cli.optimize:optimize_command",
    "fashion.cli.trust:calibrate_command",
    "fashion.cli.trust:audit_command",
    "fashion.cli.trust:review_command",
    "fashion.cli.serve:serve_command",
    "fashion.cli.search:embed_command",
    "fashion.cli.search:index_group",
    "fashion.cli.search:similar_command",
)


def _attach_commands(group: click.Group) -> None:
    import importlib

    for target in _COMMAND_MODULES:
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # not part of this build
            raise
        command = getattr(module, attr, None)
        if command is not None:
            group.add_command(command)
    get_plugin_manager().hook.register_commands(cli=group)


_attach_commands(cli)

def cli_reference() -> str:
    """docs/cli.md: every command's --help, generated (``fashion --reference``)."""
    lines = [
        "# CLI reference",
        "",
        "Generated from `--help` by `make docs` (`fashion --reference > docs/cli.md`);",
        "a test fails when this file and the CLI disagree.",
        "",
    ]
    settings = {**cli.context_settings, "terminal_width": 100, "max_content_width": 100}
    root = click.Context(cli, info_name="fashion", **settings)
    lines += ["## `fashion`", "", "```text", cli.get_help(root), "```", ""]
    for name in sorted(cli.commands):
        # click caches each command's --help option from the first context that asked for it
        # (a CliRunner call on the bare command caches plain --help); render from a fresh copy.
        command = copy.copy(cli.commands[name])
        command._help_option = None
        ctx = click.Context(command, info_name=name, parent=root, **settings)
        lines += [f"## `fashion {name}`", "", "```text", command.get_help(ctx), "```", ""]
    return "\n".join(lines)


# Error type -> how to introduce it on one line. The first matching entry wins.
_ERROR_PREFIXES: tuple[tuple[type[BaseException], str], ...] = (
    (FashionError, "Error"),
    (KeyboardInterrupt, "Interrupted"),
)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: run the CLI, turning known errors into one line."""
    debug = os.environ.get("FASHION_DEBUG", "") not in ("", "0")
    if argv is None and sys.argv[1:] == ["--reference"]:
        click.echo(cli_reference(), nl=False)
        return None
    try:
        return cli.main(args=argv, prog_name="fashion", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("Aborted.")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BaseException as exc:  # noqa: BLE001 - the one place errors become messages
        if debug:
            raise
        for error_type, prefix in _ERROR_PREFIXES:
            if isinstance(exc, error_type):
                err_console.print(f"[bold red]{prefix}:[/] {escape(str(exc))}", highlight=False,
                                  soft_wrap=True)
                err_console.print("[dim](set FASHION_DEBUG=1 for the traceback)[/]")
                sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 1)
        raise
