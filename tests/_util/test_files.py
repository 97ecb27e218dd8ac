"""Shared file helpers: atomic writes with normal permissions, sha256."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from fashion._util.files import atomic_write_bytes, atomic_write_text, sha256_file
from fashion.model.taxonomy import Taxonomy
from fashion.model.taxonomy_files import save_project_taxonomy


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path, umask_022):
    path = atomic_write_text(tmp_path / "a" / "file.json", "{}\n")
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert [p.name for p in path.parent.iterdir()] == ["file.json"]  # no temporary file left


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "f.bin", b"old")


    with pytest.raises(TypeError):
        atomic_write_bytes(path, 42)  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_sha256_file(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "x").write_bytes(data)
    assert sha256_file(tmp_path / "x") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["fashion-attributes.json", "attributes.toml"])
def test_a_scaffolded_project_file_is_readable_by_the_team(tmp_path, umask_022, name):
    path = save_project_taxonomy(tmp_path / name, Taxonomy(name="fit", labels=["slim", "regular"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
