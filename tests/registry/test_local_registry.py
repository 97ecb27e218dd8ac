"""The local registry: revisions, tags, content-addressed blobs, atomic and concurrent publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.cli.registry import models_command, pull_command, push_command, show_command
from fashion.errors import ConfigError, ModelNotFoundError
from fashion.registry import LocalRegistry, get_registry, load_bundle, save_bundle
from fashion.registry.bundle import FORMAT_VERSION, read_index, sha256_file, verify_bundle
from tests.tiny_model import as_plain, products, train_briefly

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_bundles(tiny_model, tmp_path):
    """v1, and v2 = v1 with only the color head retrained."""
    v1 = save_bundle(tiny_model, tmp_path / "v1")
    tiny_model.freeze(["backbones", "croppers", "fusion"])
    train_briefly(tiny_model, ["color"], seed=5)
    v2 = save_bundle(tiny_model, tmp_path / "v2")
    return v1, v2


def test_publish_fetch_tags_and_listing(two_bundles, fashion_home):
    v1, v2 = two_bundles
    registry = LocalRegistry()
    assert registry.root == fashion_home / "registry"
    first = registry.publish(v1, "team/shoes", tag="v1", message="first")
    assert first.uri == f"local://team/shoes@{first.id}" and first.tags == ["latest", "v1"]
    assert registry.publish(v1, "team/shoes").id == first.id  # same content, same revision
    second = registry.publish(v2, "team/shoes", message="color retrained")
    assert second.id != first.id and second.tags == ["latest"]  # latest moved, v1 stayed

    assert registry.fetch("team/shoes") == registry.fetch("team/shoes", "latest")
    assert registry.fetch("team/shoes", "v1").name == first.id
    assert registry.fetch("team/shoes", second.id[:6]).name == second.id  # unique prefix
    revisions = registry.list_revisions("team/shoes")
    assert [(r.id, r.tags, r.message) for r in revisions] == [
        (first.id, ["v1"], "first"), (second.id, ["latest"], "color retrained")]
    [summary] = registry.list_models()
    assert (summary.name, summary.latest, summary.revisions) == ("team/shoes", second.id, 2)
    assert registry.show("team/shoes", "v1")["attributes"]["color"]["labels"] == ["red", "blue"]

    moved = registry.tag("team/shoes", "latest", "prod")
    assert moved.id == second.id and "prod" in moved.tags
    old = load_bundle("local://team/shoes@v1")
    new = load_bundle("local://team/shoes", revision="prod")
    assert old.uri == "local://team/shoes@v1"
    assert as_plain(old.model.predict(products())) == as_plain(load_bundle(v1).model.predict(products()))
    assert as_plain(new.model.predict(products())) == as_plain(load_bundle(v2).model.predict(products()))


def test_unchanged_files_are_stored_once(two_bundles, tmp_path):
    v1, v2 = two_bundles
    registry = LocalRegistry(tmp_path / "registry")
    first = registry.publish(v1, "shoes")
    blobs_after_first = {p.name for p in registry.blobs.iterdir()}
    second = registry.publish(v2, "shoes")
    new_blobs = {p.name for p in registry.blobs.iterdir()} - blobs_after_first

    m1, m2 = read_index(v1), read_index(v2)
    changed = {p for p in m2.files if m1.files[p].sha256 != m2.files[p].sha256}
    assert changed == {"heads/color.safetensors"}
    # only the changed head and the new index are new content
    assert new_blobs == {m2.files["heads/color.safetensors"].sha256, sha256_file(v2 / "fashion.json")}
    a, b = registry.fetch("shoes", first.id), registry.fetch("shoes", second.id)
    for rel in ("backbones/image.safetensors", "backbones/text.safetensors", "heads/category.safetensors"):
        assert os.stat(a / rel).st_ino == os.stat(b / rel).st_ino == os.stat(registry.blobs / m1.files[rel].sha256).st_ino
    assert os.stat(a / "heads/color.safetensors").st_ino != os.stat(b / "heads/color.safetensors").st_ino
    verify_bundle(a), verify_bundle(b)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_killed_publish_leaves_no_partial_revision(two_bundles, tmp_path):
    v1, _ = two_bundles
    root = tmp_path / "registry"
    code = f"""
        import os
        from fashion.registry.local import LocalRegistry
        real_link, calls = os.link, []
        def dying_link(*args, **kwargs):  # the process is killed after two files
            calls.append(args)
            if len(calls) == 3:
                os._exit(9)
            return real_link(*args, **kwargs)
        os.link = dying_link
        LocalRegistry({str(root)!r}).publish({str(v1)!r}, "shoes")
    """
    result = subprocess.run(_python(code), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    registry = LocalRegistry(root)
    assert any((root / "tmp").iterdir())  # it really died mid-way...
    assert not (root / "models" / "shoes" / "revisions").exists() or not any(
        (root / "models" / "shoes" / "revisions").iterdir())  # ...but nothing is visible
    with pytest.raises(ModelNotFoundError, match="fashion push BUNDLE shoes"):
        registry.fetch("shoes")
    revision = registry.publish(v1, "shoes")
    assert not any((root / "tmp").iterdir())  # the next publisher cleaned up
    verify_bundle(registry.fetch("shoes", revision.id))


def test_two_concurrent_publishers_both_complete(two_bundles, tmp_path):
    v1, v2 = two_bundles
    root, go = tmp_path / "registry", tmp_path / "go"
    script = """
        import json, os, sys, time
        from fashion.registry.local import LocalRegistry
        root, bundle, go = sys.argv[1:4]
        open(bundle + ".ready", "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
        print(json.dumps(LocalRegistry(root).publish(bundle, "shoes", tag=os.path.basename(bundle)).to_dict()))
    """
    procs = [subprocess.Popen([*_python(script), str(root), str(b), str(go)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for b in (v1, v2)]
    deadline = time.monotonic() + 60
    while not all(Path(f"{b}.ready").exists() for b in (v1, v2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both are imported and waiting: they publish at the same moment
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    published = [json.loads(out) for out, _ in outputs]
    registry = LocalRegistry(root)
    revisions = registry.list_revisions("shoes")
    assert {r.id for r in revisions} == {p["id"] for p in published}
    tags = json.loads((root / "models" / "shoes" / "tags.json").read_text())
    assert tags["v1"] == published[0]["id"] and tags["v2"] == published[1]["id"]
    assert tags["latest"] in tags.values()
    for r in revisions:
        verify_bundle(registry.fetch("shoes", r.id))
    assert not any((root / "tmp").iterdir())


def test_errors_say_what_to_do(two_bundles, tmp_path):
    v1, _ = two_bundles
    registry = get_registry("local", root=tmp_path / "registry")
    with pytest.raises(ModelNotFoundError, match="no model named 'shoes'.*fashion push BUNDLE shoes"):
        registry.fetch("shoes")
    registry.publish(v1, "shoes", tag="v1")
    with pytest.raises(ModelNotFoundError, match=r"no revision or tag 'v9' \(tags: latest, v1"):
        registry.fetch("shoes", "v9")
    with pytest.raises(ConfigError, match="invalid model name"):
        registry.publish(v1, "../escape")
    with pytest.raises(ConfigError, match="invalid tag"):
        registry.publish(v1, "shoes", tag="a/b")


def test_cli_push_models_show_pull(two_bundles, tmp_path):
    v1, _ = two_bundles
    runner = CliRunner()
    result = runner.invoke(push_command, [str(v1), "team/shoes", "--tag", "v1", "-m", "first"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("published local://team/shoes@") and "v1" in result.output
    result = runner.invoke(models_command, ["--json"])
    [row] = json.loads(result.output)
    assert row["name"] == "team/shoes" and row["revisions"] == 1
    result = runner.invoke(models_command, [])
    assert "local://team/shoes" in result.output and "v1" in result.output
    result = runner.invoke(show_command, ["local://team/shoes@v1", "--json"])
    assert json.loads(result.output)["format_version"] == FORMAT_VERSION
    result = runner.invoke(show_command, ["local://team/shoes@v1"])
    assert result.exit_code == 0 and "tiny_image" in result.output and "color" in result.output
    result = runner.invoke(pull_command, ["local://team/shoes@v1", "--out", str(tmp_path / "copy")])
    assert result.exit_code == 0, result.output
    assert verify_bundle(tmp_path / "copy").files == read_index(v1).files
    result = runner.invoke(push_command, [str(v1), "hf://team/shoes", "--registry", "local"])
    assert result.exit_code != 0 and "is a hf:// URI but --registry is local" in result.output


def test_saving_equal_weights_twice_gives_one_revision_id(tiny_model, tmp_path):
    """A re-run that produces the same model publishes the same revision (no wall clock in the
    bundle, no tokenizer state that depends on whether the text encoder ran)."""
    from fashion.registry import save_bundle
    from fashion.registry.local import LocalRegistry

    registry = LocalRegistry(tmp_path / "registry")
    first = registry.publish(save_bundle(tiny_model, tmp_path / "a"), "same")
    tiny_model.predict([{"title": "a red dress with a long enough title to pad"}, {"title": "x"}])
    second = registry.publish(save_bundle(tiny_model, tmp_path / "b"), "same")
    assert first.id == second.id and len(registry.list_revisions("same")) == 1
