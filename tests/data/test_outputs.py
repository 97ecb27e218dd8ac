"""The output guard every writer shares: fashion.data.outputs.check_output_paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fashion.data.outputs import check_output_paths
from fashion.errors import ConfigError


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data.csv, a bundle folder M with fashion.json, a symlink and a hard link to data.csv."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("id\n1\n")
    (tmp_path / "M").mkdir()
    (tmp_path / "M" / "fashion.json").write_text("{}")
    (tmp_path / "link.csv").symlink_to(tmp_path / "data.csv")
    os.link(tmp_path / "data.csv", tmp_path / "hard.csv")
    (tmp_path / "empty").mkdir()
    return tmp_path


REFUSED = [
    ("file output is the input", {"outputs": {"--out": "data.csv"}}, "is the input data.csv"),
    ("./ spelling of the input", {"outputs": {"--out": "./data.csv"}}, "is the input"),
    ("through .. of the input", {"outputs": {"--out": "M/../data.csv"}}, "is the input"),
    ("symlink to the input", {"outputs": {"--out": "link.csv"}}, "is the input"),
    ("hard link to the input", {"outputs": {"--out": "hard.csv"}}, "is the input"),
    ("file inside the bundle", {"outputs": {"--out": "M/suspects.csv"}}, "inside the input folder M"),
    ("file output is a folder", {"outputs": {"--out": "empty"}}, "is a directory"),
    ("two outputs, one file", {"outputs": {"--out": "o.csv", "--rejects": "./o.csv"}}, "same file"),
    ("new folder is the bundle", {"new_folders": {"--out": "M"}}, "is the input folder M"),
    ("new folder inside the bundle", {"new_folders": {"--out": "M/sub"}}, "inside the input folder"),
    ("new folder contains the bundle", {"new_folders": {"--out": "."}}, "contains the input"),
    ("new folder exists", {"new_folders": {"--out": "used"}}, "already exists"),
    ("new folder is a file", {"new_folders": {"--out": "other.txt"}}, "is a file"),
    ("folder contains an input", {"folders": {"--plots": "."}}, "contains the input"),
    ("folder output overlaps a file output",
     {"outputs": {"--out": "runs/o.csv"}, "folders": {"--plots": "runs"}}, "overlap"),
]


@pytest.mark.parametrize(("kind", "paths", "match"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(kind: str, paths: dict, match: str, tree: Path) -> None:
    (tree / "used").mkdir()
    (tree / "used" / "fashion.json").write_text("{}")
    (tree / "other.txt").write_text("x")
    with pytest.raises(ConfigError, match=match):
        check_output_paths(["data.csv", "M"], **paths)


ACCEPTED = [
    ("a new file", {"outputs": {"--out": "suspects.csv"}}),
    ("an existing file that is no input", {"outputs": {"--out": "other.txt"}}),
    ("a sibling named like the bundle", {"outputs": {"--out": "M.csv"}}),
    ("a new folder", {"new_folders": {"--out": "M2"}}),
    ("an empty folder", {"new_folders": {"--out": "empty"}}),
    ("a new folder and its plots", {"new_folders": {"--out": "M2"}, "folders": {"--plots": "M2-trust"}}),
]


@pytest.mark.parametrize(("kind", "paths"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(kind: str, paths: dict, tree: Path) -> None:
    (tree / "other.txt").write_text("x")
    check_output_paths(["data.csv", "M"], **paths)


def test_named_inputs_name_the_message(tree: Path) -> None:
    with pytest.raises(ConfigError, match="--out data.csv is the input manifest data.csv"):
        check_output_paths({"input manifest": "data.csv"}, {"--out": "data.csv"})

