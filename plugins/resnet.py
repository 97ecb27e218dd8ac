"""Built-in image backbones ``resnet18``, ``resnet34`` and ``resnet50`` (torchvision).

Output: the globally pooled features before the classifier (512-d for 18/34, 2048-d for 50).

ImageNet weights are never downloaded. With ``pretrained=True`` (default) they come from
``weights_path`` (a torchvision ``.pth`` state_dict or a ``.safetensors`` file), else from the
torch hub cache (``torch.hub.get_dir()/checkpoints/resnet50-11ad3fa6.pth``, the file torchvision
itself would download); if neither exists the build fails with a message saying how to supply
one. Built with ``pretrained=False`` (the bundle loader does this, its weights come from the
bundle) or ``options.pretrained=False``, the network is randomly initialised and no file is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import model_validator
from torch import Tensor, nn

from fashion import (
    ConfigError,
    ImageBackbone,
    ImageBackboneOptions,
    WeightsNotFoundError,
    hookimpl,
)
from fashion.contract.components import Lambda
from fashion.contract.hookspecs import Register
from fashion.data.weights import contiguous_state, load_state_dict_file, strip_prefix


class ResNetOptions(ImageBackboneOptions):
    weights_path: str | None = None
    pretrained: bool = True
    channels_last: bool = True

    @model_validator(mode="after")
    def _weights_need_pretrained(self) -> ResNetOptions:
        if self.weights_path and not self.pretrained:
            raise ValueError("weights_path is only read when pretrained=true; drop one of them")
        return self


class ResNet50(ImageBackbone[ResNetOptions]):
    """torchvision ResNet-50 without its classifier: pooled 2048-d features."""

    name = "resnet50"
    weights_enum_name: ClassVar[str] = "ResNet50_Weights"  # torchvision.models.<name>
    options: ResNetOptions

    def __init__(
        self,
        options: ResNetOptions | Mapping[str, Any] | None = None,
        *,
        assets: Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__(options)
        import torchvision

        self.body = getattr(torchvision.models, self.name)(weights=None)
        self.output_dim = int(self.body.fc.in_features)
        self.body.fc = nn.Identity()
        if pretrained and self.options.pretrained:
            self._load_imagenet()
        if self.options.channels_last:
            self.body.to(memory_format=torch.channels_last)
        self.register_state_dict_post_hook(contiguous_state)

    @classmethod
    def hub_file_names(cls) -> list[str]:
        """torchvision's checkpoint file names for this architecture, the default first."""
        import torchvision  # imported when used: it costs about a second at start-up

        weights = getattr(torchvision.models, cls.weights_enum_name)
        names = [weights.DEFAULT.url.rsplit("/", 1)[-1]]
        names += [w.url.rsplit("/", 1)[-1] for w in weights if w != weights.DEFAULT]
        return names

    def _load_imagenet(self) -> None:
        if self.options.weights_path:
            path = Path(self.options.weights_path).expanduser()
        else:
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            found = [cache / n for n in self.hub_file_names() if (cache / n).is_file()]
            if not found:
                raise WeightsNotFoundError(
                    f"no ImageNet weights for {self.name} are available offline (nothing at "
                    f"{cache / self.hub_file_names()[0]}). Set the `weights_path` option to a "
                    f"local torchvision .pth or .safetensors file, or copy torchvision's "
                    f"{self.hub_file_names()[0]} into {cache}/, or set `pretrained: false` to "
                    "start from random weights."
                )
            path = found[0]
        state = load_state_dict_file(path)
        state = strip_prefix(state, "body.")  # a file saved from this component
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            self.body.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(
                f"weights file {path} does not fit {self.name}: {str(exc)[:400]}. Use the "
                f"torchvision ImageNet file for {self.name} ({self.hub_file_names()[0]})."
            ) from None

    def forward(self, pixels: Tensor) -> Tensor:
        if self.options.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.body(pixels)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """stem, layer1..layer4, pool: the cut points are ``layer1``..``layer4``."""
        body = self.body
        stem = nn.Sequential(Lambda(self._layout), body.conv1, body.bn1, body.relu, body.maxpool)
        return [
            ("stem", stem),
            *((f"layer{i}", getattr(body, f"layer{i}")) for i in range(1, 5)),
            ("pool", nn.Sequential(body.avgpool, nn.Flatten(1))),
        ]

    def _layout(self, pixels: Tensor) -> Tensor:
        if self.options.channels_last:
            return pixels.contiguous(memory_format=torch.channels_last)
        return pixels


class ResNet18(ResNet50):
    """torchvision ResNet-18 without its classifier: pooled 512-d features."""

    name = "resnet18"
    weights_enum_name = "ResNet18_Weights"


class ResNet34(ResNet50):
    """torchvision ResNet-34 without its classifier: pooled 512-d features."""

    name = "resnet34"
    weights_enum_name = "ResNet34_Weights"


@hookimpl
def register_backbones(register: Register) -> None:
    register(ResNet18)
    register(ResNet34)
    register(ResNet50)
