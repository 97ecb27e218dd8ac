"""Bundles: layout, index (fashion.json), round trip, atomic writes, reuse, and every refusal on load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from fashion import BundleError, FashionModel, MissingPluginError
from fashion.registry import load_bundle, save_bundle
from fashion.registry.bundle import FORMAT_VERSION, read_index, sha256_file
from fashion.registry.bundle_format import index_digest
from tests.tiny_model import as_plain, make_model, products, train_briefly
from tests.tiny_plugin import TINY_SPEC


def _save(model: FashionModel, path: Path, **kwargs: object) -> Path:
    return save_bundle(model, path, metrics={"color": {"accuracy": 0.75, "macro_f1": 0.7}},
                       provenance={"datasets": [{"name": "shop-a", "rows": 4, "sha256": "ab" * 32}]},
                       training_config={"epochs": 1}, parent="local://team/shoes@0123", **kwargs)


def _edit_index(path: Path, edit, *, resign: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Edit fashion.json; ``resign`` writes a matching index hash, so that the check under test
    (not the index hash) is what refuses the edit."""
    data = json.loads((path / "fashion.json").read_text())
    edit(data)
    if resign and "index_sha256" in data:
        data["index_sha256"] = index_digest(data)
    (path / "fashion.json").write_text(json.dumps(data))


def test_round_trip_layout_and_manifest(tiny_model, tmp_path):
    plot = tmp_path / "cm.png"
    plot.write_bytes(b"\x89PNG fake plot")
    path = _save(tiny_model, tmp_path / "bundle", plots={"color": plot})

    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert files == [
        "README.md", "backbones/image.safetensors", "backbones/text.safetensors",
        "fashion.json", "heads/category.safetensors", "heads/color.safetensors",
        "plots/color.png",
    ]  # croppers and the concat fusion have no tensors: no files for them
    index = read_index(path)
    assert index.format_version == FORMAT_VERSION
    assert set(index.files) == set(files) - {"fashion.json"}
    assert all(index.files[f].sha256 == sha256_file(path / f) for f in index.files)
    modules = tiny_model.component_modules()
    assert set(index.components) == set(modules)
    for component_path, entry in index.components.items():
        assert entry.fingerprint == modules[component_path].fingerprint()
        assert entry.distribution is None and entry.plugin == "tests.tiny_plugin"
    image = index.components["backbones/image"]
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert (image.kind, image.name, image.options) == (
        "backbone", "tiny_image", {"width": 8, "layers": 1, "same": False, "preprocessing": imagenet}
    )  # the pixel normalization is part of the saved options
    assert image.weights == "backbones/image.safetensors" and index.components["fusion"].weights is None
    assert index.spec.views["full"].options == {"size": 16}  # defaults pinned in the spec
    assert index.attributes["category"].labels == ["dress", "shirt", "pants"]
    assert index.preprocessing["images"]["image"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert index.preprocessing["images"]["image"]["views"]["full"]["cropper"] == "tiny_crop"
    assert index.metrics["color"]["accuracy"] == 0.75
    assert index.provenance.datasets[0]["rows"] == 4
    assert index.provenance.training_config == {"epochs": 1}
    assert index.provenance.parent == "local://team/shoes@0123"
    assert load_file(str(path / "heads/color.safetensors")).keys() == {"linear.weight", "linear.bias"}

    card = (path / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "fashion" and "attribute:color" in front["tags"]
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"accuracy": 0.75, "macro_f1": 0.7}
    assert "![color confusion matrix](plots/color.png)" in card

    bundle = load_bundle(path)
    assert not bundle.model.training and bundle.path == path
    assert as_plain(bundle.model.predict(products())) == as_plain(tiny_model.predict(products()))
    for key, tensor in tiny_model.state_dict().items():
        torch.testing.assert_close(bundle.model.state_dict()[key], tensor, rtol=0, atol=0)


def test_saving_is_deterministic_so_unchanged_files_dedupe(tiny_model, tmp_path):
    a = read_index(save_bundle(tiny_model, tmp_path / "a"))
    b = read_index(save_bundle(tiny_model, tmp_path / "b"))
    assert {p: f.sha256 for p, f in a.files.items()} == {p: f.sha256 for p, f in b.files.items()}


def test_save_replaces_a_bundle_atomically_and_cleans_up_on_failure(tiny_model, tmp_path, monkeypatch):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    before = (path / "fashion.json").read_text()
    other = make_model(seed=1)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("fashion.registry.bundle_write.model_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_bundle(other, path)
    assert (path / "fashion.json").read_text() == before  # the old bundle is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp folder left
    monkeypatch.undo()
    save_bundle(other, path)
    assert (path / "fashion.json").read_text() != before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_save_refuses_to_overwrite_a_folder_that_is_not_a_bundle(tiny_model, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a fashion bundle; refusing"):
        save_bundle(tiny_model, tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"


def test_reuse_from_links_unchanged_components(tiny_model, tmp_path):
    first = save_bundle(tiny_model, tmp_path / "v1")
    tiny_model.freeze(["backbones"])
    train_briefly(tiny_model, ["color"], seed=3)
    second = save_bundle(tiny_model, tmp_path / "v2", reuse_from=first)
    for rel in ("backbones/image.safetensors", "backbones/text.safetensors"):
        assert os.stat(first / rel).st_ino == os.stat(second / rel).st_ino
    assert sha256_file(first / "heads/color.safetensors") != sha256_file(second / "heads/color.safetensors")
    reloaded = load_bundle(second).model
    assert as_plain(reloaded.predict(products())) == as_plain(tiny_model.predict(products()))


# ------------------------------------------------------------------------------ refusals


def test_tampered_file_is_refused_naming_the_file(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    target = path / "heads/color.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"heads/color.safetensors does not match its sha256") as info:
        load_bundle(path)
    assert "Re-download" in str(info.value) and "fashion pull" in str(info.value)


def test_missing_file_is_refused(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    (path / "backbones/text.safetensors").unlink()
    with pytest.raises(BundleError, match=r"incomplete: backbones/text.safetensors is missing.*Re-download"):
        load_bundle(path)


@pytest.mark.parametrize("change, expect", [
    ("drop", r"missing tensors \['linear.bias'\]"),
    ("extra", r"unexpected tensors \['linear.scale'\]"),
    ("shape", r"wrong shapes \['linear.weight \(2, 4\) != \(2, 16\)'\]"),
])
def test_tensors_that_do_not_fit_the_component_are_refused(tiny_model, tmp_path, change, expect):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    rel = "heads/color.safetensors"
    tensors = load_file(str(path / rel))
    if change == "drop":
        del tensors["linear.bias"]
    elif change == "extra":
        tensors["linear.scale"] = torch.ones(2)
    else:
        tensors["linear.weight"] = torch.zeros(2, 4)
    save_file(tensors, str(path / rel))

    def rehash(data):  # a consistent index: only the strict tensor check can catch it
        data["files"][rel] = {"sha256": sha256_file(path / rel), "size": (path / rel).stat().st_size}

    _edit_index(path, rehash)
    with pytest.raises(BundleError, match=expect) as info:
        load_bundle(path)
    message = str(info.value)
    assert "heads/color.safetensors does not fit head 'tiny_head' at heads/color" in message
    assert "Re-download the bundle or install the plugin version it names" in message


def test_missing_plugin_without_distribution_names_the_plugin(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")

    def gone(data):  # as if the plugin that registered tiny_image were not loaded
        data["components"]["backbones/image"]["name"] = "tiny_gone"
        data["spec"]["backbones"]["image"]["name"] = "tiny_gone"

    _edit_index(path, gone)
    with pytest.raises(MissingPluginError) as info:
        load_bundle(path)
    message = str(info.value)
    assert "backbone 'tiny_gone' (backbones/image)" in message
    assert "plugin 'tests.tiny_plugin'" in message and "register that plugin" in message


def test_missing_plugin_with_distribution_says_pip_install(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")

    def foreign(data):
        head = data["components"]["heads/color"]
        head.update(name="sparkle_head", distribution="fashion-plugin-sparkle", version="1.2.0")
        data["spec"]["attributes"]["color"]["head"]["name"] = "sparkle_head"

    _edit_index(path, foreign)
    with pytest.raises(MissingPluginError) as info:
        load_bundle(path)
    message = str(info.value)
    assert "head 'sparkle_head' (heads/color) comes from fashion-plugin-sparkle==1.2.0" in message
    assert "pip install fashion-plugin-sparkle==1.2.0" in message
    assert "fashion install fashion-plugin-sparkle==1.2.0" in message


@pytest.mark.parametrize("bad", ["../outside.safetensors", "/etc/passwd", "heads/../../x"])
def test_paths_escaping_the_bundle_are_refused(tiny_model, tmp_path, bad):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    _edit_index(path, lambda d: d["components"]["heads/color"].update(weights=bad))
    with pytest.raises(BundleError, match="unsafe path") as info:
        load_bundle(path)
    assert "re-download it from a trusted source" in str(info.value)


def test_symlink_pointing_outside_is_refused(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(path / "heads/color.safetensors", outside)  # same bytes, same sha256
    (path / "heads/color.safetensors").unlink()
    (path / "heads/color.safetensors").symlink_to(outside)
    with pytest.raises(BundleError, match="is a link to .*outside the bundle; refusing"):
        load_bundle(path)


def test_unlisted_file_in_an_asset_folder_is_refused(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    (path / "backbones/text").mkdir()
    (path / "backbones/text/vocab.txt").write_text("a\nb\n")
    _edit_index(path, lambda d: d["components"]["backbones/text"].update(assets="backbones/text"))
    with pytest.raises(BundleError, match="backbones/text/vocab.txt is in an asset folder but not listed"):
        load_bundle(path)


def test_newer_format_version_says_upgrade(tiny_model, tmp_path):
    path = save_bundle(tiny_model, tmp_path / "bundle")
    _edit_index(path, lambda d: d.update(format_version=FORMAT_VERSION + 1, sdk_version="9.0"))
    with pytest.raises(BundleError, match=r"pip install -U fashion-sdk") as info:
        load_bundle(path)
    assert f"bundle format {FORMAT_VERSION + 1}" in str(info.value)


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a fashion bundle .no fashion.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="hf://nowhere/model"):
        load_bundle("nowhere/model")


def test_bundle_with_late_fusion_attribute(tiny, tmp_path):
    """A late-fusion attribute (one head per input + a combiner) is still one file."""
    model = make_model(seed=2, spec={**TINY_SPEC, "fusion": {"name": "late"}})
    path = save_bundle(model, tmp_path / "late")
    assert load_file(str(path / "heads/color.safetensors")).keys() == {
        "heads.image:full.linear.weight", "heads.image:full.linear.bias",
        "heads.text.linear.weight", "heads.text.linear.bias", "combiner.weights",
    }
    index = read_index(path)
    assert index.components["heads/color"].name == "tiny_head"
    assert index.components["fusion"].distribution == "fashion-sdk"
    loaded = load_bundle(path).model
    assert as_plain(loaded.predict(products())) == as_plain(model.predict(products()))


# ------------------------------------------------------------- preprocessing saved and compared


def test_a_changed_plugin_default_warns_with_the_difference_and_keeps_the_saved_values(
    tiny_model, tmp_path, monkeypatch
):
    from fashion import ImagePreprocessing
    from fashion.registry.bundle import PreprocessingChangedWarning
    from tests.tiny_plugin import TinyImage

    path = _save(tiny_model, tmp_path / "bundle")
    before = tiny_model.predict(products())
    # a plugin upgrade that changes the backbone's default normalization
    monkeypatch.setattr(
        TinyImage, "default_preprocessing",
        classmethod(lambda cls: ImagePreprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))),
    )
    with pytest.warns(PreprocessingChangedWarning) as caught:
        loaded = load_bundle(path)
    message = str(caught[0].message)
    assert "backbone 'image' (tiny_image)" in message
    assert "saved with mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in message
    assert "now defaults to mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]" in message
    assert loaded.model.backbones["image"].mean == (0.485, 0.456, 0.406)
    assert as_plain(loaded.model.predict(products())) == as_plain(before)


def test_a_preprocessing_block_the_model_would_not_reproduce_is_refused(tiny_model, tmp_path):
    path = _save(tiny_model, tmp_path / "bundle")
    _edit_index(path, lambda d: d["preprocessing"]["images"]["image"].update(std=[1, 1, 1]))
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    message = str(info.value)
    assert "preprocessing.images.image.std: [1, 1, 1] -> [0.229, 0.224, 0.225]" in message
    assert "saved -> now" in message


def test_a_cropper_that_now_resizes_differently_is_refused(tiny_model, tmp_path):
    path = _save(tiny_model, tmp_path / "bundle")

    def edit(data):  # the saved view options say size 12; the spec rebuilds size 16
        for view in data["preprocessing"]["images"]["image"]["views"].values():
            view["options"]["size"] = 12

    _edit_index(path, edit)
    with pytest.raises(BundleError, match=r"views\.\w+\.options\.size: 12 -> 16"):
        load_bundle(path)


def test_format_1_bundles_read_their_normalization_back_from_the_preprocessing_block(
    tiny_model, tmp_path
):
    path = _save(tiny_model, tmp_path / "bundle")

    def to_format_1(data):
        data["format_version"] = 1
        for backbone in data["spec"]["backbones"].values():
            backbone["options"].pop("preprocessing", None)
        data["preprocessing"]["images"]["image"].update(mean=[0.4, 0.4, 0.4], std=[0.2, 0.2, 0.2])

    _edit_index(path, to_format_1)
    with pytest.warns(UserWarning, match="saved with mean \\[0.4, 0.4, 0.4\\]"):
        loaded = load_bundle(path)
    assert loaded.model.backbones["image"].mean == (0.4, 0.4, 0.4)
    assert loaded.model.backbones["image"].std == (0.2, 0.2, 0.2)

    _edit_index(path, lambda d: d["preprocessing"]["images"].clear())
    with pytest.raises(BundleError, match="format 1.*no saved mean/std.*Save it again"):
        load_bundle(path)
