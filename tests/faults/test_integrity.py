"""Bundles and the local registry: a tampered, damaged or unsafe model is refused with a clear
error on every load path; bad names and an unwritable FASHION_HOME are clear errors; `fashion
doctor` finds and repairs what killed writers and damaged files leave."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion import FashionError
from fashion.registry import save_bundle
from fashion.registry.local import LocalRegistry
from tests.faults import ledger
from tests.faults.conftest import check_error
from tests.tiny_model import make_model


@pytest.fixture(scope="module")
def bundle(plugin, tmp_path_factory) -> Path:
    return save_bundle(make_model(0), tmp_path_factory.mktemp("b") / "bundle")


def _copy(bundle: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, to))


def _load(path: Path | str) -> object:
    from fashion.registry.bundle import load_bundle

    return load_bundle(path)


def _edit_json(path: Path, change) -> None:  # noqa: ANN001
    """Edit a fashion.json and re-sign its index hash: the check under test, not the hash
    (tests/faults/test_artifacts.py), is what must refuse the edit."""
    from fashion.registry.bundle_format import index_digest

    path.chmod(0o644)
    data = json.loads(path.read_text())
    change(data)
    if "index_sha256" in data:
        data["index_sha256"] = index_digest(data)
    path.write_text(json.dumps(data))


def _swap_labels(data: dict) -> None:
    labels = data["spec"]["attributes"]["color"]["labels"]
    labels[0], labels[1] = labels[1], labels[0]


def _weights(folder: Path) -> Path:
    return next(folder.rglob("*.safetensors"))


BUNDLE_CASES = {
    "weights byte flipped": (lambda f: _flip(_weights(f)), "sha256"),
    "weights truncated": (lambda f: _weights(f).write_bytes(_weights(f).read_bytes()[:40]), "sha256"),
    "weights missing": (lambda f: _weights(f).unlink(), "missing"),
    "fashion.json not JSON": (lambda f: (f / "fashion.json").write_text("{nope"), "not valid JSON"),
    "fashion.json nested 100000 deep": (
        lambda f: (f / "fashion.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "fashion.json missing": (lambda f: (f / "fashion.json").unlink(), "not a fashion bundle"),
    "newer format version": (lambda f: _edit_json(f / "fashion.json", lambda d: d.update(
        format_version=99)), "format 99"),
    "file path escapes the bundle": (lambda f: _edit_json(f / "fashion.json", lambda d: d["files"].update(
        {"../outside": {"sha256": "0" * 64, "size": 1}})), "unsafe path"),
}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", list(BUNDLE_CASES))
def test_damaged_bundles(kind: str, bundle: Path, tmp_path: Path) -> None:
    damage, match = BUNDLE_CASES[kind]
    folder = _copy(bundle, tmp_path / "copy")
    damage(folder)
    check_error("bundle", kind, lambda: _load(folder), match)


def test_bert_options_model_outside_the_bundle(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from fashion.contract.manager import build_component

    check_error("bundle", "bert options.model outside the bundle",
                lambda: build_component("backbone", "bert", {"model": str(tmp_path)},
                                        pretrained=False), "outside the bundle")


# ------------------------------------------------------------------------------ registry


def _publish(bundle: Path, name: str = "team/shoes") -> tuple[LocalRegistry, str]:
    registry = LocalRegistry()
    return registry, registry.publish(bundle, name).id


def test_edited_revision_is_refused_on_every_read_path(bundle: Path) -> None:
    from fashion.cli.registry import pull_command

    registry, revision = _publish(bundle)
    folder = registry.fetch("team/shoes")
    _edit_json(folder / "fashion.json", _swap_labels)  # labels swapped after publishing
    for kind, call in [
        ("edited fashion.json: load", lambda: _load("local://team/shoes")),
        ("edited fashion.json: fetch", lambda: registry.fetch("team/shoes", revision)),
        ("edited fashion.json: pull", lambda: _raise(CliRunner().invoke(
            pull_command, ["local://team/shoes"]))),
    ]:
        check_error("registry", kind, call, "changed after publishing")
    try:
        _load("local://team/shoes")
    except FashionError as exc:
        assert "fashion pull" not in str(exc) and "fashion doctor --repair" in str(exc)


def _raise(result) -> None:  # noqa: ANN001
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception


def test_damaged_blob_is_not_reused_by_the_next_publish(bundle: Path, plugin) -> None:
    registry, _ = _publish(bundle, "team/a")
    blob = _weights(registry.fetch("team/a"))
    blob.chmod(0o644)
    _flip(blob)  # damages the blob too: revisions are hard links
    check_error("registry", "damaged blob: load", lambda: _load("local://team/a"), "damaged")
    registry.publish(bundle, "team/b")
    ok = _load("local://team/b") is not None
    ledger.record("registry", "damaged blob reused by a later publish", "predicted",
                  "predicted" if ok else "silent-wrong")
    report = registry.doctor(repair=True)
    assert any(f.kind == "revision" for f in report.findings), report.findings
    assert registry.doctor().ok
    _load("local://team/b")


@pytest.mark.parametrize(
    ("kind", "name", "match"),
    [("name with a trailing newline", "shoes\n", "invalid model name"),
     ("300-character name", "a" * 300, "invalid model name"),
     ("name with '--'", "a--b", "invalid model name"),
     ("name with '..'", "../x", "invalid model name"),
     ("empty name", "", "invalid model name"),
     ("three-part name", "a/b/c", "invalid model name"),
     ("tag with a trailing newline", "tag\n", "invalid tag")],
)
def test_bad_names(kind: str, name: str, match: str, bundle: Path) -> None:
    registry = LocalRegistry()
    if "tag" in kind:
        check_error("registry", kind, lambda: registry.publish(bundle, "ok", tag=name), match)
    else:
        check_error("registry", kind, lambda: registry.publish(bundle, name), match)


def test_unwritable_fashion_home(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FASHION_HOME", str(blocker / "home"))  # under a file: never writable
    check_error("registry", "unwritable FASHION_HOME", lambda: LocalRegistry().publish(bundle, "x"),
                "Set FASHION_HOME")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        monkeypatch.setenv("FASHION_HOME", str(ro))
        check_error("registry", "read-only FASHION_HOME", lambda: LocalRegistry().publish(bundle, "x"),
                    "Set FASHION_HOME")


def test_damaged_tags_file(bundle: Path) -> None:
    registry, _ = _publish(bundle, "t")
    (registry.root / "models" / "t" / "tags.json").write_text("{broken")
    check_error("registry", "damaged tags.json", lambda: registry.fetch("t"), "doctor --repair")
    assert not registry.doctor().ok
    registry.doctor(repair=True)
    assert registry.doctor().ok and registry.fetch("t").is_dir()


def test_doctor_cleans_leftovers(bundle: Path) -> None:
    from fashion.cli.registry import doctor_command

    registry, _ = _publish(bundle, "d")
    (registry.root / "tmp" / "deadbeef").mkdir(parents=True)
    (registry.root / "models" / "d" / ".tags-1234.json").write_text("{}")
    found = CliRunner().invoke(doctor_command, [])
    assert found.exit_code == 1 and "leftover" in found.output
    fixed = CliRunner().invoke(doctor_command, ["--repair"])
    assert fixed.exit_code == 0, fixed.output
    clean = CliRunner().invoke(doctor_command, [])
    ok = clean.exit_code == 0 and "0 problems" in clean.output
    ledger.record("registry", "leftover staging and temp tag files", "predicted",
                  "predicted" if ok else "silent-wrong")
    assert ok, clean.output
