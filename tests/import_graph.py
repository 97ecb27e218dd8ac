"""The package's import graph, read from the sources, and the layer contracts run on it.

The ``fashion`` package is mapped from four folders (``sdk/`` and ``plugins/``, ``heads/``,
``registry/``; pyproject.toml ``package-dir``). import-linter reads a package from one folder,
so :func:`installed_layout` lays the sources out as a wheel installs them and ``lint-imports``
runs there. :func:`import_graph` counts every import: at module level, inside functions and
under ``TYPE_CHECKING`` (a lazy import is still a dependency).

``python -m tests.import_graph`` runs the contracts of pyproject.toml (``make lint-imports``,
part of ``make test``); ``--cycles`` prints the module cycles.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """``{package: folder}`` from pyproject.toml's ``package-dir``."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return {package: root / folder for package, folder in config["tool"]["setuptools"]["package-dir"].items()}


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: ``{dotted name: file}``."""
    dirs = package_dirs(root)
    modules: dict[str, Path] = {}
    for package, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if len(parts) > 1 and f"{package}.{parts[0]}" in dirs:
                continue  # a folder mapped as a package of its own
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, every import statement counted."""
    modules = source_modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                found = resolve(target) if target.split(".")[0] == "fashion" else None
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def installed_layout(dest: Path, root: Path = ROOT) -> Path:
    """Copy the package's sources into ``dest`` as a wheel lays them out; returns ``dest``."""
    dirs = package_dirs(root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, folder in sorted(dirs.items(), key=lambda item: item[0].count(".")):
        target = dest.joinpath(*package.split("."))
        shutil.copytree(folder, target, ignore=ignore, dirs_exist_ok=True)
    return dest


def lint_imports(layout: Path, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with pyproject.toml's contracts, over a layout from :func:`installed_layout`."""
    executable = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(executable), str(root / "pyproject.toml"), "--no-cache"],
        cwd=layout, capture_output=True, text=True, timeout=600,
    )


def main(argv: list[str]) -> int:
    if "--cycles" in argv:
        graph = import_graph()
        found = cycles(graph)
        print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(found)} cycles")
        for component in found:
            print("  " + " <-> ".join(component))
        return 1 if found else 0
    with tempfile.TemporaryDirectory(prefix="fashion-imports-") as tmp:
        result = lint_imports(installed_layout(Path(tmp)))
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
