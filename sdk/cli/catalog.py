"""``fashion make-catalog``: the command's front; the catalog is :func:`fashion.catalog.make_catalog`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fashion.catalog import SPLITS, make_catalog


@click.command("make-catalog")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--products",
    default=600,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of products to generate.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option(
    "--image-size",
    default=512,
    show_default=True,
    type=click.IntRange(64, 4096),
    help="Side of the square images, in pixels.",
)
@click.option(
    "--images-per-product",
    nargs=2,
    type=int,
    default=(1, 3),
    show_default=True,
    metavar="MIN MAX",
    help="Range of shots per product.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes drawing images [default: one per CPU, at most 4].",
)
@click.option("--overwrite", is_flag=True, help="Replace a catalog already in OUT.")
@click.option(
    "--label-noise",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of each attribute's train labels flipped to a wrong label (listed in label_noise.csv).",
)
@click.option(
    "--not-applicable",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Share of pants and skirts put in the sleeves dataset with an 'n/a' sleeve_length cell.",
)
def make_catalog_command(
    out: Path,
    products: int,
    seed: int,
    image_size: int,
    images_per_product: tuple[int, int],
    workers: int | None,
    overwrite: bool,
    label_noise: float,
    not_applicable: float,
) -> None:
    """Generate a synthetic retail catalog with known ground truth in OUT."""
    from rich.console import Console
    from rich.table import Table

    from fashion._util.progress import progress

    console = Console()
    start = time.perf_counter()
    with progress("drawing products", total=products, unit="products") as bar:
        info = make_catalog(
            out,
            products=products,
            seed=seed,
            image_size=image_size,
            images_per_product=images_per_product,
            workers=workers,
            overwrite=overwrite,
            label_noise=label_noise,
            not_applicable=not_applicable,
            progress=lambda done, total: bar.update(done - bar.done),
        )
    elapsed = time.perf_counter() - start

    table = Table(title=f"Catalog in {out}")
    table.add_column("dataset")
    table.add_column("labels")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for ds in info.datasets.values():
        table.add_row(
            ds.name, ", ".join(ds.attributes), *(str(ds.rows[s]) for s in SPLITS), str(ds.total)
        )
    console.print(table)
    console.print(
        f"{info.products} products, {info.images} images of {info.image_size} px in "
        f"{elapsed:.1f} s; ground truth: {info.ground_truth_path}"
    )


__all__ = ["make_catalog_command"]
