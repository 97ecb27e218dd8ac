"""The plugin manager: registration path, validation, duplicates, provenance."""

from __future__ import annotations

import types

import pytest

from fashion import (
    Backbone,
    Head,
    PluginError,
    UnknownComponentError,
    build_component,
    get_registration,
    hookimpl,
    list_components,
)
from fashion.errors import DuplicateComponentError
from fashion.manager import DEFAULT_PLUGINS, get_plugin_manager, register_plugin, unregister_plugin


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_register_backbones_hook_records_plugin_and_kind(tiny):
    registration = get_registration("backbone", "tiny_image")
    assert registration.kind == "backbone"
    assert registration.plugin == "tests.tiny_plugin"
    assert registration.cls.modality == "image"
    described = registration.describe()
    assert described["options_schema"]["properties"]["width"]["default"] == 8


def test_register_heads_hook(tiny):
    assert get_registration("head", "tiny_head").cls.__name__ == "TinyHead"


def test_register_croppers_hook(tiny):
    assert "tiny_crop" in {r.name for r in list_components("cropper")}


def test_register_fusions_hook(tiny):
    assert "tiny_concat" in {r.name for r in list_components("fusion")}


def test_unregistering_removes_components(tiny):
    unregister_plugin(name="tests.tiny_plugin")
    try:
        with pytest.raises(UnknownComponentError, match="fashion install"):
            get_registration("backbone", "tiny_image")
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
    class Again(Backbone):
        name = "tiny_image"
        modality = "image"

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
    assert get_registration("backbone", "tiny_image").plugin == "tests.tiny_plugin"


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
