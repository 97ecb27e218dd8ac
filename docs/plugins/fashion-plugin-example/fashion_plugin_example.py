"""An example plugin: a weight-free color-histogram image backbone and a `fashion hello` command.

Install it with `fashion install ./docs/plugins/fashion-plugin-example`; `fashion plugins` then
lists `color_histogram` (kind backbone) from the distribution `fashion-plugin-example`, and a
model spec can use it like any built-in backbone.
"""

from __future__ import annotations

import click
import torch

from fashion import ImageBackbone, ImageBackboneOptions, ImagePreprocessing, hookimpl


class ColorHistogramOptions(ImageBackboneOptions):
    bins: int = 8  # per channel


class ColorHistogram(ImageBackbone[ColorHistogramOptions]):
    """Soft per-channel intensity histograms: 3 x bins features, no weights to train."""

    name = "color_histogram"

    @classmethod
    def default_preprocessing(cls) -> ImagePreprocessing:
        return ImagePreprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # pixels in [0, 1]

    def __init__(self, options=None, *, assets=None, pretrained=True):
        super().__init__(options)
        self.output_dim = 3 * self.options.bins
        centers = (torch.arange(self.options.bins) + 0.5) / self.options.bins
        self.register_buffer("centers", centers, persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # pixels: (N, 3, H, W) in [0, 1]; soft assignment of every pixel to each bin center.
        x = pixels.flatten(2).unsqueeze(-1)  # N, 3, HW, 1
        weights = torch.relu(1 - (x - self.centers).abs() * self.options.bins)
        return weights.mean(dim=2).flatten(1)  # N, 3 * bins


@hookimpl
def register_backbones(register):
    register(ColorHistogram)


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("name", default="world")
    def hello(name: str) -> None:
        """Say hello (from the example plugin)."""
        click.echo(f"hello {name} from fashion-plugin-example")
