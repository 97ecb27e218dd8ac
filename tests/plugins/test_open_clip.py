"""The ``open_clip`` / ``open_clip_text`` backbones on a tiny random open_clip model written to a
local folder (config + preprocess config + safetensors: the real loading path)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from fashion import BundleError, ConfigError, FashionModel, WeightsNotFoundError, build_component
from tests.tiny_open_clip import tiny_config, write_tiny_open_clip

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_open_clip(tmp_path_factory.mktemp("open-clip") / "tiny")


def _photo(size: tuple[int, int] = (64, 64)) -> Image.Image:
    torch.manual_seed(1)
    pixels = (torch.rand(size[1], size[0], 3) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def test_towers_match_open_clip_on_its_own_preprocessing(folder: Path) -> None:
    import open_clip

    reference, _, transform = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    reference.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    image = build_component("backbone", "open_clip", {"model": str(folder)}).eval()
    text = build_component("backbone", "open_clip_text", {"model": str(folder)}).eval()
    # the model's own preprocessing is written into the options: nothing is an ImageNet default
    assert image.options_dict() | {"model": None} == {
        "model": None, "image_size": 32, "interpolation": "bilinear",
        "preprocessing": {"mean": tiny_config()["preprocess_cfg"]["mean"],
                          "std": tiny_config()["preprocess_cfg"]["std"]},
    }
    photo = _photo()
    with torch.no_grad():
        ours = image(image.preprocess([photo]))
        theirs = reference.encode_image(transform(photo).unsqueeze(0))
        prompts = ["a photo of a red garment", "a photo of a striped garment"]
        ours_text = text.encode(prompts)
        theirs_text = reference.encode_text(tokenizer(prompts))
    assert ours.shape == (1, 16) and image.output_dim == text.output_dim == 16
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours_text, theirs_text, atol=1e-5, rtol=1e-5)
    assert text.logit_scale == pytest.approx(float(reference.logit_scale.detach().exp()))


def test_views_of_another_size_are_resized_with_the_models_interpolation(folder: Path) -> None:
    image = build_component("backbone", "open_clip", {"model": str(folder)})
    pixels = image.preprocess([_photo((64, 48)), _photo((32, 32))])
    assert pixels.shape == (2, 3, 32, 32)
    expected = _photo((64, 48)).resize((43, 32), Image.Resampling.BILINEAR).crop((5, 0, 37, 32))
    torch.testing.assert_close(pixels[0], image.preprocess([expected])[0])


def test_a_bundle_records_the_preprocessing_and_refuses_a_config_that_disagrees(folder: Path,
                                                                                  tmp_path: Path) -> None:
    from fashion.registry import load_bundle, save_bundle
    from fashion.registry.bundle import PreprocessingChangedWarning

    spec = {
        "views": {"full": {"name": "full", "options": {"size": 32}}},
        "backbones": {"image": {"name": "open_clip", "views": ["full"], "options": {"model": str(folder)}},
                      "text": {"name": "open_clip_text", "options": {"model": str(folder)}}},
        "fusion": {"name": "concat"},
        "attributes": {"color": {"labels": ["red", "blue"]}},
    }
    torch.manual_seed(0)
    model = FashionModel(spec).eval()
    products = [{"images": [_photo()], "title": "red dress"}, {"title": "blue shirt"}]
    before = model.predict(products)
    bundle = save_bundle(model, tmp_path / "bundle")
    moved = folder.parent / "moved-away"
    folder.rename(moved)  # the bundle reads nothing from the source folder
    try:
        with warnings.catch_warnings():
            # no "preprocessing changed" warning: the saved values are the model's own
            warnings.simplefilter("error", PreprocessingChangedWarning)
            after = load_bundle(bundle).model.predict(products)
    finally:
        moved.rename(folder)
    for a, b in zip(before, after, strict=True):
        assert a["color"].top_k[0][0] == b["color"].top_k[0][0]
        assert a["color"].score == pytest.approx(b["color"].score, abs=1e-5)
    config_path = next(bundle.rglob("backbones/image/open_clip_config.json"))
    config = json.loads(config_path.read_text())
    assert config["preprocess_cfg"]["interpolation"] == "bilinear"
    config["preprocess_cfg"]["mean"] = [0.5, 0.5, 0.5]
    with pytest.raises(BundleError, match="preprocessing .* contradicts .*open_clip_config.json"):
        build_component("backbone", "open_clip", model.backbones["image"].options_dict(),
                        assets=_with_config(tmp_path / "edited", config), pretrained=False)


def _with_config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


def test_options_that_contradict_the_model_are_refused(folder: Path) -> None:
    with pytest.raises(ConfigError, match="image_size 64 contradicts .* says 32; leave `image_size` out"):
        build_component("backbone", "open_clip", {"model": str(folder), "image_size": 64})
    with pytest.raises(ConfigError, match="interpolation 'bicubic' contradicts"):
        build_component("backbone", "open_clip", {"model": str(folder), "interpolation": "bicubic"})


def test_missing_weights_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="set the `model` option"):
        build_component("backbone", "open_clip")
    half = _with_config(tmp_path / "half", tiny_config())
    with pytest.raises(WeightsNotFoundError, match="has no open_clip_model.safetensors.*hf download"):
        build_component("backbone", "open_clip", {"model": str(half)})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError, match=r"open_clip_config.json is not in the Hugging Face cache.*"
                                                   r"hf download org/tiny-clip open_clip_config.json"):
        build_component("backbone", "open_clip_text", {"model": "hf-hub:org/tiny-clip"})
    with pytest.raises(WeightsNotFoundError, match="no such folder, and not a Hub repo id"):
        build_component("backbone", "open_clip", {"model": str(tmp_path / "nowhere")})
    with pytest.raises(BundleError, match="refusing to read files from outside the bundle"):
        build_component("backbone", "open_clip", {"model": str(half)}, pretrained=False)


def test_weights_in_the_hugging_face_cache_are_found_offline(folder: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    commit = "0" * 40
    snapshot = cache / "models--org--tiny-clip" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (cache / "models--org--tiny-clip" / "refs").mkdir()
    (cache / "models--org--tiny-clip" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    cached = build_component("backbone", "open_clip", {"model": "hf-hub:org/tiny-clip"}).eval()
    local = build_component("backbone", "open_clip", {"model": str(folder)}).eval()
    with torch.no_grad():
        torch.testing.assert_close(cached(cached.preprocess([_photo()])), local(local.preprocess([_photo()])))


def test_damaged_weights_and_configs_are_named(folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "open_clip_config.json").write_bytes((folder / "open_clip_config.json").read_bytes())
    (broken / "open_clip_model.safetensors").write_bytes((folder / "open_clip_model.safetensors").read_bytes()[:5000])
    with pytest.raises(ConfigError, match=r"weights file .*broken/open_clip_model.safetensors does not load"):
        build_component("backbone", "open_clip", {"model": str(broken)})
    other = write_tiny_open_clip(tmp_path / "other", config=tiny_config(image_size=64))
    (other / "open_clip_config.json").write_bytes((folder / "open_clip_config.json").read_bytes())
    with pytest.raises(ConfigError, match="does not load into the model its open_clip_config.json describes"):
        build_component("backbone", "open_clip", {"model": str(other)})
    no_mean = tiny_config()
    del no_mean["preprocess_cfg"]["mean"]
    with pytest.raises(ConfigError, match="must give the `mean` and `std`.*no default is assumed"):
        build_component("backbone", "open_clip", {"model": str(_with_config(broken, no_mean))})
    (broken / "open_clip_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read as JSON"):
        build_component("backbone", "open_clip", {"model": str(broken)})
