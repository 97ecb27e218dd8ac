from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from fashion.errors import ConfigError
from fashion.model.taxonomy import Resolution, Taxonomy, normalize_text
from fashion.model.taxonomy_files import (
    PROJECT_FILE,
    builtin_taxonomies,
    load_project_taxonomies,
    load_taxonomy,
    save_project_taxonomy,
)

EXPECTED_LABELS = {
    "category": ["t_shirt", "shirt", "dress", "pants", "skirt", "jacket", "sweater"],
    "color": ["red", "white", "black", "blue", "green", "yellow", "pink", "grey"],
    "pattern": ["solid", "striped", "polka_dot", "plaid", "floral"],
    "style": ["casual", "formal", "sporty"],
    "sleeve_length": ["sleeveless", "short", "long"],
}


def test_builtin_taxonomies_have_the_canonical_labels() -> None:
    builtins = builtin_taxonomies()
    assert {name: tax.labels for name, tax in builtins.items()} == EXPECTED_LABELS
    for tax in builtins.values():
        assert len(tax.synonyms) >= 30, f"{tax.name} needs a generous synonym list"
        assert not tax.multilabel


def test_builtin_taxonomies_are_copies() -> None:
    builtin_taxonomies()["color"].labels.append("mauve")
    assert "mauve" not in builtin_taxonomies()["color"].labels
    assert load_taxonomy("color").labels == EXPECTED_LABELS["color"]


def test_normalize_text() -> None:
    assert normalize_text("  Crème_Brûlée--POLKA   dot ") == "creme brulee polka dot"
    assert normalize_text("Off-White.") == "off white"


@pytest.mark.parametrize(
    ("attribute", "raw", "label"),
    [
        ("color", "Crème", "white"),
        ("color", "cream", "white"),
        ("color", "Off White", "white"),
        ("color", "OFF-WHITE", "white"),
        ("color", "CrÃ¨me", "white"),  # mojibake is repaired before lookup
        ("color", "Ruby", "red"),
        ("color", "burgundy", "red"),
        ("color", "Navy Blue", "blue"),
        ("color", "emerald", "green"),
        ("color", "Charcoal", "grey"),
        ("color", "gray", "grey"),
        ("color", "Rosé", "pink"),
        ("color", " RED ", "red"),
        ("pattern", "POLKA-DOT", "polka_dot"),
        ("pattern", "Polka Dot", "polka_dot"),
        ("pattern", "polka_dot", "polka_dot"),
        ("pattern", "POLKADOT", "polka_dot"),
        ("pattern", "Pinstripes", "striped"),
        ("pattern", "gingham", "plaid"),
        ("category", "T-Shirt", "t_shirt"),
        ("category", "TSHIRT", "t_shirt"),
        ("category", "tee", "t_shirt"),
        ("category", "Trousers", "pants"),
        ("category", "jumper", "sweater"),
        ("style", "Athletic", "sporty"),
        ("sleeve_length", "Long-Sleeved", "long"),
        ("sleeve_length", "no sleeves", "sleeveless"),
    ],
)
def test_normalize_synonyms_casing_and_accents(attribute: str, raw: str, label: str) -> None:
    assert load_taxonomy(attribute).normalize(raw) == label


def test_resolve_tells_missing_from_unknown() -> None:
    color = load_taxonomy("color")
    for empty in ("", "   ", None, math.nan):
        assert color.resolve(empty) == Resolution(None, True)
        assert color.normalize(empty if isinstance(empty, str) else None) is None
    unknown = color.resolve("Sunset Glow")
    assert unknown == Resolution(None, False) and unknown.unknown
    assert color.normalize("Sunset Glow") is None
    found = color.resolve("Ivory")
    assert found.label == "white" and not found.missing and not found.unknown
    assert found.labels == ("white",)


def test_multilabel_values() -> None:
    tags = Taxonomy(
        name="details",
        labels=["pocket", "zip", "hood"],
        synonyms={"zipper": "zip", "hooded": "hood"},
        multilabel=True,
    )
    assert tags.normalize("Zipper|pocket") == "pocket|zip"
    assert tags.normalize_multi("HOODED | zip | zip") == ["hood", "zip"]
    assert tags.resolve("zip|velcro").unknown
    # a single-label taxonomy does not split on "|"
    assert load_taxonomy("color").normalize("red|blue") is None


def test_invalid_taxonomies_are_refused() -> None:
    with pytest.raises(ValidationError, match="not a label"):
        Taxonomy(name="fit", labels=["slim"], synonyms={"skinny": "tight"})
    with pytest.raises(ValidationError, match="snake_case"):
        Taxonomy(name="fit", labels=["Slim Fit"])
    with pytest.raises(ValidationError, match="reads the same"):
        Taxonomy(name="fit", labels=["slim", "regular"], synonyms={"SLIM": "regular"})
    with pytest.raises(ValidationError, match="extra"):
        Taxonomy(name="fit", labels=["slim"], colour="red")  # type: ignore[call-arg]


def test_load_taxonomy_from_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "fit.json").write_text(
        json.dumps({"labels": ["slim", "regular"], "synonyms": {"Skinny": "slim"}})
    )
    fit = load_taxonomy(tmp_path / "fit.json")
    assert fit.name == "fit" and fit.normalize("SKINNY") == "slim"
    (tmp_path / "neck.toml").write_text(
        'name = "neckline"\nlabels = ["crew", "v_neck"]\n[synonyms]\n"V-Neckline" = "v_neck"\n'
    )
    neck = load_taxonomy(str(tmp_path / "neck.toml"))
    assert neck.name == "neckline" and neck.normalize("v neckline") == "v_neck"


def test_bad_taxonomy_files_raise_config_error_naming_the_file(tmp_path: Path) -> None:
    bad_target = tmp_path / "bad_target.json"
    bad_target.write_text(json.dumps({"labels": ["slim"], "synonyms": {"skinny": "tight"}}))
    with pytest.raises(ConfigError, match="bad_target.json.*'tight'"):
        load_taxonomy(bad_target)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json.*fix its syntax"):
        load_taxonomy(broken)
    extra = tmp_path / "extra.toml"
    extra.write_text('labels = ["a"]\nlabelz = ["b"]\n')
    with pytest.raises(ConfigError, match="extra.toml.*labelz"):
        load_taxonomy(extra)
    with pytest.raises(ConfigError, match="not found"):
        load_taxonomy(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="built-in taxonomies are .*color"):
        load_taxonomy("colour")
    project = tmp_path / "project.json"
    project.write_text(json.dumps({"attributes": {}}))
    with pytest.raises(ConfigError, match="load_project_taxonomies"):
        load_taxonomy(project)


def test_project_file_round_trip_json(tmp_path: Path) -> None:
    fit = Taxonomy(
        name="fit",
        labels=["slim", "regular", "oversized"],
        synonyms={"skinny": "slim", 'baggy "90s"': "oversized"},
        description="How the garment fits.",
    )
    path = save_project_taxonomy(tmp_path, fit)
    assert path == tmp_path / PROJECT_FILE
    assert load_project_taxonomies(tmp_path) == {"fit": fit}

    color = load_taxonomy("color")
    color.synonyms["bordeaux red"] = "red"
    save_project_taxonomy(path, color)
    fit2 = fit.model_copy(update={"labels": ["slim", "regular", "oversized", "relaxed"]})
    save_project_taxonomy(path, fit2)  # replaces, keeps the other attribute
    loaded = load_project_taxonomies(path)
    assert list(loaded) == ["fit", "color"]
    assert loaded["fit"] == fit2 and loaded["color"] == color
    assert json.loads(path.read_text())["attributes"]["fit"]["description"] == fit.description


def test_project_file_round_trip_toml(tmp_path: Path) -> None:
    path = tmp_path / "attributes.toml"
    path.write_text('# team file\nowner = "catalog-team"\n')
    tricky = Taxonomy(
        name="neckline",
        labels=["crew", "v_neck", "boat"],
        synonyms={"V-Neck": "v_neck", 'say "boat"': "boat", "encolure bateau": "boat"},
        multilabel=True,
    )
    empty = Taxonomy(name="closure", labels=["zip"])
    save_project_taxonomy(path, tricky)
    save_project_taxonomy(path, empty)
    assert 'owner = "catalog-team"' in path.read_text()  # other keys survive (comments do not)
    assert load_project_taxonomies(path) == {"neckline": tricky, "closure": empty}


def test_bad_project_files(tmp_path: Path) -> None:
    path = tmp_path / "team.json"
    path.write_text(json.dumps({"labels": ["a"]}))
    with pytest.raises(ConfigError, match="team.json.*'attributes'"):
        load_project_taxonomies(path)
    path.write_text(json.dumps({"attributes": {"fit": {"labels": ["Slim"]}}}))
    with pytest.raises(ConfigError, match=r"team.json \(attributes.fit\).*snake_case"):
        load_project_taxonomies(path)
    with pytest.raises(ConfigError, match="must end in .json or .toml"):
        save_project_taxonomy(tmp_path / "team.yaml", Taxonomy(name="fit", labels=["slim"]))
