"""fashion index build/add/remove and fashion similar, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.search.conftest import photo_manifest, random_vectors


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_index_commands(tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    a = random_vectors(tmp_path / "a.parquet", 120)
    b = random_vectors(tmp_path / "b.parquet", 30, seed=2, start=120)
    ix = tmp_path / "ix"
    cli_main(["index", "build", str(a), "--out", str(ix), "--hnsw-threshold", "140", "--m", "8"])
    assert _lines(capsys.readouterr().out)[0]["kind"] == "flat"
    cli_main(["index", "add", str(ix), str(b)])
    out = capsys.readouterr().out
    assert out.startswith("added 30;") and '"kind": "hnsw"' in out and '"m": 8' in out
    cli_main(["index", "remove", str(ix), "v3", "v4", "zzz"])
    assert capsys.readouterr().out.startswith("removed 2 of 3 ids (1 not in the index)")
    cli_main(["similar", str(ix), "--id", "v10", "-k", "5", "--where", "color=black", "--explain"])
    lines = _lines(capsys.readouterr().out)
    assert "plan" in lines[0] and len(lines) == 6
    assert all(h["attributes"]["color"]["label"] == "black" and h["id"] != "v10" for h in lines[1:])
    with pytest.raises(SystemExit):
        cli_main(["similar", str(ix), "--id", "v10", "--where", "colour=black"])
    assert "no attribute 'colour'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["similar", str(ix), "--id", "v3"])  # removed
    assert "no product 'v3'" in capsys.readouterr().err
    other = random_vectors(tmp_path / "o.parquet", 5, revision="r2")
    with pytest.raises(SystemExit):
        cli_main(["index", "add", str(ix), str(other)])
    assert "model revision r2" in capsys.readouterr().err


def test_similar_by_photo(tiny: object, bundle: Path, tmp_path: Path, cli_main: Any,
                          capsys: pytest.CaptureFixture[str]) -> None:
    manifest = photo_manifest(tmp_path / "photos", n=10)
    cli_main(["embed", str(bundle), str(manifest), "--out", str(tmp_path / "v.parquet")])
    cli_main(["index", "build", str(tmp_path / "v.parquet"), "--out", str(tmp_path / "ix")])
    capsys.readouterr()
    cli_main(["similar", str(tmp_path / "ix"), "--image", str(tmp_path / "photos" / "3.png"),
              "--title", "blue dress 3", "-k", "3"])
    hits = _lines(capsys.readouterr().out)
    assert hits[0]["id"] == "p3" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    cli_main(["similar", str(tmp_path / "ix"), "--id", "p3", "-k", "4", "--change", "color=red"])
    hits = _lines(capsys.readouterr().out)
    assert hits and all(h["attributes"]["color"]["label"] == "red" and "rank" in h for h in hits)
