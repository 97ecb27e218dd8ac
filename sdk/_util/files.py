"""File helpers every part of the SDK shares: atomic writes and file hashes.

Use these instead of writing your own:

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: write a temporary file in the target's
  folder, flush it to disk, then ``os.replace`` it over the target, so a reader sees the old file
  or the new one, never half of one. The file gets the permissions a plain ``open()`` would give
  it (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.
- :func:`atomic_writer`: the same as a context manager yielding the temporary path, for writers
  that want a path (``safetensors.torch.save_file``, ``torch.save``).
- :func:`sha256_file`: the hex sha256 of a file, read in 1 MiB blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_BLOCK = 1 << 20


def _umask() -> int:
    """The process umask: from /proc on Linux, else by setting it and setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    ``mode`` (minus the process umask) is applied to the new file. On an exception the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode & ~_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int = 0o666) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring). Returns ``path``."""
    path = Path(path)
    with atomic_writer(path, mode=mode) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(
    path: str | Path, text: str, *, encoding: str = "utf-8", mode: int = 0o666
) -> Path:
    """Write ``text`` to ``path`` atomically (see the module docstring). Returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding), mode=mode)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link ``source`` at ``target`` (its folder created), or copy it where the filesystem
    has no hard links (a copy is still correct)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer", "link_or_copy", "sha256_file"]
