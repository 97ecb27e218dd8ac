"""The one guard on the paths a command writes: :func:`check_output_paths`.

Every command that writes (``fashion predict``, ``audit``, ``review``, ``calibrate``,
``export``/``optimize``, the Ray engine, embedding) calls it with what it reads and what it
writes, before it reads or writes anything:

- an output is never an input, never inside an input folder (a bundle) and, for a folder,
  never contains an input;
- two outputs of one command are never the same path, nor one inside the other;
- a file output is not a folder and a folder output is not a file;
- a "new folder" output (a bundle ``--out``) does not exist yet (an empty folder is accepted:
  nothing in it can be lost).

Paths are compared resolved (symlinks, ``./x`` against ``x``, ``..``) and, where both exist,
with :func:`os.path.samefile`, which also catches hard links and one file reached through two
spellings on a case-insensitive filesystem. What a command does with an existing output file
(replace it, continue it, refuse it) is its own rule, applied after this guard.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from fashion.errors import ConfigError

PathLike = str | os.PathLike[str]


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file or folder (resolved, then by inode where both exist)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist (yet)
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(child: Path, folder: Path) -> bool:
    """Whether ``child`` lies strictly inside ``folder`` (resolved; by inode for existing parents)."""
    real_child, real_folder = Path(os.path.realpath(child)), Path(os.path.realpath(folder))
    if real_child != real_folder and real_child.is_relative_to(real_folder):
        return True
    if not folder.is_dir():
        return False
    return any(_same(parent, folder) for parent in Path(os.path.abspath(child)).parents
               if parent.exists())


def _overlap(a: Path, b: Path) -> str | None:
    """How two paths overlap: ``"is"`` (the same), ``"inside"`` (a in b), ``"contains"`` (b in a)."""
    if _same(a, b):
        return "is"
    if _inside(a, b):
        return "inside"
    if _inside(b, a):
        return "contains"
    return None


def check_output_paths(
    inputs: Iterable[PathLike] | Mapping[str, PathLike],
    outputs: Mapping[str, PathLike] | None = None,
    *,
    folders: Mapping[str, PathLike] | None = None,
    new_folders: Mapping[str, PathLike] | None = None,
) -> None:
    """Refuse (:class:`~fashion.errors.ConfigError`) outputs that would overwrite what is read.

    ``inputs``: every file or folder the command reads (manifests, a bundle folder); a mapping
    names each for the message (``{"input manifest": path}``), a list says "input" or "input
    folder".
    ``outputs``: the files it writes, by the flag that names them (``{"--out": path}``).
    ``folders``: folders it writes into, which may exist (a Parquet part folder, plots).
    ``new_folders``: folders it creates, which must not exist yet or be empty (a bundle).
    See the module docstring for the rules.
    """
    sources = ([(label, Path(p)) for label, p in inputs.items()] if isinstance(inputs, Mapping)
               else [("input folder" if Path(p).is_dir() else "input", Path(p)) for p in inputs])
    files = {name: Path(p) for name, p in (outputs or {}).items()}
    dirs = {name: Path(p) for name, p in (folders or {}).items()}
    new = {name: Path(p) for name, p in (new_folders or {}).items()}
    for name, path in files.items():
        if path.is_dir():
            raise ConfigError(f"{name} {path} is a directory; give a file path (a file inside "
                              "it, or another name).")
    for name, path in {**dirs, **new}.items():
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{name} {path} is a file; give a folder path.")
    for name, path in {**files, **dirs, **new}.items():
        for label, source in sources:
            how = _overlap(path, source)
            if how is None:
                continue
            where = {"is": "is the", "inside": "is inside the", "contains": "contains the"}[how]
            raise ConfigError(f"{name} {path} {where} {label} {source}; writing there would "
                              "destroy what the command reads. Choose a path outside every input.")
    for name, path in new.items():
        if path.is_dir() and any(path.iterdir()):
            raise ConfigError(f"{name} {path} already exists and is not empty; {name} is always a "
                              "new folder (nothing in it is replaced). Choose a new path.")
    named = list({**files, **dirs, **new}.items())
    for i, (first, a) in enumerate(named):
        for second, b in named[i + 1:]:
            how = _overlap(a, b)
            if how is not None:
                kind = "file" if first in files and second in files else "path"
                relation = f"are the same {kind}" if how == "is" else "overlap (one is inside the other)"
                raise ConfigError(f"{first} {a} and {second} {b} {relation}; each output needs a "
                                  "path of its own.")


__all__ = ["check_output_paths"]
