"""The input layer's typed input names (the ``key:view`` form bundles and fusions use)."""

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
