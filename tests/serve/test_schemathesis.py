"""schemathesis against ``fashion serve`` on loopback, every check on (``--checks all``), a
bounded number of examples: no server error, every status, content type, header and body as the
OpenAPI schema says, schema-violating requests refused, unauthenticated ones answered 401."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'fashion-sdk[serve]'")
pytest.importorskip("schemathesis", reason="schemathesis is in requirements-dev.txt")

from tests.serve.conftest import Server, start  # noqa: E402

KEY = "schemathesis-key"
ST = str(Path(sys.executable).with_name("st"))


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start(bundle, tmp_path_factory, "--api-key-env", "FASHION_ST_KEY", "--batch-timeout-ms", "0",
              env={"FASHION_ST_KEY": KEY})
    try:
        yield s
    finally:
        s.stop()


def test_schemathesis_finds_nothing(server: Server, tmp_path: Path) -> None:
    config = Path(__file__).with_name("schemathesis.toml")
    result = subprocess.run(
        [ST, "--config-file", str(config), "run", f"http://127.0.0.1:{server.port}/openapi.json",
         "--checks", "all", "--max-examples", "40", "--seed", "30", "--workers", "1",
         "--header", f"X-API-Key: {KEY}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "Server error" not in output and "Internal Server Error" not in output
    assert "0 generated" not in output, output[-2000:]
    assert "Traceback" not in server.output()
