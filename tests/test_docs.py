"""Meta-tests: every hook is documented and tested; every CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from fashion.cli import cli, cli_reference
from fashion.cli.reference import plugin_examples
from fashion.contract.kinds import HOOKS
from fashion.contract.manager import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]


def test_every_hook_is_a_spec_and_documented():
    specs = {name for name in dir(get_plugin_manager().hook) if name.startswith("register_")}
    assert specs == set(HOOKS)
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert f"### `{hook}(" in docs, f"docs/plugins.md has no section for {hook}"


def test_hook_examples_in_the_docs_are_the_docstrings():
    page = (ROOT / "docs" / "plugins.md").read_text()
    marked = set(re.findall(r"<!-- example: (register_\w+) ", page))
    assert marked == set(HOOKS), "every hook section shows its docstring's example"
    assert page == plugin_examples(page), "docs/plugins.md is stale: run `make docs`"


def test_every_hook_has_a_test():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for hook in HOOKS:
        assert re.search(rf"def test_{hook}\w*\(", sources), f"no test named test_{hook}*"


def test_cli_reference_is_generated_from_help():
    reference = (ROOT / "docs" / "cli.md").read_text()
    for name in cli.commands:
        assert f"## `fashion {name}`" in reference, f"docs/cli.md lacks `fashion {name}`"
    assert reference == cli_reference(), "docs/cli.md is stale: run `make docs`"
