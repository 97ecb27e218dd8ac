"""Compose: heads trained by different teams on one base become one bundle."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fashion import AttributeSpec, BundleError, ComponentSpec
from fashion.cli.registry import compose_command
from fashion.registry import compose_bundles, load_bundle, read_index, save_bundle
from tests.tiny_model import as_plain, make_model, products, train_briefly

SHARED = ["backbones", "croppers", "fusion"]


@pytest.fixture
def teams(tiny_model, tmp_path):
    """base (color, category); team A adds pattern; team B retrains color; both on the base."""
    base = save_bundle(tiny_model, tmp_path / "base", metrics={"color": {"accuracy": 0.5},
                                                               "category": {"accuracy": 0.6}})
    a = load_bundle(base).model
    a.add_head("pattern", AttributeSpec(labels=["solid", "striped"],
                                             head=ComponentSpec(name="tiny_head")))
    a.freeze(SHARED)
    train_briefly(a, ["pattern"], seed=11)
    team_a = save_bundle(a, tmp_path / "team-a", metrics={"pattern": {"accuracy": 0.9}},
                         provenance={"datasets": [{"name": "patterns", "rows": 4}]})
    b = load_bundle(base).model
    b.freeze(SHARED)
    train_briefly(b, ["color"], seed=12)
    team_b = save_bundle(b, tmp_path / "team-b", metrics={"color": {"accuracy": 0.8}})
    return base, team_a, team_b, a, b, tiny_model


def test_compose_combines_heads_from_two_teams(teams, tmp_path):
    base, team_a, team_b, a, b, base_model = teams
    out = compose_bundles(base, [team_a, team_b], tmp_path / "composed")
    bundle = load_bundle(out)
    assert bundle.model.attributes == ["color", "category", "pattern"]
    got = as_plain(bundle.model.predict(products()))
    for attribute, source in [("color", b), ("category", base_model), ("pattern", a)]:
        want = as_plain(source.predict(products()))
        assert [g[attribute] for g in got] == [w[attribute] for w in want], attribute
    index = bundle.index
    assert index.backbone_fingerprints() == read_index(base).backbone_fingerprints()
    assert index.components["heads/color"].fingerprint == \
        read_index(team_b).components["heads/color"].fingerprint
    assert index.metrics == {"color": {"accuracy": 0.8}, "category": {"accuracy": 0.6},
                                "pattern": {"accuracy": 0.9}}
    assert [c["attributes"] for c in index.provenance.composed_from] == [["pattern"], ["color"]]
    assert index.provenance.datasets == [{"name": "patterns", "rows": 4}]


def test_compose_refuses_heads_trained_on_another_base(teams, tmp_path):
    base, team_a, *_ = teams
    other = save_bundle(make_model(seed=4), tmp_path / "other")
    ours = read_index(base).components["backbones/image"].fingerprint
    theirs = read_index(other).components["backbones/image"].fingerprint
    assert ours != theirs
    with pytest.raises(BundleError) as info:
        compose_bundles(base, [team_a, other], tmp_path / "composed")
    message = str(info.value)
    assert f"backbones/image: base {ours} vs {other} {theirs}" in message
    assert "Retrain its heads on the base bundle" in message
    assert not (tmp_path / "composed").exists()


def test_compose_refuses_one_attribute_retrained_twice(teams, tmp_path):
    base, _, team_b, *_ = teams
    c = load_bundle(base).model
    c.freeze(SHARED)
    train_briefly(c, ["color"], steps=2)  # a different color head than team B's
    team_c = save_bundle(c, tmp_path / "team-c")
    with pytest.raises(BundleError, match="attribute 'color' was retrained in two head bundles"):
        compose_bundles(base, [team_b, team_c], tmp_path / "composed")


def test_compose_command(teams, tmp_path):
    base, team_a, team_b, *_ = teams
    out = tmp_path / "composed"
    result = CliRunner().invoke(compose_command, [str(base), str(team_a), str(team_b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "attributes: color, category, pattern" in result.output
    assert load_bundle(out).model.attributes == ["color", "category", "pattern"]
