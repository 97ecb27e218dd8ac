"""``fashion demo``: the command's front; the steps are :func:`fashion.demo.run.run_demo`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fashion.demo.run import run_demo
from fashion.demo.settings import DemoSettings


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="fashion-demo",
              show_default=True, help="Where the catalog, runs, bundles and report go.")
@click.option("--small", is_flag=True, help="A fast variant (a few minutes on 2 CPU cores).")
@click.option("--products", type=int, help="Catalog size (default 700; 160 with --small).")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-ablation", is_flag=True, help="Skip the full-view-only ablation run.")
def demo_command(out: Path, small: bool, products: int | None, epochs: int | None, seed: int,
                 no_ablation: bool) -> None:
    """The whole story, offline: catalog -> MDMT model -> publish -> add sleeve_length -> predict."""
    settings = DemoSettings.small() if small else DemoSettings()
    if products is not None:
        settings.products = products
    if epochs is not None:
        settings.epochs = epochs
    settings.seed = seed
    settings.ablation = not no_ablation
    run_demo(out, settings=settings, progress=sys.stderr.isatty())


__all__ = ["demo_command"]
