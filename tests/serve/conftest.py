"""Fixtures for the server tests: a tiny bundle that uses the real croppers (full, center, box),
a real ``fashion serve`` subprocess on a free loopback port, and a small HTTP client."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

SERVE_SPEC: dict[str, Any] = {
    "views": {
        "full": {"name": "full", "options": {"size": 32}},
        "center": {"name": "center", "options": {"size": 32}},
        "box": {"name": "box", "options": {"size": 32}},
    },
    "backbones": {
        "image": {"name": "tiny_image", "views": ["full", "center", "box"]},
        "text": {"name": "tiny_text"},
    },
    "fusion": {"name": "tiny_concat"},
    "attributes": {
        "color": {"labels": ["red", "blue"], "head": {"name": "tiny_head"}},
        "category": {"labels": ["dress", "shirt", "pants"], "head": {"name": "tiny_head"}},
    },
}


def photo(color: str = "red", size: tuple[int, int] = (120, 90), fmt: str = "PNG") -> bytes:
    """A product-on-white photo: a colored garment off center on a white background."""
    image = Image.new("RGB", size, "white")
    w, h = size
    image.paste(Image.new("RGB", (w // 3, h // 2), color), (w // 2, h // 4))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return str(self.json()["error"]["message"])


class Server:
    """``fashion serve`` in a subprocess (the tiny test plugin registered), on a free port."""

    def __init__(self, bundle: Path, log: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = log
        command = [sys.executable, "-m", "tests.serve.server_main", "serve", str(bundle),
                   "--port", str(self.port), "--log-level", "warning", *args]
        full_env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1",
                    "OMP_NUM_THREADS": os.environ.get("FASHION_TEST_THREADS", "2"), **(env or {})}
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=self._log_file,
                                     stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if self.request("GET", "/readyz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not become ready:\n{self.output()}")

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None,
                timeout: float = 60.0) -> Reply:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        sent = dict(headers or {})
        if isinstance(body, (dict, list)):
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained tiny model with the real full/center/box croppers, saved as a bundle."""
    from fashion.contract.manager import register_plugin, unregister_plugin
    from fashion.registry import save_bundle
    from tests import tiny_plugin
    from tests.tiny_model import make_model

    register_plugin(tiny_plugin, name="tests.tiny_plugin")
    try:
        model = make_model(0, spec=SERVE_SPEC)
        return save_bundle(model, tmp_path_factory.mktemp("serve") / "bundle",
                           metrics={"color": {"accuracy": 1.0}})
    finally:
        unregister_plugin(name="tests.tiny_plugin")


@pytest.fixture
def tiny_registered() -> Iterator[None]:
    from fashion.contract.manager import register_plugin, unregister_plugin
    from tests import tiny_plugin

    register_plugin(tiny_plugin, name="tests.tiny_plugin")
    try:
        yield
    finally:
        unregister_plugin(name="tests.tiny_plugin")


def start(bundle: Path, tmp_path_factory: pytest.TempPathFactory, *args: str,
          env: Mapping[str, str] | None = None) -> Server:
    return Server(bundle, tmp_path_factory.mktemp("log") / "server.log", *args, env=env)
