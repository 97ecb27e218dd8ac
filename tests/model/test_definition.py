"""One attribute definition: taxonomies, specs and bundle entries are the same model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fashion import AttributeSpec, ConfigError, ModelSpec
from fashion.model.taxonomy import Taxonomy
from fashion.model.taxonomy_files import load_taxonomy
from fashion.registry.bundle_format import AttributeEntry


def test_taxonomy_spec_and_bundle_entry_are_one_model() -> None:
    assert issubclass(Taxonomy, AttributeSpec)
    assert AttributeEntry is AttributeSpec
    sleeves = load_taxonomy("sleeve_length")
    spec = sleeves.spec()
    assert type(spec) is AttributeSpec
    assert spec.labels == sleeves.labels and spec.applies_to == sleeves.applies_to
    assert "pants" not in spec.applies_to["category"]


@pytest.mark.parametrize("raw", ["n/a", "N/A", "none", "-", "  --  ", "not applicable"])
def test_vendor_not_applicable_values_resolve_to_not_applicable(raw: str) -> None:
    resolution = load_taxonomy("sleeve_length").resolve(raw)
    assert resolution.not_applicable and resolution.label is None
    assert not resolution.unknown and not resolution.missing


def test_a_label_spelled_like_a_not_applicable_word_wins() -> None:
    fit = Taxonomy(name="closure", labels=["zip", "none"], not_applicable=["no closure info"])
    assert fit.resolve("None").label == "none"
    assert fit.resolve("no closure info").not_applicable
    assert fit.resolve("velcro").unknown


def test_old_bundle_entries_load_with_defaults() -> None:
    old = {"labels": ["red", "blue"], "head": "linear", "multilabel": False, "synonyms": {},
           "threshold": 0.0, "description": ""}
    entry = AttributeEntry.model_validate(old)
    assert entry.head.name == "linear"
    assert entry.calibration is None and entry.abstention is None and entry.applies_to == {}


def test_multilabel_head_marks_the_attribute_multilabel() -> None:
    assert AttributeSpec(labels=["a", "b"], head={"name": "multilabel"}).multilabel
    assert AttributeSpec(labels=["a", "b"], multilabel=True).head.name == "multilabel"


def _spec(applies_to: dict[str, list[str]]) -> dict[str, object]:
    return {
        "views": {},
        "backbones": {"text": {"name": "tiny_text"}},
        "attributes": {
            "category": {"labels": ["dress", "pants"]},
            "sleeve_length": {"labels": ["short", "long"], "applies_to": applies_to},
        },
    }


def test_applies_to_is_checked_against_the_model() -> None:
    ModelSpec.parse(_spec({"category": ["dress"]}))
    with pytest.raises(ConfigError, match="not another attribute"):
        ModelSpec.parse(_spec({"fabric": ["wool"]}))
    with pytest.raises(ConfigError, match="not labels of 'category'"):
        ModelSpec.parse(_spec({"category": ["bag"]}))
    with pytest.raises(ValidationError, match="lists no labels"):
        AttributeSpec(labels=["a", "b"], applies_to={"category": []})


def test_applies_answers_true_false_or_unknown() -> None:
    spec = AttributeSpec(labels=["short", "long"], applies_to={"category": ["dress"]})
    assert spec.applies({"category": "dress"}) is True
    assert spec.applies({"category": "pants"}) is False
    assert spec.applies({}) is None
    assert AttributeSpec(labels=["a", "b"]).applies({}) is True
