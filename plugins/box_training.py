"""Training the ``box`` cropper's garment detector: ``train_detector`` and ``fashion train-detector``.

The command reaches the CLI through this module's ``register_commands`` hook, like any
plugin's command (the module is a built-in plugin of its own, beside ``box``).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import click
import torch
from PIL import Image
from torch import nn

from fashion import hookimpl
from fashion.data.images import to_rgb
from fashion.errors import ConfigError, DataError
from fashion.plugins.box import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Architecture,
    Box,
    BoxCropper,
    image_tensor,
    save_box_cropper,
    shrink_image,
)

Example = tuple[Image.Image | str | Path, Sequence[Sequence[float]]]


def read_coco(path: str | Path) -> list[tuple[Path, list[Box]]]:
    """(image path, boxes as left, top, right, bottom) per image of a COCO detection JSON.

    Every category counts as "garment"; file names are relative to the JSON's folder; boxes
    with no area are skipped.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        images = {int(i["id"]): path.parent / i["file_name"] for i in data["images"]}
        boxes: dict[int, list[Box]] = {i: [] for i in images}
        for n, a in enumerate(data.get("annotations", [])):
            x, y, w, h = (float(v) for v in a["bbox"])
            image_id = int(a["image_id"])
            if image_id not in boxes:
                raise DataError(f"{path}: annotation {n} names unknown image_id {image_id}")
            if w >= 1 and h >= 1:
                boxes[image_id].append((x, y, x + w, y + h))
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"cannot read COCO annotations from {path}: {exc!r}. Expected JSON with "
            "images[{id, file_name, width, height}] and "
            "annotations[{image_id, bbox: [x, y, w, h]}]."
        ) from None
    if not images:
        raise DataError(f"{path} lists no images; add some to its `images` array.")
    missing = [str(p) for p in images.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) named in {path} do not exist, e.g. {missing[0]}; file_name "
            "is read relative to the JSON's folder."
        )
    return [(images[i], boxes[i]) for i in images]


def _training_pair(
    example: Example, image_size: int, flip: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    source, raw_boxes = example
    if isinstance(source, Image.Image):
        image = source
    else:
        with Image.open(source) as opened:
            image = opened.copy()
    image, scale = shrink_image(to_rgb(image), image_size)
    width, height = image.size
    boxes = []
    for box in raw_boxes:
        left, top, right, bottom = (float(v) * scale for v in box)
        left, right = max(0.0, left), min(float(width), right)
        top, bottom = max(0.0, top), min(float(height), bottom)
        if right - left >= 1 and bottom - top >= 1:
            boxes.append([left, top, right, bottom])
    target = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    pixels = image_tensor(image)
    if flip:
        pixels = pixels.flip(-1)
        left, top, right, bottom = target.unbind(1)
        target = torch.stack([width - right, top, width - left, bottom], 1)
    labels = torch.ones(len(target), dtype=torch.int64)
    return pixels, {"boxes": target, "labels": labels}


def train_detector(
    data: str | Path | Sequence[Example],
    *,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 4,
    image_size: int = 256,
    architecture: str = "fasterrcnn_mobilenet_v3_large_fpn",
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> BoxCropper:
    """Train a ``box`` cropper (engine ``detector``) from scratch on garment boxes.

    ``data`` is a COCO detection JSON path or a list of ``(image, boxes)`` pairs (PIL image or
    path; boxes as ``(left, top, right, bottom)`` pixels). Images are shrunk so their longer
    side is ``image_size``, flipped at random, and fed ``batch_size`` at a time to AdamW
    (``lr`` after a linear warm-up, then cosine decay).
    ``options`` sets the other cropper options (``size``, ``score_threshold``...).
    ``on_epoch(epoch, mean_loss)`` is called after every epoch. Returns the trained cropper
    (on the CPU, in eval mode); save it with :func:`save_box_cropper`.
    """
    examples: list[Example] = list(read_coco(data) if isinstance(data, (str, Path)) else data)
    if not examples:
        raise DataError("train_detector got no images; pass a COCO JSON or (image, boxes) pairs.")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError("train_detector needs epochs >= 1, batch_size >= 1 and lr > 0.")
    settings = {**dict(options or {}), "engine": "detector"}
    settings.update(architecture=architecture, image_size=image_size)
    run_on = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    order = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cropper = BoxCropper(settings)
        detector = cropper.detector.to(run_on).train()
        optimizer = torch.optim.AdamW(detector.parameters(), lr=lr, weight_decay=1e-4)
        total_steps = epochs * math.ceil(len(examples) / batch_size)
        warmup = max(1, min(100, total_steps // 10))

        def factor(step: int) -> float:  # linear warm-up, then cosine decay
            cosine = 0.5 * (1 + math.cos(math.pi * step / total_steps))
            return min(1.0, (step + 1) / warmup) * cosine

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        for epoch in range(epochs):
            indices = list(range(len(examples)))
            order.shuffle(indices)
            loss_sum, steps = 0.0, 0
            for start in range(0, len(indices), batch_size):
                pairs = [
                    _training_pair(examples[i], image_size, flip=order.random() < 0.5)
                    for i in indices[start : start + batch_size]
                ]
                images = [p.to(run_on) for p, _ in pairs]
                targets = [{k: v.to(run_on) for k, v in t.items()} for _, t in pairs]
                loss = sum(detector(images, targets).values())
                if not torch.isfinite(loss):
                    raise DataError(
                        f"detector loss became {float(loss)} at epoch {epoch + 1}; lower --lr "
                        "or check the boxes in your annotations."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(detector.parameters(), 10.0)
                optimizer.step()
                schedule.step()
                loss_sum += float(loss.detach())
                steps += 1
            if on_epoch is not None:
                on_epoch(epoch, loss_sum / steps)
    cropper.trained.fill_(1)
    cropper.cpu().eval()
    return cropper


@click.command("train-detector")
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for cropper.safetensors and cropper.json.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1),
              help="Passes over the annotated images.")
@click.option("--image-size", default=256, show_default=True, type=click.IntRange(32, 2048),
              help="Longer image side the detector trains and predicts at.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Images per optimizer step.")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="AdamW peak learning rate (warm-up, then cosine decay).")
@click.option("--architecture", default="fasterrcnn_mobilenet_v3_large_fpn", show_default=True,
              type=click.Choice(list(get_args(Architecture))))
@click.option("--score-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Minimum box score saved in the cropper's options.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--device", default=None, help="torch device (default: cuda when available).")
def train_detector_command(
    annotations: Path,
    out: Path,
    epochs: int,
    image_size: int,
    batch_size: int,
    lr: float,
    architecture: str,
    score_threshold: float,
    seed: int,
    device: str | None,
) -> None:
    """Train the `box` cropper's garment detector on COCO boxes (ANNOTATIONS json)."""
    cropper = train_detector(
        annotations,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        image_size=image_size,
        architecture=architecture,
        options={"score_threshold": score_threshold},
        seed=seed,
        device=device,
        on_epoch=lambda epoch, loss: click.echo(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}"),
    )
    save_box_cropper(cropper, out)
    click.echo(
        f"wrote {out / WEIGHTS_FILE} and {out / CONFIG_FILE}. Use it in a model spec as the view "
        f"{{name: box, options: {{engine: detector, architecture: {architecture}, "
        f"image_size: {image_size}}}}} and load it with "
        f"model.croppers[VIEW].load_detector('{out}')."
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``fashion train-detector``: trains the box cropper's detector."""
    cli.add_command(train_detector_command)
