"""The import-linter side of the architecture: the ``module_cycles`` contract type and helpers to
run ``lint-imports`` on the package or on an edited copy of it.

``make install`` installs the package editable in setuptools' strict mode, a tree of links laid
out as a wheel installs it, so plain ``lint-imports`` at the repository root reads the whole
package (it comes from four folders: ``sdk/``, ``plugins/``, ``heads/``, ``registry/``).
Imports are counted as grimp finds them: at module level, inside functions and under
``TYPE_CHECKING`` (a lazy import is still a dependency).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from importlinter import Contract, ContractCheck, output

ROOT = Path(__file__).resolve().parents[1]


class ModuleCyclesContract(Contract):
    """Contract type ``module_cycles``: no import cycle between any two modules of the package
    (``acyclic_siblings`` compares the children of one package at a time)."""

    type_name = "module_cycles"

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        modules = set(graph.modules)
        edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
        found = cycles(edges)
        return ContractCheck(kept=not found, warnings=[], metadata={"cycles": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for component in check.metadata["cycles"]:
            output.print_error(" <-> ".join(component), bold=False)
            output.new_line()


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


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """``{package: folder}`` from pyproject.toml's ``package-dir``."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return {package: root / folder for package, folder in config["tool"]["setuptools"]["package-dir"].items()}


def installed_layout(dest: Path, root: Path = ROOT) -> Path:
    """Copy the package's sources into ``dest`` as a wheel lays them out; returns ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, folder in sorted(package_dirs(root).items(), key=lambda item: item[0].count(".")):
        shutil.copytree(folder, dest.joinpath(*package.split(".")), ignore=ignore, dirs_exist_ok=True)
    return dest


def lint_imports(layout: Path | None = None, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with pyproject.toml's contracts: on the installed package, or on
    ``layout`` (a copy from :func:`installed_layout`, e.g. edited), which it then imports first."""
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    env = dict(os.environ)
    if layout is not None:  # lint-imports puts its working folder first on sys.path
        command.append(str(root / "pyproject.toml"))
        env["PYTHONPATH"] = str(root)  # for this contract type
    return subprocess.run(command, cwd=layout or root, env=env, capture_output=True, text=True,
                          timeout=600)


__all__ = ["ModuleCyclesContract", "cycles", "installed_layout", "lint_imports", "package_dirs"]
