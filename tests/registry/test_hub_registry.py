"""The Hub registry against a loopback Hub: one commit per publish, unchanged files skipped,
tags, and a fresh process that downloads, predicts, then predicts again offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.cli.registry import models_command, pull_command, push_command
from fashion.errors import ModelNotFoundError, RegistryError
from fashion.registry import HubRegistry, load_bundle, save_bundle
from fashion.registry.bundle import read_index, sha256_file
from tests.tiny_model import as_plain, assert_close_predictions, image, train_briefly

ROOT = Path(__file__).resolve().parents[2]

FRESH_PROCESS = """
import json, sys
from fashion.contract.manager import register_plugin
from tests import tiny_plugin

register_plugin(tiny_plugin, name="tests.tiny_plugin")  # entry points are off in tests
from fashion import Predictor

args = json.loads(sys.argv[1])
predictor = Predictor.from_hub(args["repo"], args["revision"], cache_dir=args["cache"])
products = json.loads(open(args["products"]).read())
print(json.dumps([r.to_dict() for r in predictor.predict(products, batch_size=2)]))
"""


@pytest.fixture
def two_bundles(tiny_model, tmp_path):
    v1 = save_bundle(tiny_model, tmp_path / "v1", metrics={"color": {"accuracy": 0.5}})
    tiny_model.freeze(["backbones", "croppers", "fusion"])
    train_briefly(tiny_model, ["color"], seed=7)
    v2 = save_bundle(tiny_model, tmp_path / "v2", metrics={"color": {"accuracy": 0.5}})
    return v1, v2


def _commits(hub, repo):
    return [c for r, c, _ in hub.state.uploads if r == repo]


def test_publish_is_one_commit_and_skips_unchanged_files(hub, two_bundles, tmp_path):
    v1, v2 = two_bundles
    registry = HubRegistry(cache_dir=tmp_path / "cache")
    first = registry.publish(v1, "team/shoes", tag="v1", message="first model")
    assert first.uri == f"hf://team/shoes@{first.id}"
    [(_, commit, sent)] = hub.state.uploads
    assert commit == first.id
    assert set(sent) == set(read_index(v1).files) | {"fashion.json"}

    second = registry.publish(v2, "team/shoes", tag="prod", message="color retrained")
    assert len(_commits(hub, "team/shoes")) == 2  # exactly one commit per publish
    m1, m2 = read_index(v1), read_index(v2)
    changed = {p for p in m2.files if m1.files[p].sha256 != m2.files[p].sha256}
    assert changed == {"heads/color.safetensors"}
    assert sorted(hub.state.uploads[-1][2]) == ["fashion.json", "heads/color.safetensors"]

    revisions = registry.list_revisions("team/shoes")
    assert [r.id for r in revisions][-2:] == [first.id, second.id]
    assert revisions[-2].tags == ["v1"] and revisions[-1].tags == ["main", "prod"]
    assert revisions[-1].message == "color retrained"
    assert registry.show("team/shoes", "v1")["metrics"] == {"color": {"accuracy": 0.5}}
    assert [m.name for m in registry.list_models()] == ["team/shoes"]

    again = registry.publish(v2, "team/shoes", tag="v2")  # nothing changed: no new commit
    assert again.id == second.id and len(_commits(hub, "team/shoes")) == 2

    old = load_bundle(registry.fetch("team/shoes", "v1"))
    new = load_bundle("hf://team/shoes@prod")  # HF_ENDPOINT from the environment
    assert as_plain(old.model.predict([{"images": [image("red")], "title": "red"}])) == as_plain(
        load_bundle(v1).model.predict([{"images": [image("red")], "title": "red"}]))
    assert new.index.files == m2.files and new.uri == "hf://team/shoes@prod"


def test_files_the_new_bundle_lacks_are_deleted(hub, tiny_model, tmp_path):
    plot = tmp_path / "cm.png"
    plot.write_bytes(b"\x89PNG not really")
    registry = HubRegistry(cache_dir=tmp_path / "cache")
    registry.publish(save_bundle(tiny_model, tmp_path / "a", plots={"color": plot}), "team/shoes")
    registry.publish(save_bundle(tiny_model, tmp_path / "b"), "team/shoes")
    head = hub.state.repos["team/shoes"].resolve("main")
    assert "plots/color.png" not in head.files and ".gitattributes" in head.files
    assert set(head.files) - {".gitattributes"} == set(read_index(tmp_path / "b").files) | {"fashion.json"}
    assert len(_commits(hub, "team/shoes")) == 2


def test_fresh_process_from_hub_then_offline(hub, tiny_model, tmp_path):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    HubRegistry().publish(bundle, "team/shoes", tag="v1")
    folder = tmp_path / "images"
    folder.mkdir()
    for color in ("red", "blue"):
        image(color).save(folder / f"{color}.png")
    products = [
        {"id": "a", "images": [str(folder / "red.png")], "title": "red summer dress"},
        {"id": "b", "images": [str(folder / "blue.png")]},
        {"id": "c", "title": "blue shirt", "brand": "Acme"},
    ]
    (tmp_path / "products.json").write_text(json.dumps(products))
    expected = [r.to_dict() for r in __import__("fashion").Predictor(tiny_model).predict(products)]
    cache = tmp_path / "empty-cache"
    args = json.dumps({"repo": "team/shoes", "revision": "v1", "cache": str(cache),
                       "products": str(tmp_path / "products.json")})
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}

    online = subprocess.run([sys.executable, "-c", FRESH_PROCESS, args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert online.returncode == 0, online.stderr
    assert_close_predictions(json.loads(online.stdout), expected)
    assert any(m == "GET" and "/resolve/" in p for m, p in hub.state.requests)

    hub.stop()
    offline = subprocess.run([sys.executable, "-c", FRESH_PROCESS, args], cwd=ROOT,
                             env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                             timeout=180)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout) == json.loads(online.stdout)


def test_unreachable_hub_without_cache_says_what_to_do(hub, tiny_model, tmp_path):
    HubRegistry().publish(save_bundle(tiny_model, tmp_path / "b"), "team/shoes")
    cached = HubRegistry(cache_dir=tmp_path / "cache")
    cached.fetch("team/shoes")
    hub.stop()
    assert (cached.fetch("team/shoes") / "fashion.json").is_file()  # served from the cache
    with pytest.raises(RegistryError) as info:
        HubRegistry(cache_dir=tmp_path / "empty").fetch("team/shoes")
    message = str(info.value)
    assert "could not be reached" in message and "nothing is cached" in message
    assert "HF_ENDPOINT" in message and "local_files_only=True" in message
    assert "local path" in message
    with pytest.raises(RegistryError, match="cannot list revisions with local_files_only"):
        HubRegistry(local_files_only=True).list_revisions("team/shoes")
    with pytest.raises(RegistryError, match="cannot publish with local_files_only"):
        HubRegistry(local_files_only=True).publish(tmp_path / "b", "team/shoes")


def test_missing_repo_and_revision(hub, tiny_model, tmp_path):
    registry = HubRegistry(cache_dir=tmp_path / "cache")
    with pytest.raises(ModelNotFoundError, match="no model repo 'team/nothing'.*HF_TOKEN"):
        registry.fetch("team/nothing")
    registry.publish(save_bundle(tiny_model, tmp_path / "b"), "team/shoes")
    with pytest.raises(ModelNotFoundError, match="no revision or tag 'v9'"):
        registry.fetch("team/shoes", "v9")


def test_cli_push_pull_models_hub(hub, tiny_model, tmp_path):
    bundle = save_bundle(tiny_model, tmp_path / "bundle")
    runner = CliRunner()
    result = runner.invoke(push_command, [str(bundle), "hf://team/shoes", "--tag", "v1",
                                          "--endpoint", hub.url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("published hf://team/shoes@")
    result = runner.invoke(pull_command, ["hf://team/shoes@v1", "--out", str(tmp_path / "copy")])
    assert result.exit_code == 0, result.output
    assert sha256_file(tmp_path / "copy" / "fashion.json") == sha256_file(bundle / "fashion.json")
    assert not any(p.is_symlink() for p in (tmp_path / "copy").rglob("*"))
    # a repo without a fashion model card is not listed
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url).create_repo("team/other")
    result = runner.invoke(models_command, ["--registry", "hf", "--json"])
    assert [r["name"] for r in json.loads(result.output)] == ["team/shoes"]
