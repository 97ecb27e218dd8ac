"""The plugin manager: registration path, validation, duplicates, provenance."""

from __future__ import annotations

import types

import pytest

from fashion import (
    Head,
    PluginError,
    UnknownComponentError,
    build_component,
    get_component_info,
    hookimpl,
    list_components,
)
from fashion.contract.manager import (
    DEFAULT_PLUGINS,
    get_plugin_manager,
    register_plugin,
    unregister_plugin,
)
from fashion.errors import DuplicateComponentError


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_register_backbones_hook_records_plugin_and_kind(tiny):
    registration = get_component_info("backbone", "tiny_image")
    assert registration.kind == "backbone"
    assert registration.plugin == "tests.tiny_plugin"
    assert registration.cls.modality == "image"
    described = registration.describe()
    assert described["options_schema"]["properties"]["width"]["default"] == 8


def test_register_heads_hook(tiny):
    assert get_component_info("head", "tiny_head").cls.__name__ == "TinyHead"


def test_register_croppers_hook(tiny):
    assert "tiny_crop" in {r.name for r in list_components("cropper")}


def test_register_fusions_hook(tiny):
    assert "tiny_concat" in {r.name for r in list_components("fusion")}


def test_unregistering_removes_components(tiny):
    unregister_plugin(name="tests.tiny_plugin")
    try:
        with pytest.raises(UnknownComponentError, match="fashion install"):
            get_component_info("backbone", "tiny_image")
    finally:
        register_plugin(tiny, name="tests.tiny_plugin")


def test_builtins_register_through_the_same_hooks():
    pm = get_plugin_manager()
    registered = {name for name, _ in pm.list_name_plugin()}
    loaded = [m for m in DEFAULT_PLUGINS if m in registered]
    assert loaded, "no built-in plugin module was registered"
    for registration in list_components():
        if registration.plugin in DEFAULT_PLUGINS:
            assert registration.distribution == "fashion-sdk"
            assert registration.version


def test_duplicate_names_are_refused_naming_both(tiny):
    from tests.tiny_plugin import TinyImage

    class Again(TinyImage):
        name = "tiny_image"

    def register_backbones(register):
        register(Again)

    register_plugin(_plugin(register_backbones=register_backbones), name="dupe")
    try:
        with pytest.raises(DuplicateComponentError) as info:
            list_components()
        message = str(info.value)
        assert "tiny_image" in message and "tests.tiny_plugin" in message and "dupe" in message
    finally:
        unregister_plugin(name="dupe")
    assert get_component_info("backbone", "tiny_image").plugin == "tests.tiny_plugin"


@pytest.mark.parametrize(
    "bad, match",
    [
        (object, "not a subclass"),
        (type("NoName", (Head,), {"name": ""}), "invalid name"),
        (type("Caps", (Head,), {"name": "BadName"}), "invalid name"),
    ],
)
def test_invalid_registrations_are_refused(bad, match):
    def register_heads(register):
        register(bad)

    register_plugin(_plugin(register_heads=register_heads), name="bad")
    try:
        with pytest.raises(PluginError, match=match):
            list_components()
    finally:
        unregister_plugin(name="bad")


def test_options_are_validated_with_field_names(tiny):
    with pytest.raises(Exception) as info:
        build_component("backbone", "tiny_image", {"widht": 3})
    assert "widht" in str(info.value) and "width" in str(info.value)
    backbone = build_component("backbone", "tiny_image", {"width": 3})
    assert backbone.output_dim == 3 and backbone.component_name == "tiny_image"


def test_unknown_component_lists_installed(tiny):
    with pytest.raises(UnknownComponentError) as info:
        build_component("head", "nope")
    assert "tiny_head" in str(info.value)
    with pytest.raises(UnknownComponentError, match="kinds"):
        list_components("gizmo")


# ------------------------------------------------------------------ the contract is enforced


def _register_one(hook: str, component: type, plugin_name: str) -> None:
    def register_hook(register):
        register(component)

    register_plugin(_plugin(**{hook: register_hook}), name=plugin_name)


def test_a_component_missing_a_required_method_is_refused_naming_plugin_and_method(tiny):
    from fashion import Fusion

    class NoForward(Fusion):
        name = "no_forward"

        def __init__(self, options=None, *, input_dims):
            super().__init__(options, input_dims=input_dims)
            self.output_dim = 4

    _register_one("register_fusions", NoForward, "broken_fusion")
    try:
        with pytest.raises(PluginError) as info:
            list_components()
        message = str(info.value)
        assert "plugin 'broken_fusion'" in message
        assert "fusion 'no_forward'" in message and "forward()" in message
    finally:
        unregister_plugin(name="broken_fusion")


def test_an_image_backbone_missing_preprocess_parts_is_refused(tiny):
    from fashion import TextBackbone

    class NoPreprocess(TextBackbone):
        name = "no_preprocess"

        def forward(self, batch):
            return batch

    _register_one("register_backbones", NoPreprocess, "broken_text")
    try:
        with pytest.raises(PluginError, match=r"plugin 'broken_text'.*preprocess\(\)"):
            list_components()
    finally:
        unregister_plugin(name="broken_text")


def test_a_wrong_output_dim_is_refused_at_build_time_naming_plugin_and_method(tiny):
    from tests.tiny_plugin import TinyImage

    class Liar(TinyImage):
        name = "liar_image"

        def __init__(self, options=None, *, assets=None, pretrained=True):
            super().__init__(options)
            self.output_dim = self.options.width + 3  # forward() returns `width` features

    _register_one("register_backbones", Liar, "liar_plugin")
    try:
        with pytest.raises(PluginError) as info:
            build_component("backbone", "liar_image", {"width": 8})
        message = str(info.value)
        assert "plugin 'liar_plugin'" in message and "backbone 'liar_image'" in message
        assert "output_dim = 11" in message and "forward()" in message and "(2, 8)" in message
    finally:
        unregister_plugin(name="liar_plugin")


def test_a_head_returning_the_wrong_number_of_logits_is_refused(tiny):
    from tests.tiny_plugin import TinyHead

    class Short(TinyHead):
        name = "short_head"

        def forward(self, x):
            return super().forward(x)[:, :1]

    _register_one("register_heads", Short, "short_plugin")
    try:
        with pytest.raises(PluginError, match=r"plugin 'short_plugin'.*head 'short_head'.*len\(labels\) = 3"):
            build_component("head", "short_head", input_dim=4, labels=["a", "b", "c"])
    finally:
        unregister_plugin(name="short_plugin")


def test_image_backbone_options_carry_the_resolved_preprocessing(tiny):
    backbone = build_component("backbone", "tiny_image", {"width": 4})
    assert backbone.options_dict()["preprocessing"] == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]
    }
    custom = build_component(
        "backbone", "tiny_image", {"preprocessing": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    )
    assert custom.mean == (0.5, 0.5, 0.5)
    assert custom.fingerprint() != build_component("backbone", "tiny_image").fingerprint()


def test_typed_options_come_from_the_generic_parameter():
    from fashion.heads.linear import LinearHead, LinearOptions

    assert LinearHead.Options is LinearOptions
    head = LinearHead({"dropout": 0.1}, input_dim=3, labels=["a", "b"])
    assert isinstance(head.options, LinearOptions) and head.options.dropout == 0.1
