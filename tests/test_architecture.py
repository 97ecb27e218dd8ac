"""The layered package stays layered: the import-linter contracts hold and do catch an upward
import, a lazy or TYPE_CHECKING one, and a cycle; small folders and modules, a docstring per
package, one definition per public name (docs/architecture.md)."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

from tests.import_graph import (
    ROOT,
    cycles,
    installed_layout,
    lint_imports,
    package_dirs,
)

MAX_MODULES_PER_FOLDER = 14
MAX_LINES_PER_MODULE = 450

# Public names that several modules define on purpose: hook implementations (one per plugin
# module), module loggers and consoles, and the lazy `create_app` of the optional serve extra.
DEFINED_IN_SEVERAL = {"log", "console", "create_app", "FORMAT_VERSION"} | {
    "register_backbones", "register_heads", "register_croppers", "register_fusions",
    "register_samplers", "register_losses", "register_commands", "register_labelling_functions",
}


def _folders() -> list[Path]:
    return sorted({p.parent for folder in package_dirs().values() for p in folder.rglob("*.py")})


def test_no_folder_holds_more_than_14_modules():
    sizes = {str(folder.relative_to(ROOT)): len(list(folder.glob("*.py"))) for folder in _folders()}
    assert {f: n for f, n in sizes.items() if n > MAX_MODULES_PER_FOLDER} == {}


def test_no_module_is_longer_than_450_lines():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
               for folder in package_dirs().values() for p in folder.rglob("*.py")}
    assert {p: n for p, n in lengths.items() if n > MAX_LINES_PER_MODULE} == {}


def test_every_package_says_what_it_owns_may_import_and_exports():
    for folder in _folders():
        init = folder / "__init__.py"
        if folder == ROOT / "sdk" or not init.exists():
            continue  # the root package's docstring introduces the library
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        where = init.relative_to(ROOT)
        assert doc, f"{where} has no docstring"
        assert "May import" in doc, f"{where}: say what the package may import"
        assert "xport" in doc, f"{where}: say what the package exports"


def test_each_public_name_is_defined_in_one_module():
    defined: dict[str, list[str]] = collections.defaultdict(list)
    for folder in package_dirs().values():
        for path in folder.rglob("*.py"):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names = [node.name]
                elif isinstance(node, ast.Assign):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    names = [node.target.id]
                else:
                    names = []
                for name in names:
                    if not name.startswith("_") and name not in DEFINED_IN_SEVERAL:
                        defined[name].append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in defined.items() if len(paths) > 1} == {}


def test_the_layer_contracts_hold():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout
    assert "Analyzed 1" in result.stdout  # the whole package was read (over 100 modules)


def test_cycles_are_strongly_connected_components():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(("module", "statement", "expected"), [
    # a lazy import from the model up to the CLI
    ("model/spec.py", "def _upward():\n    from fashion.cli import main\n", "fashion.model.spec -> fashion.cli"),
    # the core reaching into a built-in plugin
    ("trust/audit.py", "def _plugin():\n    from fashion.plugins.bert import Bert\n",
     "fashion.trust.audit -> fashion.plugins.bert"),
    # serving and add-attribute stay apart, even for type hints only
    ("serve/app.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fashion.attributes.pipeline\n",
     "fashion.serve.app -> fashion.attributes.pipeline"),
    # a lazy import that closes a cycle inside one package
    ("model/spec.py", "def _cycle():\n    import fashion.model.network\n",
     "fashion.model.network <-> fashion.model.spec"),
])
def test_the_layer_contracts_catch_a_forbidden_import(tmp_path, module, statement, expected):
    layout = installed_layout(tmp_path)
    target = layout / "fashion" / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + statement, encoding="utf-8")
    result = lint_imports(layout)
    assert result.returncode != 0
    assert expected in result.stdout

