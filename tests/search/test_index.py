"""fashion.search.Index: revisions, add/remove, exact filters on both plans, damaged folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fashion import Predictor
from fashion.errors import ConfigError, DataError
from fashion.search import Index, run_embed
from fashion.search import plan as plan_module
from tests.search.conftest import photo_manifest, random_vectors
from tests.tiny_model import make_model


def _brute(index: Index, query: np.ndarray, k: int, where: dict[str, list[str]],
           exclude: str | None = None) -> list[str]:
    vectors = index.vectors
    keep = index.live.copy()
    mask = index.attributes.mask(where)
    if mask is not None:
        keep &= mask
    if exclude is not None:
        keep[index.position[exclude]] = False
    rows = np.flatnonzero(keep)
    order = rows[np.argsort(-(vectors[rows] @ query), kind="stable")]
    return [index.ids[r] for r in order[:k]]


@pytest.mark.parametrize("hnsw", [False, True])
def test_filters_are_exact_on_every_plan(tmp_path: Path, hnsw: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source = random_vectors(tmp_path / "v.parquet", 600)
    index = Index.build([source], hnsw_threshold=100 if hnsw else 10_000)
    assert index.kind == ("hnsw" if hnsw else "flat")
    if hnsw:  # make the planner take filtered HNSW even for these few rows
        monkeypatch.setattr(plan_module, "EXACT_ROWS", 0)
        monkeypatch.setattr(plan_module, "EXACT_SELECTIVITY", 0.0)
    strategies = set()
    for where in ({}, {"color": ["black"]}, {"color": ["red", "green"]},
                  {"color": ["blue"], "style": ["b"]}, {"style": ["a", "c"]}):
        for q in range(0, 600, 37):
            explain: dict[str, Any] = {}
            query = index.ids[q]
            hits = index.search(query, 10, where=where, explain=explain)
            strategies.add(explain["strategy"])
            mask = index.attributes.mask(where)
            for hit in hits:  # never a filter violation
                row = index.position[hit.id]
                assert hit.id != query and (mask is None or mask[row])
                if "color" in where:
                    assert hit.attributes["color"]["label"] in where["color"]
                    assert hit.attributes["color"]["score"] >= 0.3  # the abstention threshold
            want = _brute(index, index.vector(query), 10, where, exclude=query)
            got = [h.id for h in hits]
            assert len(got) == len(want)
            if not hnsw:
                assert got == want
            else:  # approximate: most of the true neighbours, best scores in order
                assert len(set(got) & set(want)) >= 8
                assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert strategies <= {"index", "exact", "hnsw-filtered", "hnsw-filtered+exact"}
    if hnsw:
        assert any(s.startswith("hnsw-filtered") for s in strategies)
    with pytest.raises(ConfigError, match="no label 'purple'"):
        index.search("v0", 3, where=["color=purple"])
    with pytest.raises(ConfigError, match="no attribute 'size'"):
        index.search("v0", 3, where={"size": "m"})
    with pytest.raises(ConfigError, match="ATTRIBUTE=LABEL"):
        index.search("v0", 3, where=["color"])


def test_min_score_and_change(tmp_path: Path) -> None:
    index = Index.build([random_vectors(tmp_path / "v.parquet", 300)])
    strict = index.search("v1", 50, where={"color": "red"}, min_score=0.9)
    assert strict and all(h.attributes["color"]["score"] >= 0.9 for h in strict)
    loose = index.search("v1", 300, where={"color": "red"}, min_score=0.0)
    assert len(loose) > len(index.search("v1", 300, where={"color": "red"}))
    changed = index.search("v1", 5, change=["color=black"])
    assert changed and all(h.attributes["color"]["label"] == "black" for h in changed)
    ranks = [h.rank for h in changed]
    assert ranks == sorted(ranks, reverse=True)  # type: ignore[type-var]
    for hit in changed:
        assert hit.rank == pytest.approx((1 + hit.score) / 2 * hit.attributes["color"]["score"], abs=1e-5)


def test_add_remove_save_load_round_trip(tmp_path: Path) -> None:
    index = Index.build([random_vectors(tmp_path / "a.parquet", 200)], hnsw_threshold=250)
    query = index.vector("v0")
    assert index.search(query, 1)[0].id == "v0"
    assert index.remove(["v0", "v1", "nope"]) == 2 and "v0" not in index
    assert all(h.id not in ("v0", "v1") for h in index.search(query, 20))
    index.save(tmp_path / "ix")
    loaded = Index.load(tmp_path / "ix")
    assert len(loaded) == 198 and all(h.id not in ("v0", "v1") for h in loaded.search(query, 20))
    more = random_vectors(tmp_path / "b.parquet", 100, seed=1, start=200)
    assert loaded.add([more]) == 100 and loaded.kind == "hnsw"  # grew past the threshold
    assert len(loaded) == 298
    # v0 comes back, replaced by id with the vector of the first file
    again = random_vectors(tmp_path / "c.parquet", 1)
    loaded.add([again])
    assert loaded.search(query, 1)[0].id == "v0" and len(loaded) == 299
    loaded.save(tmp_path / "ix")
    final = Index.load(tmp_path / "ix")
    assert len(final) == 299 and final.kind == "hnsw" and final.search(query, 1)[0].id == "v0"
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["hnsw"]["m"] == 32 and meta["hnsw"]["ef_construction"] == 200
    assert final.remove([f"v{i}" for i in range(250)]) == 249  # most rows: v1 was gone already
    final.save(tmp_path / "ix")
    compacted = Index.load(tmp_path / "ix")  # the saved index leaves the dead rows out
    assert len(compacted.ids) == len(compacted) == 50 and compacted.kind == "flat"
    assert compacted.search(final.vector("v260"), 1)[0].id == "v260"


def test_other_revisions_are_refused(tiny: object, bundle: Path, tmp_path: Path) -> None:
    manifest = photo_manifest(tmp_path / "photos", n=8)
    predictor = Predictor.from_pretrained(bundle, device="cpu")
    run_embed(predictor, manifest, tmp_path / "a.parquet")
    other = Predictor(make_model(1))
    run_embed(other, manifest, tmp_path / "b.parquet")
    index = Index.build([tmp_path / "a.parquet"])
    with pytest.raises(ConfigError, match="model revision"):
        index.add([tmp_path / "b.parquet"])
    with pytest.raises(ConfigError, match="model revision"):
        Index.build([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    product = {"images": [str(tmp_path / "photos" / "0.png")], "title": "red dress 0"}
    with pytest.raises(ConfigError, match="revision"):
        index.search(product, 3, predictor=other)
    with pytest.raises(ConfigError, match="revision"):
        index.search(np.ones(predictor.embedding_dim), 3, revision="another")
    hits = index.search(product, 3, predictor=predictor)
    assert hits[0].id == "p0" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="dimension"):
        index.search(np.ones(3), 3)


def test_damaged_index_is_refused(tmp_path: Path) -> None:
    Index.build([random_vectors(tmp_path / "v.parquet", 50)]).save(tmp_path / "ix")
    vectors = tmp_path / "ix" / "vectors.faiss"
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(DataError, match="vectors.faiss is missing or does not match the sha256"):
        Index.load(tmp_path / "ix")
    Index.build([random_vectors(tmp_path / "v.parquet", 50)]).save(tmp_path / "ix")
    (tmp_path / "ix" / "rows.parquet").unlink()
    with pytest.raises(DataError, match="rows.parquet is missing"):
        Index.load(tmp_path / "ix")
    (tmp_path / "ix" / "index.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="index.json is damaged"):
        Index.load(tmp_path / "ix")
    with pytest.raises(DataError, match="not an index folder"):
        Index.load(tmp_path)
    with pytest.raises(DataError, match="not written by `fashion embed`"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": ["x"]}), tmp_path / "plain.parquet")
        Index.build([tmp_path / "plain.parquet"])


@pytest.mark.parametrize("hnsw", [False, True])
def test_a_filter_is_computed_once_and_forgotten_when_the_index_changes(
        tmp_path: Path, hnsw: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    index = Index.build([random_vectors(tmp_path / "a.parquet", 300)],
                        hnsw_threshold=100 if hnsw else 10_000)
    where = {"color": ["black"]}
    import fashion.search.index as index_module

    calls: list[int] = []
    select = index_module.select_rows
    monkeypatch.setattr(index_module, "select_rows", lambda *a: calls.append(1) or select(*a))
    query = index.vector("v7")
    first = index.search("v7", 5, where=where)
    again = index.search(query, 5, where=where)
    assert len(calls) == 1  # the second query reused the first one's rows
    selection = index.selection(parse(where))
    assert selection.matrix is not None and selection.matrix.flags.c_contiguous
    np.testing.assert_array_equal(selection.matrix, index.vectors[selection.rows])
    assert [h.id for h in first] == _brute(index, query, 5, where, exclude="v7")
    assert [h.id for h in again] == _brute(index, query, 5, where)
    gone = first[0].id
    index.remove([gone])  # a change: the cached rows are dropped
    after = index.search("v7", 5, where=where)
    assert len(calls) == 2 and gone not in {h.id for h in after}
    assert [h.id for h in after] == _brute(index, query, 5, where, exclude="v7")
    index.add([random_vectors(tmp_path / "b.parquet", 20, seed=3, start=300)])
    assert [h.id for h in index.search("v7", 5, where=where)] == _brute(index, query, 5, where, exclude="v7")
    assert len(calls) == 3
    for i in range(plan_module.SELECTION_CACHE + 3):  # a bounded number of filters is kept
        index.search(query, 1, where=where, min_score=i / 100)
    assert len(index._selections) == plan_module.SELECTION_CACHE


def test_a_product_searched_by_id_is_never_its_own_neighbour(tmp_path: Path) -> None:
    index = Index.build([random_vectors(tmp_path / "a.parquet", 200)], hnsw_threshold=100)
    for where in (None, {"color": ["red"]}):
        hits = index.search("v3", 10, where=where)
        assert len(hits) == 10 and "v3" not in {h.id for h in hits}
        assert [h.id for h in hits] == _brute(index, index.vector("v3"), 10, where or {}, exclude="v3")


def parse(where: dict[str, list[str]]) -> Any:
    from fashion.search.filters import parse_conditions

    return parse_conditions(where)
