"""Model specs: validation errors name the field and what is wrong; files load."""

from __future__ import annotations

import json

import pytest

from fashion import ConfigError, ModelSpec
from tests.tiny_plugin import TINY_SPEC


def test_spec_round_trips_through_json(tmp_path):
    spec = ModelSpec.parse(TINY_SPEC)
    path = tmp_path / "spec.json"
    path.write_text(spec.model_dump_json())
    assert ModelSpec.load(path) == spec
    assert spec.input_names() == ["image:full", "text"]


def test_spec_loads_toml_and_yaml(tmp_path):
    toml = tmp_path / "spec.toml"
    toml.write_text(
        '[views.full]\nname = "tiny_crop"\n[backbones.image]\nname = "tiny_image"\n'
        'views = ["full"]\n[attributes.color]\nlabels = ["red", "blue"]\n'
    )
    yaml = tmp_path / "spec.yaml"
    yaml.write_text(json.dumps(TINY_SPEC))  # JSON is valid YAML
    assert ModelSpec.load(toml).attributes["color"].labels == ["red", "blue"]
    assert ModelSpec.load(yaml).backbones["text"].name == "tiny_text"


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s["backbones"]["image"].update(views=["zoom"]), "zoom"),
        (lambda s: s.update(extra_key=1), "extra_key"),
        (lambda s: s["attributes"].update({"Sleeve Length": {"labels": ["a", "b"]}}), "lowercase"),
        (lambda s: s["attributes"]["color"].update(synonyms={"ruby": "crimson"}), "crimson"),
        (lambda s: s["attributes"]["color"].update(labels=["red", "red"]), "duplicate"),
        (lambda s: s["views"].update(extra={"name": "tiny_crop"}), "no backbone reads"),
        (lambda s: s.update(backbones={}), "at least one backbone"),
    ],
)
def test_invalid_specs_are_explained(change, match):
    spec = json.loads(json.dumps(TINY_SPEC))
    change(spec)
    with pytest.raises(ConfigError, match=match):
        ModelSpec.parse(spec)


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="bad.toml"):
        ModelSpec.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        ModelSpec.load(tmp_path / "missing.yaml")
