"""The ``box`` cropper: foreground boxes, the trainable detector, its save/load and its command."""

from __future__ import annotations

import json
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

import fashion
from fashion import ConfigError, DataError, build_component
from fashion.plugins.box import NO_GARMENT, BoxCropper, _components, load_box_cropper
from fashion.plugins.box_training import read_coco, train_detector, train_detector_command
from fashion.plugins.croppers import CenterCropper, FullCropper

SHAPE = (300, 40, 460, 200)  # an off-center garment in a 512 x 512 shot


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return w * h / (area - w * h)


def _contains(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    return all(o <= i for o, i in zip(outer[:2], inner[:2], strict=True)) and all(
        o >= i for o, i in zip(outer[2:], inner[2:], strict=True)
    )


def _garment_shot(background: str | tuple[int, int, int] = "white") -> Image.Image:
    """A dress-ish shape (body plus sleeves) inside SHAPE, off center."""
    image = Image.new("RGB", (512, 512), background)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = SHAPE
    outline = [(340, top), (420, top), (right - 1, bottom - 1), (left, bottom - 1)]
    draw.polygon(outline, fill=(180, 30, 60))
    draw.rectangle((left, top + 20, right - 1, top + 50), fill=(150, 20, 50))  # sleeves
    return image


def test_registered_as_box_beside_full_and_center() -> None:
    names = {r.name: r.cls for r in fashion.list_components("cropper")}
    assert {"full", "center", "box"} <= set(names)
    assert names["box"] is BoxCropper
    assert (names["full"], names["center"]) == (FullCropper, CenterCropper)
    assert isinstance(build_component("cropper", "box", {"size": 32}), BoxCropper)


# ------------------------------------------------------------------------------ foreground


@pytest.mark.parametrize("background", ["white", (236, 226, 208)])  # white, then beige
def test_foreground_finds_an_off_center_garment(background: str | tuple[int, int, int]) -> None:
    views = BoxCropper().crop(_garment_shot(background))
    assert len(views) == 1
    view = views[0]
    assert view.note is None
    assert view.image.size == (224, 224)
    assert _contains(view.box, SHAPE)
    assert _iou(view.box, SHAPE) > 0.6
    width, height = view.box[2] - view.box[0], view.box[3] - view.box[1]
    assert width == height  # square
    red = np.asarray(view.image)[..., 0] < 200  # garment pixels fill a good part of the view
    assert red.mean() > 0.3


def test_box_follows_the_options() -> None:
    tight = BoxCropper({"padding": 0.0, "square": False, "size": 64}).crop(_garment_shot())[0]
    assert tight.image.size == (64, 64)
    assert _iou(tight.box, SHAPE) > 0.9
    loose = BoxCropper({"padding": 0.25}).crop(_garment_shot())[0]
    assert _contains(loose.box, tight.box) and _iou(loose.box, SHAPE) < 0.5


def test_square_box_near_an_edge_is_shifted_inside_the_image() -> None:
    image = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(image).rectangle((0, 100, 39, 279), fill="navy")  # tall, at the left edge
    view = BoxCropper().crop(image)[0]
    left, top, right, bottom = view.box
    assert left == 0 and right - left == bottom - top  # still square, not clipped
    assert _contains(view.box, (0, 100, 40, 280))


def test_plain_image_falls_back_to_the_full_view_with_a_note() -> None:
    views = BoxCropper({"size": 96}).crop(Image.new("RGB", (300, 200), "white"))
    assert len(views) == 1
    assert views[0].note == NO_GARMENT
    assert views[0].box == (0, 0, 300, 200)
    assert views[0].image.size == (96, 96)


def _two_objects() -> Image.Image:
    image = Image.new("RGB", (512, 512), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 60, 189, 259), fill="darkgreen")  # large
    draw.ellipse((330, 330, 449, 449), fill="orange")  # smaller
    return image


def test_two_objects_give_two_views_largest_first() -> None:
    views = BoxCropper({"max_boxes": 2, "size": 48}).crop(_two_objects())
    assert [v.image.size for v in views] == [(48, 48), (48, 48)]
    assert _contains(views[0].box, (30, 60, 190, 260))
    assert _contains(views[1].box, (330, 330, 450, 450))
    assert not _contains(views[1].box, (30, 60, 190, 260))
    one = BoxCropper({"max_boxes": 1}).crop(_two_objects())
    assert [v.box for v in one] == [views[0].box]


def test_min_area_drops_small_components() -> None:
    image = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(image).rectangle((100, 100, 139, 139), fill="black")  # 0.6% of the image
    assert BoxCropper().crop(image)[0].note == NO_GARMENT  # default min_area 1%
    found = BoxCropper({"min_area": 0.001}).crop(image)[0]
    assert found.note is None and _contains(found.box, (100, 100, 140, 140))


def test_explicit_threshold_ignores_faint_marks() -> None:
    image = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(image).rectangle((60, 60, 189, 189), fill=(225, 225, 225))  # faint grey
    assert BoxCropper().crop(image)[0].note is None  # distance 52 > auto threshold 24
    assert BoxCropper({"threshold": 80.0}).crop(image)[0].note == NO_GARMENT


def _reference_components(mask: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Plain breadth-first 8-connected labeling, for comparison."""
    seen = np.zeros_like(mask)
    out = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue, pixels = deque([(y0, x0)]), []
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        ys, xs = zip(*pixels, strict=True)
        out.append((len(pixels), (min(xs), min(ys), max(xs) + 1, max(ys) + 1)))
    return out


@pytest.mark.parametrize("density", [0.2, 0.4])
def test_connected_components_match_a_reference(density: float) -> None:
    mask = np.random.default_rng(7).random((40, 50)) < density
    ours = sorted((int(a), tuple(int(v) for v in b)) for a, b in _components(mask))
    assert ours == sorted(_reference_components(mask))
    assert len(ours) > 5


# -------------------------------------------------------------------------------- detector


def _rectangles(count: int, size: int = 128) -> list[tuple[Image.Image, list[tuple[int, ...]]]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), "white")
        w, h = rng.integers(size // 4, size // 2, 2)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        box = (int(x), int(y), int(x + w), int(y + h))
        color = tuple(int(c) for c in rng.integers(0, 180, 3))
        ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=color)
        out.append((image, [box]))
    return out


def test_detector_training_lowers_the_loss() -> None:
    losses: list[float] = []
    cropper = train_detector(
        _rectangles(8),
        epochs=3,
        batch_size=4,
        image_size=128,
        architecture="ssdlite320_mobilenet_v3_large",
        on_epoch=lambda epoch, loss: losses.append(loss),
        device="cpu",
    )
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]
    assert cropper.options.engine == "detector" and not cropper.training
    assert cropper.options.architecture == "ssdlite320_mobilenet_v3_large"
    assert cropper.trained.item() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trained detector does not warn
        views = cropper.crop(_rectangles(1)[0][0])
    assert views and all(v.image.size == (224, 224) for v in views)


def _random_detector(**options: object) -> BoxCropper:
    torch.manual_seed(0)
    settings = {"engine": "detector", "image_size": 128, "size": 64, **options}
    return build_component("cropper", "box", settings)


def test_detector_weights_round_trip_strictly_through_safetensors(tmp_path: Path) -> None:
    cropper = _random_detector(score_threshold=0.0, max_boxes=3, min_area=0.0)
    cropper.trained.fill_(1)  # pretend: the boxes of random weights are as good as any here
    cropper.train()  # crop() must still run the detector in eval mode, then restore
    image = _garment_shot()
    views = cropper.crop(image)
    assert cropper.training and cropper.detector.training
    assert len(views) == 3 and all(v.note is None for v in views)

    path = tmp_path / "box.safetensors"
    save_file({k: v.contiguous() for k, v in cropper.state_dict().items()}, str(path))
    torch.manual_seed(1)  # a differently initialised twin
    twin = build_component("cropper", "box", cropper.options_dict())
    assert twin.fingerprint() != cropper.fingerprint()
    twin.load_state_dict(load_file(str(path)), strict=True)
    assert twin.fingerprint() == cropper.fingerprint() and twin.trained.item() == 1
    again = twin.crop(image)
    assert [v.box for v in again] == [v.box for v in views]
    for a, b in zip(again, views, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_foreground_engine_has_no_weights() -> None:
    assert BoxCropper().state_dict() == {}


def test_untrained_detector_finds_nothing_and_falls_back() -> None:
    cropper = _random_detector(score_threshold=0.99)
    with pytest.warns(UserWarning, match="random weights"):
        views = cropper.crop(_garment_shot())
    assert len(views) == 1
    assert views[0].note == NO_GARMENT
    assert views[0].box == (0, 0, 512, 512) and views[0].image.size == (64, 64)


def _write_coco(folder: Path, count: int = 4) -> Path:
    images, annotations = [], []
    for i, (image, boxes) in enumerate(_rectangles(count, size=96)):
        name = f"img/{i}.png"
        (folder / "img").mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
        images.append({"id": i + 1, "file_name": name, "width": 96, "height": 96})
        for left, top, right, bottom in boxes:
            bbox = [left, top, right - left, bottom - top]
            annotations.append({"id": len(annotations), "image_id": i + 1, "bbox": bbox,
                                "category_id": 1})
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "garment"}]}))
    return path


def test_train_detector_command_writes_a_loadable_cropper(tmp_path: Path) -> None:
    annotations = _write_coco(tmp_path / "data")
    out = tmp_path / "detector"
    result = CliRunner().invoke(
        train_detector_command,
        [str(annotations), "--out", str(out), "--epochs", "1", "--batch-size", "4",
         "--image-size", "96", "--architecture", "ssdlite320_mobilenet_v3_large",
         "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "epoch 1/1: loss" in result.output
    config = json.loads((out / "cropper.json").read_text())
    assert config["name"] == "box"
    assert config["options"]["engine"] == "detector"
    assert config["options"]["image_size"] == 96
    tensors = load_file(str(out / "cropper.safetensors"))
    assert any(k.startswith("detector.") for k in tensors)

    loaded = load_box_cropper(out)
    assert set(loaded.state_dict()) == set(tensors)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tensors.items())
    assert loaded.trained.item() == 1
    # The way into a model: a spec view with the same options, then load_detector(out).
    view = build_component("cropper", "box", {"engine": "detector", "image_size": 96,
                                              "architecture": "ssdlite320_mobilenet_v3_large"})
    view.load_detector(out)
    assert view.fingerprint() == loaded.fingerprint()
    with pytest.raises(ConfigError, match="architecture"):
        _random_detector().load_detector(out)
    with pytest.raises(ConfigError, match="foreground"):
        BoxCropper().load_detector(out)


def test_read_coco_reports_missing_images(tmp_path: Path) -> None:
    path = _write_coco(tmp_path, count=2)
    found = read_coco(path)
    assert [len(boxes) for _, boxes in found] == [1, 1]
    (tmp_path / "img" / "1.png").unlink()
    with pytest.raises(DataError, match="do not exist"):
        read_coco(path)
    path.write_text("{}")
    with pytest.raises(DataError, match="COCO"):
        read_coco(path)


def test_train_detector_reaches_the_cli_through_register_commands():
    import click

    from fashion.contract.manager import get_plugin_manager
    from fashion.plugins import box_training

    plugins = [i.plugin_name for i in get_plugin_manager().hook.register_commands.get_hookimpls()]
    assert "fashion.plugins.box_training" in plugins
    group = click.Group()
    box_training.register_commands(cli=group)
    assert group.commands["train-detector"] is train_detector_command
