"""The input layer: typed input names (the ``key:view`` form bundles and fusions use) and prepare's threads."""

from __future__ import annotations

import pytest

from fashion import ConfigError, ModelSpec
from fashion.model.spec import InputName
from tests.tiny_plugin import TINY_SPEC


def test_input_name_round_trips_through_its_string_form():
    assert str(InputName("image", "front")) == "image:front"
    assert str(InputName("text")) == "text"
    assert InputName.parse("image:front") == InputName("image", "front")
    assert InputName.parse("text") == InputName("text") and not InputName("text").is_image
    for name in ModelSpec.parse(TINY_SPEC).input_names():
        assert str(InputName.parse(name)) == name


def test_input_name_parts_may_not_hold_the_separator():
    with pytest.raises(ConfigError, match="':'"):
        InputName("a:b", "front")
    with pytest.raises(ConfigError, match="empty"):
        InputName("image", "")


def test_augmented_views_do_not_depend_on_how_many_threads_cut_them(tiny, tmp_path, monkeypatch):
    """prepare cuts a batch's images in a thread pool; each augmenting image draws from its own
    generator, seeded in the batch's order, so a seed gives the same views with 1 thread or 4,
    however the threads finish (the decode of earlier images is made slower here: with draws from
    the shared global `random`, the threads' order decided the augmentations)."""
    import random
    import time

    import numpy as np
    import torch
    from PIL import Image

    import fashion.model.inputs as inputs
    from fashion import FashionModel
    from tests.tiny_plugin import TINY_SPEC

    spec = {**TINY_SPEC, "views": {"full": {"name": "full", "options": {
        "size": 16, "augment": {"crop": 0.5, "flip": True, "rotate": 20}}}}}
    model = FashionModel(spec)
    model.croppers["full"].train()
    paths = []
    for i in range(8):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    products = [{"id": f"p{i}", "images": [str(p)]} for i, p in enumerate(paths)]
    real = inputs.load_image

    def slow_first(source, **kw):
        time.sleep(0.004 * (8 - paths.index(source)) if source in paths else 0)
        return real(source, **kw)

    monkeypatch.setattr(inputs, "load_image", slow_first)
    views = {}
    for threads in ("1", "4"):
        monkeypatch.setenv("FASHION_PREPARE_THREADS", threads)
        random.seed(0)
        views[threads] = model.prepare([{**p, "images": [paths[i]]} for i, p in enumerate(products)])
    one, four = (views[t].inputs["image:full"][0] for t in ("1", "4"))
    assert torch.equal(one, four)
    random.seed(1)
    assert not torch.equal(model.prepare([{**p, "images": [paths[i]]} for i, p in enumerate(products)])
                           .inputs["image:full"][0], one)  # another seed, other augmentations


def test_augment_seed_gives_one_generator_per_block_and_nests():
    import random

    from fashion.data.images import augment_random, augment_seed

    with augment_seed(7):
        first = augment_random().random()
        with augment_seed(8):
            inner = augment_random()
        assert augment_random() is not inner  # the outer generator is back
    with augment_seed(7):
        assert augment_random().random() == first
    random.seed(3)
    loose = augment_random().random()  # outside a block: seeded from the global random
    random.seed(3)
    assert augment_random().random() == loose
