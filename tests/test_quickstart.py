"""docs/quickstart.md runs as written: its Python blocks and its predict/models commands, on a
tiny model published as `fashion-demo` and a catalog folder laid out like the demo's."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from fashion.registry import LocalRegistry, save_bundle
from tests.tiny_model import image, make_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"
RUNNABLE = ("fashion predict", "fashion models")
PRELUDE = ("from fashion.contract.manager import register_plugin; from tests import tiny_plugin; "
           "register_plugin(tiny_plugin, name='tests.tiny_plugin')\n")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_quickstart_blocks_run(tiny, tmp_path, fashion_home, monkeypatch):
    LocalRegistry().publish(save_bundle(make_model(0), tmp_path / "bundle"), "fashion-demo")
    images = tmp_path / "fashion-demo" / "catalog" / "images"
    images.mkdir(parents=True)
    image("red").save(images / "p00003_0.png")
    (tmp_path / "fashion-demo" / "catalog" / "categories").mkdir()
    (tmp_path / "fashion-demo" / "catalog" / "categories" / "test.csv").write_text(
        "id,images,title\np1,../images/p00003_0.png,Red dress\np2,,Blue shirt\n")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}

    python = _blocks("python")
    assert python, "docs/quickstart.md has no Python block"
    for code in python:
        result = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True,
                                text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "color" in result.stdout and "missing" in result.stdout

    commands = [line.split("#")[0].strip() for block in _blocks("bash")
                for line in block.splitlines() if line.startswith(RUNNABLE)]
    assert len(commands) == 2, commands
    for command in commands:
        result = _fashion(shlex.split(command)[1:], env)
        assert result.returncode == 0, command + "\n" + result.stderr[-3000:]
    again = _fashion([*shlex.split(commands[0])[1:], "--overwrite"], env)
    assert "2 rows in = 2 predicted + 0 rejected" in again.stdout, again.stdout + again.stderr


def _fashion(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `fashion` command with the tiny plugin registered (it stands in for the backbones)."""
    code = PRELUDE + f"from fashion.cli import main; main({args!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
