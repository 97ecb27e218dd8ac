"""The CLI: in-process with CliRunner, and as the installed `fashion` script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fashion import hookimpl
from fashion.cli import cli, main
from fashion.contract.manager import register_plugin, unregister_plugin

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("fashion", path=str(Path(sys.executable).parent))


def test_plugins_json_lists_kind_distribution_and_schema(tiny):
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.output)}
    row = rows[("backbone", "tiny_image")]
    assert row["plugin"] == "tests.tiny_plugin" and "options_schema" in row


def test_plugins_table_and_kind_filter(tiny):
    result = CliRunner().invoke(cli, ["plugins", "--kind", "head"])
    assert result.exit_code == 0 and "tiny_head" in result.output
    assert "tiny_image" not in result.output


def test_register_commands_hook_adds_a_command():
    module = type(sys)("cmd_plugin")

    def register_commands(cli):
        @cli.command(name="shout")
        def shout() -> None:
            click.echo("HEY")

    module.register_commands = hookimpl(register_commands)
    register_plugin(module, name="cmd_plugin")
    try:
        group = click.Group(name="g")
        from fashion.contract.manager import get_plugin_manager

        get_plugin_manager().hook.register_commands(cli=group)
        result = CliRunner().invoke(group, ["shout"])
        assert result.output == "HEY\n"
    finally:
        unregister_plugin(name="cmd_plugin")


def test_main_turns_fashion_errors_into_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FASHION_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["make-catalog", "--help"]) if False else main(["plugins", "--kind", "gizmo"])
    assert info.value.code == 2  # click usage error
    from fashion.errors import ConfigError

    @cli.command(name="boom-test")
    def boom() -> None:
        raise ConfigError("the spec is wrong; fix field x.")

    try:
        with pytest.raises(SystemExit) as info:
            main(["boom-test"])
        assert info.value.code == 1
        err = capsys.readouterr().err
        assert "Error:" in err and "fix field x" in err and "Traceback" not in err
        monkeypatch.setenv("FASHION_DEBUG", "1")
        with pytest.raises(ConfigError):
            main(["boom-test"])
    finally:
        cli.commands.pop("boom-test")


def _run(*args: str, env: dict[str, str] | None = None, check: bool = True):
    assert SCRIPT, "the fashion console script is not installed in this environment"
    result = subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_installed_script_help_and_plugins():
    assert "plugins" in _run("--help").stdout
    assert "fashion components" in _run("plugins").stdout
    rows = json.loads(_run("plugins", "--json").stdout)
    assert all({"name", "kind", "distribution", "version"} <= set(r) for r in rows)


def test_third_party_plugin_installs_and_is_usable(tmp_path):
    """`fashion install` a real plugin distribution, see it and use it in a model.

    It is built from a copy (no build/ or *.egg-info in the tree) and installed into a temporary
    folder (pip's ``--target`` through ``PIP_TARGET``), never into the running environment.
    """
    example = tmp_path / "fashion-plugin-example"
    shutil.copytree(ROOT / "docs" / "plugins" / "fashion-plugin-example", example)
    target = tmp_path / "site"
    env = {"FASHION_DISABLE_PLUGIN_AUTOLOAD": "", "PIP_NO_BUILD_ISOLATION": "0",
           "PIP_TARGET": str(target), "PIP_NO_DEPS": "1"}
    env_no_auto = {k: v for k, v in os.environ.items() if k != "FASHION_DISABLE_PLUGIN_AUTOLOAD"}
    env_no_auto["PYTHONPATH"] = os.pathsep.join(
        [str(target), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    _run("install", "--no-cache-dir", str(example), env=env)
    assert (target / "fashion_plugin_example.py").is_file()
    source = ROOT / "docs" / "plugins" / "fashion-plugin-example"
    assert not (source / "build").exists() and not list(source.glob("*.egg-info"))
    result = subprocess.run(
        [SCRIPT, "plugins", "--json"], capture_output=True, text=True, env=env_no_auto,
        timeout=300, check=True,
    )
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["color_histogram"]["distribution"] == "fashion-plugin-example"
    assert rows["color_histogram"]["version"] == "0.1.0"
    hello = subprocess.run(
        [SCRIPT, "hello", "team"], capture_output=True, text=True, env=env_no_auto, check=True
    )
    assert hello.stdout.strip() == "hello team from fashion-plugin-example"
    # The allow-list keeps it out when it is not named.
    hidden = subprocess.run(
        [SCRIPT, "plugins", "--json"], capture_output=True, text=True,
        env={**env_no_auto, "FASHION_LOAD_PLUGINS": "something-else"}, check=True,
    )
    assert "color_histogram" not in hidden.stdout
    script = (
        "from PIL import Image\n"
        "from fashion import FashionModel\n"
        "spec = {'views': {'full': {'name': 'full', 'options': {'size': 32}}},\n"
        "        'backbones': {'image': {'name': 'color_histogram', 'views': ['full']}},\n"
        "        'fusion': {'name': 'concat'},\n"
        "        'attributes': {'color': {'labels': ['red', 'blue']}}}\n"
        "m = FashionModel(spec)\n"
        "out = m.predict([{'images': [Image.new('RGB', (50, 40), 'red')]}])\n"
        "print(m.backbones['image'].output_dim, out[0]['color'].label in ('red', 'blue'))\n"
    )
    used = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env_no_auto,
        timeout=300,
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout.split() == ["24", "True"]


def test_install_editable_needs_no_package_and_hides_pip_noise(monkeypatch, capfd):
    from fashion import cli as cli_module

    calls = []
    monkeypatch.setattr(cli_module, "_pip", calls.append)
    result = CliRunner().invoke(cli_module.cli, ["install", "-e", "./my-plugin"])
    assert result.exit_code == 0, result.output
    assert calls == [["install", "--editable", "./my-plugin"]]
    result = CliRunner().invoke(cli_module.cli, ["install"])
    assert result.exit_code != 0 and "-e PATH" in result.output
    monkeypatch.undo()
    cli_module._pip(["install", "--no-index", "--no-deps", "click"])  # real pip, already installed
    assert "Requirement already satisfied" not in capfd.readouterr().out


def test_add_attribute_is_one_function_and_no_module_shares_its_name():
    import importlib.util
    import types

    import fashion
    import fashion.cli.attributes  # noqa: F401  (the command's module, then the lazy name)
    from fashion import add_attribute

    assert callable(add_attribute) and add_attribute.__module__ == "fashion.attributes.pipeline"
    assert importlib.util.find_spec("fashion.add_attribute") is None
    assert type(fashion) is types.ModuleType  # the package is a plain module (no class swap)
