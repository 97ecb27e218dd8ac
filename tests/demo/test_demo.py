"""`fashion demo --small`: the whole story end to end, as the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = shutil.which("fashion", path=str(Path(sys.executable).parent))


@pytest.mark.slow
def test_small_demo_runs_end_to_end(tmp_path, fashion_home):
    out = tmp_path / "demo"
    result = subprocess.run(
        [SCRIPT, "demo", "--small", "--out", str(out)], capture_output=True, text=True,
        env={**os.environ, "FASHION_HOME": str(fashion_home), "COLUMNS": "120"}, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "demo-result.json").read_text())
    metrics = summary["test_metrics"]
    assert set(metrics) == {"category", "color", "pattern", "style", "sleeve_length"}
    for attribute, m in metrics.items():
        chance = 1 / len(m["labels"])
        assert m["accuracy"] > 1.2 * chance, (attribute, m["accuracy"], chance)
    assert summary["gate"]["passed"] is True
    assert len(summary["published"]) == 2 and len(summary["predictions"]) == 6
    assert summary["ablation"]["pattern_macro_f1_full_only"] >= 0
    report = (out / "report" / "report.md").read_text()
    assert "## Test metrics" in report and "training_curves.png" in report
    assert (out / "report" / "training_curves.png").stat().st_size > 0
    assert list((out / "report").rglob("confusion_*.png"))
    assert 'Predictor.from_pretrained("local://fashion-demo@latest")' in result.stdout
    modalities = summary["modalities"]
    assert len(modalities) == 2 and all(set(m) == {"images + text", "text only", "image only"}
                                        for m in modalities.values())
    assert "## Modality dropout" in report and "text only" in report
    assert "## add-attribute gate" in report and "## Example predictions" in report
    assert report.count("<img src=") >= 6
    for src in (line.split('<img src="', 1)[1].split('"', 1)[0] for line in report.splitlines() if "<img src=" in line):
        assert (out / "report" / src).is_file(), src
    # the catalog's deliberately bad rows are reported once, by the first training run
    warned = [line for line in (result.stdout + result.stderr).splitlines() if "rows read" in line]
    assert len(warned) == len(set(warned)), warned
    # the base bundle's card: its real name and held-out test metrics
    card = (out / "runs" / "base" / "bundle" / "README.md")
    card_text = card.read_text() if card.is_file() else ""
    assert "local://fashion-demo" in card_text and "test" in card_text.lower()
    # The closing snippet, pasted as printed into `python` in a fresh shell where FASHION_HOME
    # is unset: it names the demo's registry folder itself and predicts a real catalog image.
    snippet = result.stdout.split("(paste into `python`):\n", 1)[1]
    assert "photo.jpg" not in snippet and "/catalog/images/" in snippet
    assert "local://fashion-demo@" in result.stdout.split("model with sleeve_length:", 1)[1]
    env = {k: v for k, v in os.environ.items() if k != "FASHION_HOME"}
    pasted = subprocess.run([sys.executable, "-i"], input=snippet, capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert pasted.returncode == 0 and "Traceback" not in pasted.stderr, pasted.stderr[-3000:]
    assert "'sleeve_length'" in pasted.stdout and "'label'" in pasted.stdout, pasted.stdout[-2000:]
    models = subprocess.run([SCRIPT, "models"], capture_output=True, text=True, check=True,
                            env={**os.environ, "FASHION_HOME": str(fashion_home), "COLUMNS": "200"})
    assert "fashion-demo" in models.stdout
