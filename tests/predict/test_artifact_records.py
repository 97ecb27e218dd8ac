"""The remedy a damaged optimizations record names works: `fashion export` rebuilds the record in
place (the tampering cases themselves are tests/faults/test_artifacts.py)."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

from fashion import BundleError, Predictor
from fashion.cli import optimize as optimize_cli
from fashion.registry import save_bundle
from fashion.registry.bundle import DamagedArtifactWarning, read_index
from tests.predict.test_optimize import _labeled

pytest.importorskip("onnxruntime")


def test_export_rebuilds_a_damaged_record(tiny_model, tmp_path):
    data = _labeled(tmp_path, tiny_model)
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    runner = CliRunner()
    first = runner.invoke(optimize_cli.export_command, [str(bundle), "--data", str(data)])
    assert first.exit_code == 0, first.output
    raw = json.loads((bundle / "fashion.json").read_text())
    del raw["optimizations"]["onnx"]["fp32"]["layout"]  # an old bundle (no index hash), damaged
    raw["format_version"] = 3
    del raw["index_sha256"]
    (bundle / "fashion.json").write_text(json.dumps(raw))
    assert "onnx.fp32.layout" in (read_index(bundle).optimizations_problem or "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedArtifactWarning)
        with pytest.raises(BundleError, match="fashion optimize"):
            Predictor.from_pretrained(bundle, runtime="onnxruntime")
        again = runner.invoke(optimize_cli.export_command, [str(bundle), "--data", str(data)])
    assert again.exit_code == 0, again.output
    index = read_index(bundle)
    assert index.optimizations_problem is None and index.format_version == 4
    assert index.optimizations["gate"]["validated"] == ["onnxruntime:fp32"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedArtifactWarning)
        assert Predictor.from_pretrained(bundle, runtime="onnxruntime").predict([{"title": "red dress"}])
