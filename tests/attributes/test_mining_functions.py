"""Labelling functions: keywords with negation and scope, regexes, the taxonomy's words, the hook."""

from __future__ import annotations

import types

import pytest

from fashion import LabellingFunction, LabellingRow, build_component, get_component_info, hookimpl
from fashion.attributes.mining.functions import Keyword, Regex, taxonomy_functions
from fashion.contract.manager import register_plugin, unregister_plugin
from fashion.errors import ConfigError, DuplicateComponentError, PluginError

LABELS = ["sleeveless", "short", "long"]
SYNONYMS = {"no sleeves": "sleeveless", "sans manches": "sleeveless", "long sleeve": "long",
            "manches longues": "long", "short sleeve": "short", "kurzarm": "short"}


def _rows(*titles: str, field: str = "title") -> list[LabellingRow]:
    return [LabellingRow(id=str(i), text={field: t}) for i, t in enumerate(titles)]


def _keyword(label: str, *keywords: str, field: str = "title") -> Keyword:
    return Keyword({"label": label, "keywords": list(keywords), "field": field},
                   attribute="sleeve_length", labels=LABELS)


def test_keywords_match_whole_words_across_case_and_accents():
    f = _keyword("long", "Manches Longues", "long sleeve")
    rows = _rows("Robe MANCHES-LONGUES", "Long-Sleeve tee", "Sleeve detail", "long sleeveless top", "Manchés longues")
    assert f.votes(rows) == ["long", "long", None, None, "long"]
    assert _keyword("sleeveless", "sleeve").votes(_rows("Sleeveless dress")) == [None]


def test_negation_and_scope_are_not_claims():
    hood = Keyword({"label": "long", "keywords": ["hood"]}, attribute="a", labels=LABELS)
    assert hood.votes(_rows("Jacket with no hood", "Hood jacket, not lined", "Ohne hood",
                            "Hood. Not a raincoat")) == [None, "long", None, "long"]
    # a phrase that holds its own negation counts as the phrase
    sleeveless = _keyword("sleeveless", "no sleeves", "sans manches", "sleeveless")
    assert sleeveless.votes(_rows("Top with no sleeves", "Robe sans manches", "Not sleeveless")) == [
        "sleeveless", "sleeveless", None]
    long = _keyword("long", "long sleeve", field="description")
    rows = _rows("Cotton dress. Care: wash with long sleeve items.", "Machine wash cold, long sleeve",
                 "Long sleeve cut. Care instructions follow.", field="description")
    assert long.votes(rows) == [None, None, "long"]


def test_regex_and_fields():
    f = Regex({"label": "short", "pattern": r"\bss\d{2}\b", "field": "sku"}, attribute="sleeve_length", labels=LABELS)
    rows = [LabellingRow(id="1", values={"sku": "TS-SS24"}), LabellingRow(id="2", values={"sku": "LS24"}),
            LabellingRow(id="3")]
    assert f.votes(rows) == ["short", None, None]
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        Regex({"label": "short", "pattern": "(ss"}, attribute="sleeve_length", labels=LABELS)


def test_a_label_outside_the_attribute_is_refused():
    with pytest.raises(ConfigError, match="'medium', which is not a label of sleeve_length"):
        _keyword("medium", "three quarter")
    with pytest.raises(ConfigError, match="invalid options"):
        Keyword({"label": "long", "keywords": []}, attribute="sleeve_length", labels=LABELS)


def test_taxonomy_functions_one_per_label_and_field():
    functions = taxonomy_functions("sleeve_length", LABELS, SYNONYMS)
    assert [f.name for f in functions] == [f"{field}:{label}" for field in ("title", "description")
                                           for label in LABELS]
    rows = _rows("Kurzarm Shirt", "Sleeveless top", "Long dress", "Robe manches longues")
    votes = {f.name: f.votes(rows) for f in functions}
    assert votes["title:short"] == ["short", None, None, None]
    assert votes["title:sleeveless"] == [None, "sleeveless", None, None]
    assert votes["title:long"] == [None, None, None, "long"]  # "long" alone is no claim


def test_register_labelling_functions_hook_adds_a_function():
    class HoodInTitle(LabellingFunction):
        name = "test_hood_in_title"
        attributes = ("hood",)

        def votes(self, rows):
            return ["hooded" if "hood" in r.text.get("title", "").lower() else None for r in rows]

    plugin = types.ModuleType("lf_plugin")
    plugin.register_labelling_functions = hookimpl(lambda register: register(HoodInTitle))
    register_plugin(plugin, name="lf_plugin")
    try:
        info = get_component_info("labelling_function", "test_hood_in_title")
        assert info.plugin == "lf_plugin"
        built = build_component("labelling_function", "test_hood_in_title", attribute="hood",
                                labels=["hooded", "plain"])
        assert built.votes(_rows("Hooded parka", "Plain tee")) == ["hooded", None]
        assert built.describe()["kind"] == "test_hood_in_title"
        assert get_component_info("labelling_function", "keyword").distribution == "fashion-sdk"
        clash = types.ModuleType("lf_clash")
        clash.register_labelling_functions = hookimpl(
            lambda register: register(type("Other", (HoodInTitle,), {"name": "test_hood_in_title"})))
        register_plugin(clash, name="lf_clash")
        try:
            with pytest.raises(DuplicateComponentError, match="registered twice"):
                get_component_info("labelling_function", "keyword")
        finally:
            unregister_plugin(clash)
    finally:
        unregister_plugin(plugin)


def test_a_function_without_votes_is_refused_when_registered():
    class NoVotes(LabellingFunction):
        name = "test_no_votes"

    plugin = types.ModuleType("lf_broken")
    plugin.register_labelling_functions = hookimpl(lambda register: register(NoVotes))
    register_plugin(plugin, name="lf_broken")
    try:
        with pytest.raises(PluginError, match=r"votes\(\)"):
            get_component_info("labelling_function", "keyword")
    finally:
        unregister_plugin(plugin)
