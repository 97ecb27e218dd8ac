"""The public surface stays small, and nothing installs stray top-level modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import fashion

ROOT = Path(__file__).resolve().parents[1]
STRAY = ("sdk", "plugins", "heads", "registry")


def test_all_names_resolve():
    assert len(fashion.__all__) < 60
    for name in fashion.__all__:
        assert getattr(fashion, name) is not None, name


def test_wheel_holds_only_the_fashion_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("fashion_sdk-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"fashion"}
    for expected in ("fashion/contract/hookspecs.py", "fashion/plugins/__init__.py",
                     "fashion/heads/__init__.py", "fashion/registry/__init__.py", "fashion/model/taxonomies/color.json",
                     "fashion/training/__init__.py"):
        assert expected in names


def test_installed_environment_has_no_stray_modules(tmp_path):
    code = (
        "import importlib.util, sys\n"
        f"print([n for n in {STRAY!r} if importlib.util.find_spec(n) is not None])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
