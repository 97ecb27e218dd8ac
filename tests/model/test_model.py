"""Model assembly: views -> backbones -> fusion -> heads, missing modalities, training."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from fashion import ConfigError, DataError, FashionModel
from fashion.model.inputs import ProductError
from tests.tiny_plugin import TINY_SPEC


def _image(color: str, size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


PRODUCTS = [
    {"id": "a", "images": [_image("red")], "title": "red dress"},
    {"id": "b", "title": "blue shirt"},  # text only
    {"id": "c", "images": [_image("blue"), _image("navy", (10, 50))]},  # image only, two images
]


def test_forward_shapes_and_masks(tiny):
    model = FashionModel(TINY_SPEC)
    batch = model.prepare(PRODUCTS)
    features, masks = model.encode(batch)
    assert features["image:full"].shape == (3, 8)
    assert masks["image:full"].tolist() == [True, False, True]
    assert masks["text"].tolist() == [True, True, False]
    assert torch.all(features["image:full"][1] == 0) and torch.all(features["text"][2] == 0)
    logits = model(batch)
    assert logits["color"].shape == (3, 2) and logits["category"].shape == (3, 3)


def test_several_images_are_averaged(tiny):
    model = FashionModel(TINY_SPEC)
    one = model.encode(model.prepare([{"images": [_image("blue")]}]))[0]["image:full"]
    two = model.encode(model.prepare([{"images": [_image("blue"), _image("blue")]}]))[0]
    torch.testing.assert_close(one, two["image:full"])


def test_images_from_paths_and_bytes(tiny, tmp_path):
    path = tmp_path / "p.png"
    _image("green").save(path)
    buffer = io.BytesIO()
    _image("green").save(buffer, format="PNG")
    model = FashionModel(TINY_SPEC)
    a = model.encode(model.prepare([{"images": [str(path)]}]))[0]["image:full"]
    b = model.encode(model.prepare([{"images": [buffer.getvalue()]}]))[0]["image:full"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "source, match",
    [("missing.png", "does not exist"), ("empty.png", "0 bytes"), ("corrupt.png", "cannot decode")],
)
def test_bad_images_name_the_product_and_file(tiny, tmp_path, source, match):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"not an image at all")
    model = FashionModel(TINY_SPEC)
    products = [{"id": "ok", "title": "x"}, {"id": "bad", "images": [str(tmp_path / source)]}]
    with pytest.raises(ProductError, match=match) as info:
        model.prepare(products)
    assert info.value.row == 1 and info.value.product_id == "bad"
    assert isinstance(info.value, DataError) and "bad" in str(info.value)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_prepare_is_the_same_with_and_without_crop_threads(tiny, tmp_path, monkeypatch, threads):
    """Images are cut in a thread pool; views keep their order and the first bad row raises."""
    monkeypatch.setenv("FASHION_PREPARE_THREADS", threads)
    model = FashionModel(TINY_SPEC)
    colors = ["red", "blue", "green", "navy", "white", "black", "orange"]
    products = [{"id": c, "images": [_image(c), _image(colors[-1 - i])]} for i, c in enumerate(colors)]
    batch = model.prepare(products)
    pixels, owners = batch.inputs["image:full"]
    assert owners.tolist() == [r for r in range(len(colors)) for _ in range(2)]
    expected = model.backbones["image"].preprocess(
        [model.croppers["full"].crop(_image(c))[0].image for i, c in enumerate(colors)
         for c in (c, colors[-1 - i])])
    torch.testing.assert_close(pixels, expected, rtol=0, atol=0)
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    bad = [*products[:2], {"id": "bad1", "images": [str(tmp_path / "missing.png")]},
           {"id": "bad2", "images": [str(tmp_path / "corrupt.png")]}]
    with pytest.raises(ProductError, match="does not exist") as info:
        model.prepare(bad)
    assert info.value.product_id == "bad1"


def test_prepare_threads_setting_must_be_a_number(tiny, monkeypatch):
    monkeypatch.setenv("FASHION_PREPARE_THREADS", "many")
    with pytest.raises(ConfigError, match="FASHION_PREPARE_THREADS"):
        FashionModel(TINY_SPEC).prepare([{"images": [_image("red")]}, {"images": [_image("red")]}])


def test_transparent_pixels_become_white_not_black():
    from fashion.data.images import load_image

    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (200, 10, 10, 255))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    for source in (rgba, buffer.getvalue()):
        image = load_image(source)
        assert image.mode == "RGB"
        assert image.getpixel((3, 3)) == (255, 255, 255) and image.getpixel((0, 0)) == (200, 10, 10)
    rgb = _image("red")
    assert load_image(rgb) is rgb  # no copy of an RGB image


def test_unknown_product_fields_are_refused(tiny):
    model = FashionModel(TINY_SPEC)
    with pytest.raises(DataError, match="titel"):
        model.prepare([{"titel": "typo"}])


def test_training_step_lowers_the_loss_on_a_fixed_batch(tiny):
    torch.manual_seed(0)
    model = FashionModel(TINY_SPEC)
    batch = model.prepare(PRODUCTS)
    targets = {
        "color": model.task("color").encode(["red", "blue", None]),
        "category": model.task("category").encode(["dress", "shirt", "pants"]),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)

    def step() -> float:
        loss = sum(model.losses(model(batch), targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    first = step()
    for _ in range(15):
        last = step()
    assert last < first * 0.5


def test_masked_labels_give_no_gradient(tiny):
    model = FashionModel(TINY_SPEC)
    batch = model.prepare(PRODUCTS)
    targets = {"color": model.task("color").encode([None, None, None])}
    loss = sum(model.losses(model(batch), targets).values())
    loss.backward()
    assert float(loss.detach()) == 0.0
    grads = [p.grad for p in model.heads["color"].parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def test_predict_decodes_string_labels_and_abstains(tiny):
    spec = {**TINY_SPEC, "attributes": {**TINY_SPEC["attributes"]}}
    spec["attributes"]["color"] = {**spec["attributes"]["color"], "threshold": 0.99}
    model = FashionModel(spec)
    out = model.predict(PRODUCTS)
    assert len(out) == 3
    assert out[0]["category"].label in {"dress", "shirt", "pants"}
    assert out[0]["color"].abstained and out[0]["color"].label is None
    assert [label for label, _ in out[0]["color"].top_k] == sorted(
        ["red", "blue"], key=lambda lab: -dict(out[0]["color"].top_k)[lab]
    )


def test_add_attribute_and_freeze(tiny):
    model = FashionModel(TINY_SPEC)
    model.add_head("pattern", model.spec.attributes["color"].model_copy(
        update={"labels": ["solid", "striped"]}))
    assert model(model.prepare(PRODUCTS))["pattern"].shape == (3, 2)
    model.freeze(["backbones", "fusion", "heads/color", "heads/category"])
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"pattern"}
    with pytest.raises(ConfigError, match="already has"):
        model.add_head("pattern", model.spec.attributes["color"])
    with pytest.raises(ConfigError, match="unknown freeze group"):
        model.freeze(["everything"])


def test_backbone_modality_must_match_views(tiny):
    spec = {**TINY_SPEC, "backbones": {**TINY_SPEC["backbones"]}}
    spec["backbones"]["text"] = {"name": "tiny_text", "views": ["full"]}
    with pytest.raises(ConfigError, match="cannot read image views"):
        FashionModel(spec)
