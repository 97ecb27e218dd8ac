"""Format 4: ``index_sha256`` covers fashion.json. Written by every writer, checked on every read;
bundles of formats 1-3 (no hash) load as before; a read of a model whose publish stopped before
its tags finishes the publish."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fashion import BundleError
from fashion.errors import ModelNotFoundError
from fashion.predict.artifacts import update_bundle
from fashion.registry import load_bundle, read_index, save_bundle
from fashion.registry.bundle_format import FORMAT_VERSION, index_digest
from fashion.registry.local import LocalRegistry

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bundle-0.1.0" / "bundle"


def _raw(folder: Path) -> dict:
    return json.loads((folder / "fashion.json").read_text(encoding="utf-8"))


def test_every_writer_signs_the_index(tiny_model, tmp_path):
    folder = save_bundle(tiny_model, tmp_path / "bundle")
    raw = _raw(folder)
    assert FORMAT_VERSION == 4 and raw["format_version"] == 4
    assert list(raw)[-1] == "index_sha256" and raw["index_sha256"] == index_digest(raw)
    again = save_bundle(tiny_model, tmp_path / "again")  # equal bundles: equal index bytes
    assert (again / "fashion.json").read_bytes() == (folder / "fashion.json").read_bytes()

    from fashion.predict.gate import GateReport, PathScore

    score = PathScore("torch:int8", {"color": 1.0}, {"color": 1.0}, {"color": 0.0}, passed=True)
    update_bundle(folder, gate=GateReport({"color": 1.0}, [score], 0.5, [], 4).verdict())
    raw = _raw(folder)
    assert raw["optimizations"]["gate"]["validated"] == ["torch:int8"]
    assert raw["index_sha256"] == index_digest(raw)
    assert read_index(folder).optimizations_problem is None


def test_a_writer_never_records_what_readers_would_set_aside(tiny_model, tmp_path):
    folder = save_bundle(tiny_model, tmp_path / "bundle")
    before = (folder / "fashion.json").read_bytes()
    with pytest.raises(BundleError, match="refusing to record optimizations.*gate.max_loss"):
        update_bundle(folder, gate={"validated": ["torch:int8"], "refused": []})
    assert (folder / "fashion.json").read_bytes() == before


def test_a_bundle_without_an_index_hash_loads_as_before(tiny, tmp_path):
    bundle = shutil.copytree(FIXTURE, tmp_path / "old")
    raw = _raw(bundle)
    assert raw["format_version"] == 3 and "index_sha256" not in raw
    assert load_bundle(bundle).index.index_sha256 is None


def test_signing_an_old_bundle_makes_it_format_4(tiny, tmp_path):
    bundle = shutil.copytree(FIXTURE, tmp_path / "old")
    from fashion.predict.gate import GateReport, PathScore

    score = PathScore("torch:bf16", {"color": 1.0}, {"color": 1.0}, {"color": -2.0}, passed=False)
    update_bundle(bundle, gate=GateReport({"color": 1.0}, [score], 0.5, [], 4).verdict())
    raw = _raw(bundle)
    assert raw["format_version"] == 4 and raw["index_sha256"] == index_digest(raw)
    raw["attributes"]["color"]["labels"].reverse()
    (bundle / "fashion.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match="no longer matches its index_sha256"):
        load_bundle(bundle)


def test_a_read_with_no_latest_replays_the_pending_journal(tiny_model, tmp_path):
    folder = save_bundle(tiny_model, tmp_path / "bundle")
    registry = LocalRegistry()
    revision = registry.publish(folder, "shoes").id
    (registry.root / "models" / "shoes" / "tags.json").unlink()  # as before the tags were moved
    journal = registry.root / "models" / "shoes" / f".pending-{revision}.json"
    journal.write_text(json.dumps({"latest": revision}))
    assert registry.fetch("shoes").name == revision and not journal.exists()
    assert registry._read_tags("shoes") == {"latest": revision}
    (registry.root / "models" / "shoes" / "tags.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"no 'latest' tag.*fashion doctor --repair"):
        registry.fetch("shoes")
    assert registry.fetch("shoes", revision).name == revision  # a named revision still reads


def test_show_of_a_hub_model_checks_its_index(tiny_model, tmp_path, hub):
    from click.testing import CliRunner

    from fashion.cli.registry import show_command
    from fashion.registry.hub import HubRegistry

    folder = save_bundle(tiny_model, tmp_path / "bundle")
    HubRegistry().publish(folder, "team/shoes", tag="v1")
    shown = CliRunner().invoke(show_command, ["hf://team/shoes@v1"])
    assert shown.exit_code == 0 and "format 4" in shown.output, shown.output
    assert "integrity" not in shown.output  # the files were not downloaded, so not claimed
