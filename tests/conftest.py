"""Shared fixtures: a tiny test plugin and a briefly trained model of it, a loopback Hub, an
isolated FASHION_HOME, quiet threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Third-party entry points stay out of the suite unless a test asks for them.
os.environ.setdefault("FASHION_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests import tiny_plugin  # noqa: E402
from tests.hub_server import HubServer  # noqa: E402
from tests.mdmt_data import make_catalog  # noqa: E402
from tests.tiny_model import make_model  # noqa: E402

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


@pytest.fixture
def tiny_model(tiny: object) -> Any:
    return make_model(0)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """A loopback Hub; HF_ENDPOINT/HF_TOKEN point at it, offline mode is off, the HF cache is
    in tmp_path."""
    from huggingface_hub import constants

    server = HubServer().start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", "test-token")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def catalog(tmp_path: Path) -> dict[str, Path]:
    """``{"colors": csv path, "categories": csv path}`` under ``tmp_path/data``."""
    return make_catalog(tmp_path / "data")
