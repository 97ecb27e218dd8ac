"""Labels mined from vendor text: the label model, rules files, statistics, add-attribute
--from-text end to end (dry run, training on the mined labels, provenance) and its bad inputs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fashion.attributes.mining.mine import mine_labels
from fashion.attributes.mining.model import DawidSkene, majority_vote, vote_matrix
from fashion.attributes.mining.rules import load_rules
from fashion.attributes.pipeline import add_attribute
from fashion.cli import cli
from fashion.data.manifest import iter_manifest
from fashion.errors import ConfigError, DataError
from fashion.model.inputs import row_to_product
from fashion.registry import load_bundle
from tests.attributes.test_add_attribute import base_model  # noqa: F401  (a fixture)
from tests.mdmt_data import FILLER, _write_images, write_manifest

LABELS = ["hooded", "plain"]
RULES = """
[[rule]]
name = "kapuze"
label = "hooded"
keywords = ["mit kapuze", "capuche"]
field = "description"

[[rule]]
name = "no-hood"
label = "plain"
keywords = ["no hood", "sans capuche", "hoodless"]
field = "title"

[[rule]]
name = "sku-ph"
label = "hooded"
regex = '^PH-\\d+$'
field = "sku"
"""


def _hood_rows(root: Path, n: int, seed: int, *, mention: float = 0.6, gold: int = 0) -> Path:
    """Jackets with or without a hood: the photo says which (red: hooded, blue: plain); the
    text says it for ``mention`` of them, in several words and languages."""
    rng = random.Random(seed)
    images = _write_images(root / "images", rng)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        title, description = f"{' '.join(rng.sample(FILLER, 2))} jacket", rng.choice(FILLER) + "."
        if rng.random() < mention:
            if label == "hooded":
                title, description = rng.choice([(f"hooded {title}", description),
                                                 (title, "Mit Kapuze. Not lined.")])
            else:
                title = rng.choice([f"{title} no hood", f"{title} sans capuche", f"hoodless {title}"])
        elif rng.random() < 0.3:
            description += " Care: hooded items wash cold."  # a care tail is no claim
        row = {"id": f"{root.name}{i}", "images": rng.choice(images["red" if label == "hooded" else "blue"]),
               "title": title, "description": description, "sku": f"X-{i}"}
        row["hood"] = label if i < gold else ""
        rows.append(row)
    return write_manifest(root / "hood.csv", rows)


def _rules(tmp_path: Path, text: str = RULES, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_label_model_weights_reliable_functions_and_majority_is_the_baseline():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 400)

    def noisy(accuracy: float, coverage: float) -> list[int]:
        out = []
        for t in truth:
            if rng.random() > coverage:
                out.append(-1)
            else:
                out.append(int(t) if rng.random() < accuracy else int((t + rng.integers(1, 3)) % 3))
        return out

    L = np.array([noisy(0.95, 0.7), noisy(0.9, 0.7), noisy(0.4, 0.9)]).T
    model = DawidSkene(3).fit(L)
    assert model.accuracy is not None
    assert model.accuracy[0] > 0.85 and model.accuracy[1] > 0.8 and model.accuracy[2] < 0.6
    assert model.weights()[0] > model.weights()[2]
    ds, _ = model.predict(L)
    mv, _ = majority_vote(L, 3)
    covered = (L != -1).any(1)
    assert (ds[covered] == truth[covered]).mean() > (mv[covered] == truth[covered]).mean()
    assert (ds[~covered] == -1).all() and (mv[~covered] == -1).all()
    # majority: ties and empty rows stay unlabeled
    assert majority_vote(np.array([[0, 1], [-1, -1], [2, 2]]), 3)[0].tolist() == [-1, -1, 2]
    assert vote_matrix([["a", None], [None, "b"]], ["a", "b"]).tolist() == [[0, -1], [-1, 1]]


def test_rules_file_builds_keyword_regex_and_registered_functions(tmp_path):
    functions = load_rules(_rules(tmp_path), "hood", LABELS)
    assert [(f.name, type(f).name) for f in functions] == [
        ("kapuze", "keyword"), ("no-hood", "keyword"), ("sku-ph", "regex")]
    yaml = _rules(tmp_path, "rules:\n  - label: plain\n    keywords: [plain]\n", "rules.yaml")
    assert [f.name for f in load_rules(yaml, "hood", LABELS)] == ["rule-1"]


@pytest.mark.parametrize("text, says", [
    ("[[rule]\nlabel = 'x'", "is not valid toml"),
    ("[[rule]]\nlabel = 'sleeveless'\nkeywords = ['tank']", "rule 1: labelling function 'rule-1' votes 'sleeveless', which is not a label of hood"),
    ("[[rule]]\nlabel = 'plain'\nregex = '(x'", "rule 1: .*not a valid regular expression"),
    ("[[rule]]\nlabel = 'plain'\nkeywords = ['a']\nregex = 'b'", "give exactly one of keywords, regex or kind"),
    ("[[rule]]\nlabel = 'plain'\nkeyword = ['a']", "keyword"),
    ("title = 'x'", "unknown top-level key"),
    ("[[rule]]\nkind = 'no_such_function'", "no labelling_function named 'no_such_function'"),
])
def test_a_bad_rules_file_is_a_clear_error(tmp_path, text, says):
    with pytest.raises(ConfigError, match=says):
        load_rules(_rules(tmp_path, text), "hood", LABELS)


def test_mining_counts_scores_on_gold_and_warns_about_a_rule_that_never_votes(tmp_path):
    manifest = _hood_rows(tmp_path / "shop", 60, 1, gold=30)
    rules = _rules(tmp_path)
    mined = mine_labels("hood", LABELS, {}, [manifest], rules=rules)
    by_name = {s.name: s for s in mined.stats}
    assert set(by_name) == {"title:hooded", "description:hooded", "kapuze", "no-hood", "sku-ph"}
    assert by_name["no-hood"].votes > 0 and by_name["no-hood"].accuracy == 1.0
    assert by_name["title:hooded"].accuracy == 1.0  # the care tail's "hooded" is not counted
    assert by_name["sku-ph"].votes == 0
    assert any("'sku-ph' (regex) voted on no product" in w for w in mined.warnings)
    assert mined.precision_on_gold() == 1.0
    assert 0.4 < mined.coverage < 0.8
    assert set(mined.counts) == {"hooded", "plain"} and mined.counts["plain"]["examples"]
    record = mined.provenance()
    assert record["rules"] == RULES and set(record["label_model_weights"]["accuracy"]) == set(by_name)
    assert len(record["labels"]) == mined.mined_count


def test_dry_run_prints_the_function_table_and_trains_nothing(tmp_path, fashion_home):
    manifest = _hood_rows(tmp_path / "shop", 40, 2, gold=10)
    result = CliRunner(env={"COLUMNS": "160"}).invoke(cli, [
        "add-attribute", "hood", "--labels", "hooded,plain", "--from-text", str(manifest),
        "--rules", str(_rules(tmp_path)), "--dry-run", "--project-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for expected in ("labelling functions for hood", "no-hood", "coverage", "gold acc.",
                     "mined labels", "voted on no product", "nothing was trained"):
        assert expected in result.output, expected
    assert not list(tmp_path.glob("hood-mined*.csv")) and not (fashion_home / "models").exists()


def test_nothing_mined_is_an_error_and_nothing_trains(tmp_path):
    manifest = _hood_rows(tmp_path / "shop", 20, 3, mention=0.0)
    with pytest.raises(DataError, match="was mined for hood; nothing was trained"):
        add_attribute("hood", labels=LABELS, from_text=[manifest], base="local://unused",
                      project_dir=tmp_path)
    with pytest.raises(ConfigError, match="--data .* or --from-text"):
        add_attribute("hood", labels=LABELS, from_text=[manifest], data=[manifest],
                      project_dir=tmp_path)
    assert not list(tmp_path.glob("hood-mined*.csv"))


def test_from_text_trains_the_head_on_photos_and_records_the_mining(base_model, tmp_path, fashion_home):  # noqa: F811
    train = _hood_rows(tmp_path / "shop", 80, 4, gold=20)
    test = _hood_rows(tmp_path / "test", 40, 5, mention=0.0)  # the text says nothing
    result = add_attribute(
        "hood", labels=LABELS, from_text=[train], rules=_rules(tmp_path), base="local://shop@base",
        push="shop", tag="hood", epochs=60, lr=0.03, project_dir=tmp_path, progress=False,
    )
    assert result.published and result.mining is not None and result.mining.audited
    mined_manifest = next(tmp_path.glob("hood-mined*.csv"))
    rows = list(iter_manifest(mined_manifest))
    assert len(rows) == result.mining.mined_count
    assert all(not r.values["title"] and not r.values["description"] for r in rows)  # text masked

    bundle = load_bundle("local://shop@hood")
    provenance = bundle.index.provenance.model_dump()
    assert provenance["added_attribute"]["labels"] == "mined"
    record = provenance["mined_labels"]["hood"]
    assert record["label_model"] == "dawid-skene" and record["rules"] == RULES
    assert {s["name"] for s in record["statistics"]} >= {"kapuze", "no-hood"}
    assert record["label_model_weights"]["accuracy"]["no-hood"] > 0.5

    products = [row_to_product(r, test) for r in iter_manifest(test)]
    truth = [r.values["id"] for r in iter_manifest(test)]
    predictions = [p["hood"].label for p in bundle.model.predict(products)]
    expected = [LABELS[int(i[len("test"):]) % 2] for i in truth]
    accuracy = sum(p == t for p, t in zip(predictions, expected, strict=True)) / len(expected)
    assert accuracy >= 0.8, (accuracy, predictions)  # chance is 1/2; the photos carry the label


def test_catalog_claims_leave_the_catalog_alone_and_know_the_truth(tmp_path):
    import hashlib

    from fashion.catalog import make_catalog
    from fashion.catalog.claims import read_truth, write_claims

    catalog = tmp_path / "catalog"
    make_catalog(catalog, products=60, image_size=64, workers=1)

    def digest() -> dict[str, str]:
        return {str(p.relative_to(catalog)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(catalog.rglob("*")) if p.is_file() and "claims" not in p.parts}

    before = digest()
    first = write_claims(catalog, dataset=None, seed=3)
    once = {k: p.read_bytes() for k, p in first.items()}
    second = write_claims(catalog, dataset=None, seed=3)
    assert digest() == before  # the catalog's own files are untouched
    assert {k: p.read_bytes() for k, p in second.items()} == once  # a pure function of the seed
    truth = read_truth(first["truth"])
    assert truth and {t["truth"] for t in truth.values()} <= {"sleeveless", "short", "long"}
    for t in truth.values():
        assert (t["mentioned"] == "1") == bool(t["claim"])
        assert t["correct"] == ("" if not t["claim"] else str(int(t["claim"] == t["truth"])))
    mentioned = sum(t["mentioned"] == "1" for t in truth.values())
    assert 0 < mentioned < len(truth)  # only part of the products mention the attribute
    rows = list(iter_manifest(first["train"]))
    assert rows and all((Path(first["train"]).parent / r.values["images"].split("|")[0]).is_file() for r in rows)
