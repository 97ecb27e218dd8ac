"""Listing the Hub registry fails at once, with what to do, when the Hub cannot be reached."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from fashion.errors import RegistryError
from fashion.registry.hub import HubRegistry, endpoint_unreachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_listing_an_unreachable_hub_says_so_without_retrying(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    assert endpoint_unreachable(endpoint, 2.0) is not None
    registry = HubRegistry(endpoint=endpoint)
    for call in (registry.list_models, lambda: registry.list_revisions("org/shop")):
        with pytest.raises(RegistryError, match=r"cannot be reached .*HF_ENDPOINT.*--registry local"):
            call()


def test_listing_with_offline_mode_on_is_refused_before_any_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RegistryError, match="HF_HUB_OFFLINE"):
        HubRegistry(endpoint="http://127.0.0.1:9").list_models()


def test_the_models_command_reports_an_unreachable_hub_in_one_line():
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
           "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run([sys.executable, "-m", "fashion", "models", "--registry", "hf"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "cannot be reached" in result.stderr and "Traceback" not in result.stderr
