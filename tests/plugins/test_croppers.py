"""The ``full`` and ``center`` croppers: sizes, aspect handling, and fine detail kept or lost."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

import fashion
from fashion import ConfigError, build_component
from fashion.plugins.croppers import CenterCropper, FullCropper


def _stripes(size: int = 512) -> Image.Image:
    """Alternating one-pixel black and white columns (period 2 px): the finest pattern there is."""
    columns = np.where(np.arange(size) % 2 == 0, 0, 255).astype(np.uint8)
    return Image.fromarray(np.tile(columns, (size, 1))).convert("RGB")


def _adjacent_difference(image: Image.Image) -> float:
    """Mean absolute difference between horizontally adjacent grey values (0-255)."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_registered_under_their_names() -> None:
    names = {r.name: r.cls for r in fashion.list_components("cropper")}
    assert names["full"] is FullCropper
    assert names["center"] is CenterCropper
    assert isinstance(build_component("cropper", "center"), CenterCropper)


@pytest.mark.parametrize("mode", ["squash", "letterbox"])
@pytest.mark.parametrize("source", [(640, 480), (100, 300), (50, 50)])
def test_full_view_sizes(mode: str, source: tuple[int, int]) -> None:
    views = FullCropper({"size": 96, "mode": mode}).crop(Image.new("L", source, 128))
    assert len(views) == 1
    assert views[0].image.size == (96, 96)
    assert views[0].image.mode == "RGB"
    assert views[0].box == (0, 0, *source)
    assert views[0].note is None


def _black_square_on_wide_image() -> Image.Image:
    image = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(image).rectangle((150, 50, 249, 149), fill="black")  # 100 x 100
    return image


def _black_extent(view: Image.Image) -> tuple[int, int]:
    dark = (np.asarray(view) < 100).all(axis=-1)  # black: not white, not the red padding
    xs, ys = np.flatnonzero(dark.any(axis=0)), np.flatnonzero(dark.any(axis=1))
    return int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)


def test_letterbox_keeps_a_square_square_and_pads_with_the_fill_color() -> None:
    view = FullCropper({"size": 100, "mode": "letterbox", "fill": "red"}).crop(
        _black_square_on_wide_image()
    )[0].image
    width, height = _black_extent(view)
    assert abs(width - height) <= 1 and 23 <= width <= 27  # 100 px at scale 1/4
    pixels = np.asarray(view)
    assert tuple(pixels[5, 50]) == (255, 0, 0)  # top band: padding
    assert tuple(pixels[95, 50]) == (255, 0, 0)  # bottom band: padding
    assert tuple(pixels[30, 5]) == (255, 255, 255)  # inside the image: its own white


def test_squash_stretches_the_square() -> None:
    view = FullCropper({"size": 100}).crop(_black_square_on_wide_image())[0].image
    width, height = _black_extent(view)
    assert height > 1.8 * width  # 400 x 200 squashed to 100 x 100: heights double


def test_full_fill_accepts_rgb_lists_and_rejects_unknown_colors() -> None:
    assert FullCropper({"fill": [1, 2, 3]}).options.fill == (1, 2, 3)
    rebuilt = FullCropper(FullCropper({"fill": "#102030"}).options_dict())
    assert rebuilt.options.fill == (16, 32, 48)
    with pytest.raises(ConfigError, match="fill"):
        FullCropper({"fill": "not-a-color"})
    with pytest.raises(ConfigError, match="fill"):
        FullCropper({"fill": [300, 0, 0]})


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    view = FullCropper({"size": 32}).crop(image)[0].image
    assert np.asarray(view).min() == 255


def test_center_keeps_fine_stripes_that_the_full_view_loses() -> None:
    image = _stripes(512)
    center = CenterCropper({"size": 224, "fraction": 224 / 512}).crop(image)[0]
    full = FullCropper({"size": 224}).crop(image)[0]
    assert center.box == (144, 144, 368, 368)  # 224 px at 1:1, no resampling
    assert center.image.size == full.image.size == (224, 224)
    assert _adjacent_difference(center.image) > 200  # stripes intact (255 when exact)
    assert _adjacent_difference(full.image) < 20  # blurred into grey
    grey = np.asarray(full.image.convert("L"), dtype=np.float32)
    assert abs(grey.mean() - 127.5) < 10 and grey.std() < 20


@pytest.mark.parametrize(
    ("source", "fraction", "box"),
    [
        ((600, 300), 1 / 3, (250, 100, 350, 200)),
        ((300, 600), 0.5, (75, 225, 225, 375)),
        ((90, 90), 1.0, (0, 0, 90, 90)),
    ],
)
def test_center_box_is_the_centered_square(
    source: tuple[int, int], fraction: float, box: tuple[int, int, int, int]
) -> None:
    view = CenterCropper({"size": 64, "fraction": fraction}).crop(Image.new("RGB", source))[0]
    assert view.box == box
    assert view.image.size == (64, 64)


def test_center_crop_shows_the_middle_of_the_image() -> None:
    image = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(image).rectangle((100, 100, 199, 199), fill="blue")  # the central third
    view = CenterCropper({"size": 50}).crop(image)[0].image
    assert (np.asarray(view)[..., 2] > 200).all() and np.asarray(view)[..., 0].max() < 30


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_center_fraction_is_validated(fraction: float) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        CenterCropper({"fraction": fraction})


def _photo(size: tuple[int, int] = (120, 90)) -> Image.Image:
    """A left-red / right-blue photo: a flip or a hue shift is visible in the view."""
    image = Image.new("RGB", size, (220, 30, 30))
    ImageDraw.Draw(image).rectangle((size[0] // 2, 0, size[0], size[1]), fill=(30, 40, 210))
    return image


AUGMENT = {"crop": 0.5, "flip": True, "rotate": 10, "blur": 0.5, "jpeg": 0.5, "hue": 0.3}


@pytest.mark.parametrize("cls", [FullCropper, CenterCropper])
def test_augmentation_runs_in_train_mode_only_and_keeps_the_view_size(cls) -> None:
    plain = cls({"size": 32})
    augmenting = cls({"size": 32, "augment": AUGMENT})
    photo = _photo()
    expected = np.asarray(plain.crop(photo)[0].image)
    # eval mode (prediction): the augment options change nothing
    assert np.array_equal(np.asarray(augmenting.eval().crop(photo)[0].image), expected)
    augmenting.train()
    views = [augmenting.crop(photo)[0] for _ in range(8)]
    assert all(v.image.size == (32, 32) and v.image.mode == "RGB" for v in views)
    assert any(not np.array_equal(np.asarray(v.image), expected) for v in views)
    assert views[0].box == plain.crop(photo)[0].box  # the box is the view's, not the random crop's


def test_augment_options_name_what_they_turn_on_and_stay_out_of_the_fingerprint() -> None:
    from fashion.plugins.croppers import AugmentOptions

    assert AugmentOptions().active() == []
    assert AugmentOptions(**AUGMENT).active() == ["crop", "flip", "rotate", "blur", "jpeg", "hue"]
    augmenting = FullCropper({"size": 32, "augment": {"flip": True}})
    assert augmenting.augmentations() == ["flip"] and FullCropper({"size": 32}).augmentations() == []
    # prediction-time views do not depend on augmentation: same fingerprint, options recorded
    assert augmenting.fingerprint() == FullCropper({"size": 32}).fingerprint()
    assert augmenting.options_dict()["augment"]["flip"] is True
    with pytest.raises(ConfigError):
        build_component("cropper", "full", {"augment": {"hue": 0.9}})
    with pytest.raises(ConfigError):
        build_component("cropper", "full", {"augment": {"sharpen": 1}})


def test_a_flip_mirrors_the_view() -> None:
    cropper = FullCropper({"size": 32, "augment": {"flip": True}}).train()
    lefts = {tuple(np.asarray(cropper.crop(_photo())[0].image)[16, 2]) for _ in range(30)}
    assert any(p[0] > 150 for p in lefts) and any(p[2] > 150 for p in lefts)  # red and blue on the left
