"""A tiny plugin for tests: one of each component kind, small enough to train in milliseconds."""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn
from torch.nn import functional as F

from fashion import (
    ComponentOptions,
    Cropper,
    Fusion,
    Head,
    ImageBackbone,
    ImageBackboneOptions,
    TextBackbone,
    View,
    hookimpl,
)


class TinyImageOptions(ImageBackboneOptions):
    width: int = 8
    layers: int = 1  # convolutions (each followed by a ReLU)
    same: bool = False  # TensorFlow "same" padding of the strided first convolution, computed from
    # the input's shape at run time as timm's tf_ EfficientNets do (exported as shape arithmetic)


class TinyImage(ImageBackbone[TinyImageOptions]):
    """Conv -> ReLU (``layers`` times) -> global average pool."""

    name = "tiny_image"

    def __init__(self, options=None, *, assets=None, pretrained=True):
        super().__init__(options)
        width = self.options.width
        more = [m for _ in range(self.options.layers - 1) for m in (nn.Conv2d(width, width, 3, padding=1), nn.ReLU())]
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), *more)
        self.output_dim = self.options.width

    def forward(self, pixels):
        if self.options.same:
            pixels = _pad_same(pixels, kernel=3, stride=2)
        return self.net(pixels).mean(dim=(2, 3))


def _same(size, kernel: int, stride: int):
    """timm's ``get_same_padding``: a tensor while traced for ONNX, an int in eager mode."""
    if isinstance(size, torch.Tensor):
        return torch.clamp(((size / stride).ceil() - 1) * stride + kernel - size, min=0)
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _pad_same(x, *, kernel: int, stride: int):
    height, width = x.size()[-2:]
    pad_h, pad_w = _same(height, kernel, stride), _same(width, kernel, stride)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class TinyTextOptions(ComponentOptions):
    dim: int = 8
    buckets: int = 64


class TinyText(TextBackbone[TinyTextOptions]):
    """Hashed bag of words -> embedding bag."""

    name = "tiny_text"

    def __init__(self, options=None, *, assets=None, pretrained=True):
        super().__init__(options)
        self.embed = nn.EmbeddingBag(self.options.buckets, self.options.dim, mode="mean")
        self.output_dim = self.options.dim

    def preprocess(self, inputs):
        ids, offsets = [], []
        for fields in inputs:
            offsets.append(len(ids))
            words = " ".join(fields.values()).lower().split() or [""]
            ids.extend(
                int(hashlib.md5(w.encode()).hexdigest(), 16) % self.options.buckets for w in words
            )
        return {"ids": torch.tensor(ids), "offsets": torch.tensor(offsets)}

    def forward(self, batch):
        return self.embed(batch["ids"], batch["offsets"])


class TinyCropOptions(ComponentOptions):
    size: int = 16


class TinyCrop(Cropper[TinyCropOptions]):
    """The whole image, squashed to size x size."""

    name = "tiny_crop"

    def crop(self, image):
        s = self.options.size
        return [View(image.resize((s, s)), box=(0, 0, *image.size))]


class TinyConcat(Fusion):
    name = "tiny_concat"

    def __init__(self, options=None, *, input_dims):
        super().__init__(options, input_dims=input_dims)
        self.output_dim = sum(input_dims.values())

    def forward(self, features, masks):
        return torch.cat([features[k] * masks[k].unsqueeze(1) for k in self.input_dims], dim=1)


class TinyHead(Head):
    name = "tiny_head"

    def __init__(self, options=None, *, input_dim, labels):
        super().__init__(options, input_dim=input_dim, labels=labels)
        self.linear = nn.Linear(input_dim, len(self.labels))

    def forward(self, x):
        return self.linear(x)


@hookimpl
def register_backbones(register):
    register(TinyImage)
    register(TinyText)


@hookimpl
def register_croppers(register):
    register(TinyCrop)


@hookimpl
def register_fusions(register):
    register(TinyConcat)


@hookimpl
def register_heads(register):
    register(TinyHead)


TINY_SPEC = {
    "views": {"full": {"name": "tiny_crop"}},
    "backbones": {
        "image": {"name": "tiny_image", "views": ["full"]},
        "text": {"name": "tiny_text"},
    },
    "fusion": {"name": "tiny_concat"},
    "attributes": {
        "color": {"labels": ["red", "blue"], "head": {"name": "tiny_head"}},
        "category": {"labels": ["dress", "shirt", "pants"], "head": {"name": "tiny_head"}},
    },
}
