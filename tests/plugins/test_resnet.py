"""The built-in ResNet backbones: shapes, offline weight loading, strict safetensors round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file

from fashion import ConfigError, WeightsNotFoundError, build_component
from fashion.plugins.resnet import ResNet18, ResNet50


def images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)
    ]


def features(backbone: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return backbone.eval()(pixels)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_resnet18_random_init_gives_512_features() -> None:
    backbone = build_component("backbone", "resnet18", pretrained=False)
    assert backbone.output_dim == 512 and backbone.modality == "image"
    out = features(backbone, backbone.preprocess(images(2, 64)))
    assert out.shape == (2, 512) and torch.isfinite(out).all()


def test_resnet50_is_registered_with_2048_features() -> None:
    backbone = build_component("backbone", "resnet50", {"channels_last": False}, pretrained=False)
    assert isinstance(backbone, ResNet50) and backbone.output_dim == 2048
    assert features(backbone, backbone.preprocess(images(1, 64))).shape == (1, 2048)


def test_strict_safetensors_round_trip(tmp_path: Path) -> None:
    backbone = build_component("backbone", "resnet18", pretrained=False)
    assert backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    save_file(backbone.state_dict(), str(tmp_path / "backbone.safetensors"))
    again = build_component("backbone", "resnet18", pretrained=False)
    again.load_state_dict(load_file(str(tmp_path / "backbone.safetensors")), strict=True)
    pixels = backbone.preprocess(images(2, 64))
    assert torch.equal(features(backbone, pixels), features(again, pixels))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_path_loads_torchvision_files(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)
    else:
        save_file(reference.state_dict(), str(path))
    backbone = ResNet18({"weights_path": str(path)})
    reference.fc = torch.nn.Identity()
    pixels = backbone.preprocess(images(2, 64))
    torch.testing.assert_close(features(backbone, pixels), features(reference, pixels))
    random = ResNet18(pretrained=False)
    assert not torch.allclose(features(random, pixels), features(backbone, pixels))


def test_pretrained_reads_the_torch_hub_cache(torch_home: Path) -> None:
    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None)
    torch_home.mkdir(parents=True)
    torch.save(reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    assert ResNet18.hub_file_names()[0] == "resnet18-f37072fd.pth"
    backbone = ResNet18()
    reference.fc = torch.nn.Identity()
    pixels = backbone.preprocess(images(1, 32))
    torch.testing.assert_close(features(backbone, pixels), features(reference, pixels))


def test_missing_weights_say_how_to_supply_them(torch_home: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="weights_path") as info:
        build_component("backbone", "resnet50")
    assert "resnet50-11ad3fa6.pth" in str(info.value) and "pretrained: false" in str(info.value)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        ResNet18({"weights_path": str(tmp_path / "nope.pth")})
    # Built for a bundle (weights come from its safetensors), no file is needed.
    assert ResNet18(pretrained=False).output_dim == 512
    assert ResNet18({"pretrained": False}).output_dim == 512
    with pytest.raises(ConfigError, match="weights_path is only read when pretrained=true"):
        ResNet18({"pretrained": False, "weights_path": "x.pth"})


def test_wrong_architecture_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.safetensors"
    save_file(torchvision.models.resnet34(weights=None).state_dict(), str(path))
    with pytest.raises(ConfigError, match="does not fit resnet18"):
        ResNet18({"weights_path": str(path)})


def test_a_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    backbone = ResNet18(pretrained=False)
    head = torch.nn.Linear(backbone.output_dim, 3)
    pixels = backbone.preprocess(images(6, 32))
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    backbone.train()
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(head(backbone(pixels)), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().item())
    assert losses[-1] < losses[0]
