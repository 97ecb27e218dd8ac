"""``fashion serve`` on the command line: settings refused with one line, the missing extra named."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fashion.cli import cli
from fashion.errors import ConfigError, MissingExtraError
from fashion.serve import make_config, require_serve_extras
from tests.serve.conftest import ROOT

SCRIPT = str(Path(sys.executable).with_name("fashion"))


def test_serve_is_a_command_of_the_cli_like_the_others() -> None:
    from fashion.cli.serve import serve_command
    from fashion.contract.manager import DEFAULT_PLUGINS

    assert cli.commands["serve"] is serve_command
    assert not any(name.startswith("fashion.cli") for name in DEFAULT_PLUGINS)


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"needs fastapi; install the serve extra: pip install 'fashion-sdk\[serve\]'"):
        require_serve_extras()


def test_unknown_runtime_and_bad_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown runtime 'onnx'; use one of torch, onnxruntime"):
        make_config(model="m", runtime="onnx")
    with pytest.raises(ConfigError, match="precision 'bf16' is not available with runtime onnxruntime"):
        make_config(model="m", runtime="onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match="raise FASHION_MAX_IMAGE_PIXELS too"):
        make_config(model="m", max_image_pixels=10**12)
    with pytest.raises(ConfigError, match="top_k 50 is above max_top_k 20"):
        make_config(model="m", top_k=50)


def test_missing_api_key_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASHION_NO_SUCH_KEY", raising=False)
    config = make_config(model="m", api_key_env="FASHION_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="export FASHION_NO_SUCH_KEY="):
        config.api_key()


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "/no/such/bundle"], "Error:"),
    (["serve", "m", "--runtime", "onnxruntime", "--precision", "bf16"],
     "precision 'bf16' is not available with runtime onnxruntime"),
    (["serve", "m", "--api-key-env", "FASHION_NO_SUCH_KEY"], "FASHION_NO_SUCH_KEY"),
])
def test_installed_script_reports_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FASHION_NO_SUCH_KEY"}
    result = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_onnxruntime_without_an_export_says_how_to_make_one(bundle: Path) -> None:
    """``--runtime onnxruntime`` reaches the Predictor: a bundle without an ONNX export is one
    line naming ``fashion export``, before the server listens."""
    pytest.importorskip("onnxruntime")
    env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run([sys.executable, "-m", "tests.serve.server_main", "serve", str(bundle),
                             "--port", "0", "--runtime", "onnxruntime"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert "has no fp32 ONNX model" in result.stderr
    assert f"fashion export {bundle} --format onnx" in result.stderr
    assert "Traceback" not in result.stderr
