"""Bad inputs to search: damaged or edited index folders, vectors files that are not ours or
hold NaN, duplicate or missing ids, other model revisions, bad filters and queries are clear
errors; `fashion embed` killed with kill -9 between two parts resumes with every row once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashion.search import Index
from fashion.search.vectors import read_info, records_table
from tests.faults import ledger
from tests.faults.conftest import check_error
from tests.search.conftest import photo_manifest, random_vectors

AREA = "search"


@pytest.fixture(autouse=True)
def _threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHION_SEARCH_THREADS", "1")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("search")


@pytest.fixture(scope="module")
def vectors(folder: Path) -> Path:
    return random_vectors(folder / "v.parquet", 80)


def _saved(folder: Path, vectors: Path, name: str) -> Path:
    return Index.build([vectors]).save(folder / name)


def _rewrite(vectors: Path, target: Path, change) -> Path:  # noqa: ANN001
    info = read_info(vectors)
    rows = pq.read_table(vectors).to_pylist()
    records = [{"id": r["id"], "row": r["row"], "vector": np.asarray(r["vector"], np.float32),
                "attributes": {a: (r[f"{a}_label"], r[f"{a}_score"]) for a in info.attributes}}
               for r in rows]
    change(records)
    pq.write_table(records_table(info, records), target)
    return target


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_index_folders(folder: Path, vectors: Path) -> None:
    ix = _saved(folder, vectors, "flip-faiss")
    _flip(ix / "vectors.faiss")
    check_error(AREA, "a byte of vectors.faiss flipped", lambda: Index.load(ix), "sha256")
    ix = _saved(folder, vectors, "flip-rows")
    _flip(ix / "rows.parquet")
    check_error(AREA, "a byte of rows.parquet flipped", lambda: Index.load(ix), "sha256")
    ix = _saved(folder, vectors, "edited-meta")
    meta = json.loads((ix / "index.json").read_text())
    meta["vectors"]["model_revision"] = "another"
    meta["files"]["vectors.faiss"] = "0" * 64
    (ix / "index.json").write_text(json.dumps(meta))
    check_error(AREA, "index.json edited (revision and a sha256)", lambda: Index.load(ix), "sha256")
    ix = _saved(folder, vectors, "truncated-meta")
    (ix / "index.json").write_bytes((ix / "index.json").read_bytes()[:40])
    check_error(AREA, "index.json truncated", lambda: Index.load(ix), "damaged")
    ix = _saved(folder, vectors, "missing-rows")
    (ix / "rows.parquet").unlink()
    check_error(AREA, "rows.parquet missing", lambda: Index.load(ix), "missing")
    check_error(AREA, "a folder that is no index", lambda: Index.load(folder), "not an index folder")


def test_bad_vectors_files(folder: Path, vectors: Path) -> None:
    pq.write_table(pa.table({"id": ["a"], "vector": [[0.1, 0.2]]}), folder / "plain.parquet")
    check_error(AREA, "a Parquet file fashion embed did not write",
                lambda: Index.build([folder / "plain.parquet"]), "not written by `fashion embed`")
    (folder / "trunc.parquet").write_bytes(vectors.read_bytes()[: vectors.stat().st_size // 2])
    check_error(AREA, "a truncated vectors file", lambda: Index.build([folder / "trunc.parquet"]),
                "not a readable Parquet file")
    check_error(AREA, "a vectors file that does not exist",
                lambda: Index.build([folder / "gone.parquet"]), "does not exist")

    def nan(records: list) -> None:  # noqa: ANN001
        records[7]["vector"] = np.full_like(records[7]["vector"], np.nan)

    bad = _rewrite(vectors, folder / "nan.parquet", nan)
    check_error(AREA, "a NaN vector", lambda: Index.build([bad]), "row 8 has a vector with NaN")

    def duplicate(records: list) -> None:  # noqa: ANN001
        records[9]["id"] = records[2]["id"]

    bad = _rewrite(vectors, folder / "dup.parquet", duplicate)
    check_error(AREA, "a duplicate id", lambda: Index.build([bad]), "appears twice")

    def no_id(records: list) -> None:  # noqa: ANN001
        records[4]["id"] = None

    bad = _rewrite(vectors, folder / "noid.parquet", no_id)
    check_error(AREA, "a row without id", lambda: Index.build([bad]), "row 5 has no id")
    other = random_vectors(folder / "other.parquet", 5, revision="r-other")
    index = Index.build([vectors])
    check_error(AREA, "vectors of another model revision added", lambda: index.add([other]),
                "model revision r-other")
    wide = random_vectors(folder / "wide.parquet", 5, dimension=8)
    check_error(AREA, "vectors of another dimension added", lambda: index.add([wide]),
                "dimension")


def test_bad_queries(vectors: Path) -> None:
    index = Index.build([vectors])
    check_error(AREA, "query id not in the index", lambda: index.search("nope", 3), "no product 'nope'")
    check_error(AREA, "query vector of another dimension", lambda: index.search(np.ones(5), 3), "dimension")
    check_error(AREA, "query vector with NaN",
                lambda: index.search(np.full(16, np.nan), 3), "finite")
    check_error(AREA, "query vector of another revision",
                lambda: index.search(np.ones(16), 3, revision="r9"), "revision r9")
    check_error(AREA, "filter on an unknown attribute",
                lambda: index.search("v1", 3, where=["size=m"]), "no attribute 'size'")
    check_error(AREA, "filter on an unknown label",
                lambda: index.search("v1", 3, where=["color=mauve"]), "no label 'mauve'")
    check_error(AREA, "filter without '='", lambda: index.search("v1", 3, where=["color"]),
                "ATTRIBUTE=LABEL")
    check_error(AREA, "k of zero", lambda: index.search("v1", 0), "k must be")
    check_error(AREA, "min score above 1", lambda: index.search("v1", 3, min_score=2.0), "min_score")
    hits = check_error(AREA, "filter nothing matches",
                       lambda: index.search("v1", 3, where=["color=red"], min_score=1.0),
                       "", expected="predicted")
    assert hits == []


def test_embed_killed_between_parts_resumes(tiny: object, tmp_path: Path) -> None:
    from fashion.registry import save_bundle
    from tests.tiny_model import make_model

    bundle = save_bundle(make_model(0), tmp_path / "bundle")
    manifest = photo_manifest(tmp_path / "photos", n=14, bad=(3,))
    out = tmp_path / "v.parquet"
    script = ("import sys; from tests import tiny_plugin; from fashion.contract.manager import "
              "register_plugin; register_plugin(tiny_plugin, name='tests.tiny_plugin'); "
              "from fashion.cli import main; main(sys.argv[1:])")
    args = [sys.executable, "-c", script, "embed", str(bundle), str(manifest), "--out", str(out),
            "--batch-size", "2", "--device", "cpu"]
    env = {**os.environ, "FASHION_EMBED_PART_ROWS": "3", "FASHION_FAULT_INJECT": "embed.part:2",
           "FASHION_PROGRESS": "0"}
    killed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[2])
    assert killed.returncode == -9, killed.stderr
    env.pop("FASHION_FAULT_INJECT")
    again = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True,
                           timeout=120, cwd=Path(__file__).parents[2])
    rows = pq.read_table(out).column("row").to_pylist() if out.is_file() else []
    rejects = [json.loads(line)["row"] for line in
               out.with_name("v.rejects.jsonl").read_text().splitlines()]
    wanted = list(range(1, 15))
    lost = len(set(wanted) - set(rows) - set(rejects))
    twice = len(rows) + len(rejects) - len(set(rows) | set(rejects))
    observed = ("traceback" if again.returncode else "lost-rows" if lost else
                "silent-wrong" if twice else "predicted")
    ledger.record(AREA, "fashion embed killed (kill -9) between two parts, resumed", "predicted",
                  observed, lost)
    assert observed == "predicted", again.stderr
    assert rejects == [4] and "14 rows in = 13 embedded + 1 rejected" in again.stdout


def _ray_part(vectors: Path, target: Path, *, revision: str | None = None, drop: str = "",
              width: int | None = None) -> Path:
    """A part file as `fashion predict --engine ray --embeddings` writes it (the `embedding`
    column, label/score columns and the vectors metadata), from a vectors file's rows."""
    from fashion.predict.vectors import VECTORS_META

    info = read_info(vectors)
    if revision:
        info = info.model_copy(update={"model_revision": revision})
    rows = pq.read_table(vectors).to_pylist()
    columns = {"id": [r["id"] for r in rows], "row": [r["row"] for r in rows],
               "embedding": [list(r["vector"])[:width] if width else list(r["vector"]) for r in rows]}
    for a in info.attributes:
        columns[f"{a}_label"] = [r[f"{a}_label"] for r in rows]
        columns[f"{a}_score"] = [r[f"{a}_score"] for r in rows]
    columns.pop(drop, None)
    table = pa.table(columns).replace_schema_metadata({VECTORS_META: info.model_dump_json().encode()})
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)
    return target


def test_bad_ray_output_folders(folder: Path, vectors: Path) -> None:
    good = _ray_part(vectors, folder / "ray-good" / "part-0.parquet")
    assert len(Index.build([good.parent])) == 80  # the control: a well-formed folder indexes
    (folder / "ray-empty").mkdir()
    check_error(AREA, "a Ray output folder without part files",
                lambda: Index.build([folder / "ray-empty"]), "without .parquet files")
    _ray_part(vectors, folder / "ray-mixed" / "part-0.parquet")
    _ray_part(vectors, folder / "ray-mixed" / "part-1.parquet", revision="r-other")
    check_error(AREA, "Ray parts of two model revisions in one folder",
                lambda: Index.build([folder / "ray-mixed"]), "must come from one model")
    _ray_part(vectors, folder / "ray-noid" / "part-0.parquet", drop="id")
    check_error(AREA, "a Ray part without an id column",
                lambda: Index.build([folder / "ray-noid"]), "has no column 'id'")
    _ray_part(vectors, folder / "ray-narrow" / "part-0.parquet", width=8)
    check_error(AREA, "a Ray part whose vectors are shorter than its metadata says",
                lambda: Index.build([folder / "ray-narrow"]), "numbers, not")
    part = _ray_part(vectors, folder / "ray-trunc" / "part-0.parquet")
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    check_error(AREA, "a truncated Ray part", lambda: Index.build([folder / "ray-trunc"]),
                "not a readable Parquet file")


def test_bad_spaces_and_tuning(tiny: object, folder: Path, vectors: Path) -> None:
    """The inputs of attribute emphasis and efSearch tuning: unknown or repeated attributes, an
    emphasis out of range, vectors of another space, a damaged tuning record, bad flags."""
    from fashion import Predictor
    from fashion.cli import main
    from fashion.model.space import EmbeddingSpace
    from fashion.search.vectors import VectorsInfo
    from tests.tiny_model import make_model

    predictor = Predictor(make_model(0))
    check_error(AREA, "emphasize an attribute the model lacks",
                lambda: predictor.set_embedding_space({"emphasize": ["sleeve"]}), "cannot emphasize sleeve")
    check_error(AREA, "emphasize an attribute twice",
                lambda: predictor.set_embedding_space({"emphasize": ["color", "color"]}), "twice")
    check_error(AREA, "emphasis above 1",
                lambda: predictor.set_embedding_space({"emphasize": ["color"], "emphasis": 1.5}),
                "embedding space")
    check_error(AREA, "embed in a space with an unknown attribute",
                lambda: predictor.embed([{"id": "a", "title": "red dress"}], space={"emphasize": ["x"]}),
                "cannot emphasize x")
    info = read_info(vectors)
    emphasized = Index(VectorsInfo(**{**info.model_dump(), "space": EmbeddingSpace(emphasize=["color"])}))
    check_error(AREA, "vectors of another space added", lambda: emphasized.add([vectors]),
                "space fused but the index's are in fused + color")
    ix = _saved(folder, vectors, "bad-tuning")
    meta = json.loads((ix / "index.json").read_text())
    meta["tuning"] = {"ef_search": -3, "target": 0.95}
    (ix / "index.json").write_text(json.dumps(meta))
    check_error(AREA, "index.json with a damaged tuning record", lambda: Index.load(ix), "damaged")
    check_error(AREA, "index build --recall above 1",
                lambda: main(["index", "build", str(vectors), "--out", str(folder / "r"), "--recall", "1.5"]),
                "")
    check_error(AREA, "index build --ef-search 0",
                lambda: main(["index", "build", str(vectors), "--out", str(folder / "e"), "--ef-search", "0"]),
                "")
    check_error(AREA, "predict --emphasize without --embeddings",
                lambda: main(["predict", str(folder), str(vectors), "--out", str(folder / "p.jsonl"),
                              "--emphasize", "color"]), "")
