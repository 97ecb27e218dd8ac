"""Shared fixtures: a tiny test plugin, an isolated FASHION_HOME, quiet threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Third-party entry points stay out of the suite unless a test asks for them.
os.environ.setdefault("FASHION_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests import tiny_plugin  # noqa: E402

torch.set_num_threads(int(os.environ.get("FASHION_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def fashion_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "fashion-home"
    monkeypatch.setenv("FASHION_HOME", str(home))
    return home


@pytest.fixture
def tiny() -> Iterator[object]:
    """Register the tiny test plugin (tiny_image, tiny_text, tiny_head...) for one test."""
    from fashion.contract.manager import register_plugin, unregister_plugin

    register_plugin(tiny_plugin, name="tests.tiny_plugin")
    try:
        yield tiny_plugin
    finally:
        unregister_plugin(name="tests.tiny_plugin")
