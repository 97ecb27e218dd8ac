"""fashion.predict.ray.engine on a local 2-CPU Ray instance: the same predictions as `fashion predict`,
bad rows rejected, a killed run resumed with every row once, an hf:// model loaded once per
worker from the cache, and the `fashion predict --engine ray` CLI in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fashion import FashionModel
from fashion.cli import main
from fashion.data.manifest import iter_manifest
from fashion.errors import ConfigError, DataError
from fashion.model.inputs import row_to_product
from fashion.predict.batch import run_predict
from fashion.predict.predictor import Predictor
from fashion.predict.ray import predict_dataset, run_ray_predict
from fashion.predict.ray.engine import actor_cpus, default_concurrency
from fashion.predict.ray.inputs import expand_inputs, input_root, part_stem, plan_parts
from fashion.registry import save_bundle
from tests.tiny_model import image, make_model, train_briefly
from tests.tiny_plugin import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("fashion", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One local Ray instance (2 CPUs, no dashboard) for every test here; workers can import
    the tests package and log model loads to ``log``."""
    import ray

    log = tmp_path_factory.mktemp("ray") / "loads.log"
    log.touch()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "FASHION_TEST_LOAD_LOG": str(log)}})
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    try:
        yield SimpleNamespace(ray=ray, log=log, address=ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- data


def _images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, color in [("red", "red"), ("blue", "blue"), ("navy", (20, 20, 90))]:
        image(color).save(folder / f"{name}.png")
    (folder / "corrupt.png").write_bytes(b"this is not a png")


def _row(i: int) -> dict[str, Any]:
    kind = i % 13
    images = {0: "images/corrupt.png", 1: "images/gone.png", 2: "", 3: "images/navy.png|images/red.png"}
    return {"id": f"p{i:04d}", "images": images.get(kind, ["images/red.png", "images/blue.png"][i % 2]),
            "title": ["red dress", "blue shirt", "", "wide trousers"][i % 4],
            "brand": "Acme" if i % 5 else "", "price": str(10 + i)}


def _nothing_to_predict(i: int) -> bool:
    """Row ``i`` has no image and no text: rejected (as by `fashion predict`)."""
    row = _row(i)
    return not (row["images"] or row["title"] or row["brand"])


def _catalog(folder: Path) -> dict[str, int]:
    """About 260 rows in CSV, JSONL and a Parquet file of four row groups; every 13th row has a
    corrupt image, the next one a missing image, one JSONL row a title that is not text."""
    _images(folder / "images")
    rows = [_row(i) for i in range(260)]
    with open(folder / "a.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:120])
    jsonl = [dict(r, images=r["images"].split("|") if r["images"] else []) for r in rows[120:180]]
    jsonl[4]["title"] = 5  # not text: rejected, field 'title'
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in jsonl), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows[180:]), folder / "c.parquet", row_group_size=20)
    return {"a.csv": 120, "b.jsonl": 60, "c.parquet": 80}


def _outputs(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Output rows per input file (output files are named <input>.<hash>.<part>.parquet)."""
    by_input: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*.parquet")):
        source = path.name.rsplit(".", 3)[0]
        by_input.setdefault(source, []).extend(pq.read_table(path).to_pylist())
    return by_input


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ----------------------------------------------------------------------------- fast checks


def test_actors_leave_cpus_for_reading() -> None:
    assert actor_cpus(2, 2) == 0.5 and actor_cpus(2, 1) == 1.0  # 2 x 1 CPU on 2 CPUs deadlocks
    assert actor_cpus(16, 15) == 1.0 and actor_cpus(1, 1) == 0.5
    assert actor_cpus(2, 2, 0.5) == 0.5
    with pytest.raises(ConfigError, match="leave no CPU to read"):
        actor_cpus(2, 2, 1.0)
    assert default_concurrency(2) == 1 and default_concurrency(16) == 15
    assert default_concurrency(16, total_gpus=4, num_gpus=1) == 4
    assert default_concurrency(16, total_gpus=4, num_gpus=0.5) == 8


def test_inputs_and_parts(tmp_path: Path) -> None:
    counts = _catalog(tmp_path)
    (tmp_path / "notes.txt").write_text("not a manifest")
    files = expand_inputs(tmp_path)
    assert [f.name for f in files] == sorted(counts)
    assert [f.name for f in expand_inputs(str(tmp_path / "*.csv"))] == ["a.csv"]
    with pytest.raises(DataError, match="does not exist"):
        expand_inputs(tmp_path / "nothing-here")
    with pytest.raises(DataError, match="holds no .parquet"):
        expand_inputs(tmp_path / "images")
    parts = plan_parts(files, tmp_path, part_rows=40)
    a, b, c = (part_stem(Path(name)) for name in ("a.csv", "b.jsonl", "c.parquet"))
    assert [(p.name, p.first_row, p.rows) for p in parts] == [
        (f"{a}.00000.parquet", 1, None), (f"{b}.00000.parquet", 1, None),
        (f"{c}.00000.parquet", 1, 40), (f"{c}.00001.parquet", 41, 40)]
    assert a.startswith("a.csv.") and a == part_stem(Path("a.csv"))  # the same on every run


def test_part_names_are_unique_by_construction(tmp_path: Path) -> None:
    """Relative paths that flatten alike (a__b.csv, a/b.csv), glob matches with one file name in
    two folders, and names differing in case only get parts of their own."""
    for rel in ("a__b.csv", "a/b.csv", "x/A.csv", "x/a.csv", "y/a.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("id,title\n1,red dress\n")
    files = expand_inputs(tmp_path)
    names = [p.name for p in plan_parts(files, input_root(tmp_path, files), part_rows=10)]
    assert len({n.casefold() for n in names}) == len(files) == 5
    assert {n.split(".")[0] for n in names} == {"a__b", "x__A", "x__a", "y__a"}
    matches = expand_inputs(str(tmp_path / "*" / "a.csv"))
    glob_names = [p.name for p in plan_parts(matches, input_root(str(tmp_path / "*" / "a.csv"),
                                                                 matches), part_rows=10)]
    assert len(set(glob_names)) == 2 and glob_names[0].startswith("x__a.csv.")


def test_engine_ray_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.delenv("FASHION_DEBUG", raising=False)
    (tmp_path / "in.csv").write_text("id,title\n1,red dress\n")
    with pytest.raises(SystemExit) as info:
        main(["predict", str(tmp_path / "bundle"), str(tmp_path / "in.csv"), "--out",
              str(tmp_path / "out"), "--engine", "ray"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "pip install 'fashion-sdk[ray]'" in err and "Traceback" not in err


def test_ray_options_need_the_ray_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.csv").write_text("id,title\n1,red dress\n")
    with pytest.raises(SystemExit) as info:
        main(["predict", "x", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.jsonl"),
              "--embeddings"])
    assert info.value.code == 2 and "--embeddings needs --engine ray" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["predict", "x", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "ray",
              "--workers", "2"])
    assert info.value.code == 2 and "--workers does not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["predict", "x", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert info.value.code == 2 and "need --engine ray" in capsys.readouterr().err


def test_embed_is_the_fused_vector_the_heads_read(tiny: object) -> None:
    model = make_model(0)
    predictor = Predictor(model)
    products = [{"id": "a", "images": [image("red")], "title": "red dress"},
                {"id": "b", "title": "blue shirt"}]
    vectors = predictor.embed(products)
    assert vectors.shape == (2, predictor.embedding_dim) and vectors.dtype == torch.float32
    logits = {a: model.heads[a](vectors) for a in model.attributes}  # the heads read exactly this
    expected = model(model.prepare(products))
    for a in model.attributes:
        torch.testing.assert_close(logits[a], expected[a])
    with pytest.raises(DataError, match="product c has no image and no text"):
        predictor.embed([{"id": "c"}])  # nothing to embed: refused as predict() refuses it
    late = train_briefly(FashionModel({**TINY_SPEC, "fusion": {"name": "late"}}))
    late_vectors = Predictor(late).embed(products)
    assert late_vectors.shape == (2, sum(late.input_dims.values()))
    features, _ = late.encode(late.prepare(products))
    torch.testing.assert_close(late_vectors[0], torch.cat([features[n][0] for n in late.input_dims]))


# ----------------------------------------------------------------------------- on Ray


@pytest.mark.slow
def test_ray_gives_the_same_predictions_as_fashion_predict(tiny: object, ray_cluster: Any,
                                                           tmp_path: Path) -> None:
    counts = _catalog(tmp_path / "in")
    bundle = save_bundle(make_model(0), tmp_path / "bundle")
    summary = run_ray_predict(bundle, tmp_path / "in", tmp_path / "out", concurrency=2,
                              batch_size=16, part_rows=40, block_rows=25, embeddings=True)
    assert summary.rows_in == sum(counts.values()) == summary.predicted + summary.rejected
    # corrupt and missing images, one title that is not text, rows with nothing to predict from
    empty = sum(_nothing_to_predict(i) for i in range(260))
    assert empty >= 1 and summary.rejected == 20 * 2 + 1 + empty and summary.workers == 2
    assert sum(summary.labels["color"].values()) == summary.predicted
    outputs = _outputs(tmp_path / "out")
    predictor = Predictor.from_pretrained(bundle)
    for name, n in counts.items():
        rows = outputs[name]
        assert [r["row"] for r in rows] == list(range(1, n + 1))  # every row once, in order
        local = tmp_path / "local" / f"{name}.jsonl"
        run_predict(predictor, tmp_path / "in" / name, local, batch_size=7)
        expected = {p["row"]: p for p in _lines(local)}
        rejects = {r["row"]: r for r in _lines(local.with_name(local.stem + ".rejects.jsonl"))}
        assert len(expected) + len(rejects) == n
        for r in rows:
            assert r["price"] is not None  # extra columns carried through
            if r["row"] in rejects:
                assert r["status"] == "rejected" and r["reason"] == rejects[r["row"]]["reason"]
                assert r["color_label"] is None and r["embedding"] is None
                continue
            want = expected[r["row"]]
            assert r["status"] == "predicted" and r["id"] == want["id"] and r["reason"] is None
            assert r["missing"] == want["diagnostics"]["missing"]
            for attribute, p in want["attributes"].items():
                assert r[f"{attribute}_label"] == p["label"]
                assert r[f"{attribute}_abstained"] == p["abstained"]
                assert abs(r[f"{attribute}_score"] - p["score"]) <= 2e-6
                assert [t["label"] for t in r[f"{attribute}_top_k"]] == [t[0] for t in p["top_k"]]
    reasons = [r["reason"] for r in outputs["b.jsonl"] if r["status"] == "rejected"]
    assert any("field 'title' must be text" in reason for reason in reasons)
    # --embeddings: the vectors Predictor.embed returns
    csv_rows = [r for r in outputs["a.csv"] if r["status"] == "predicted"][:20]
    manifest = {m.row: m for m in iter_manifest(tmp_path / "in" / "a.csv")}
    products = [row_to_product(manifest[r["row"]], tmp_path / "in" / "a.csv") for r in csv_rows]
    torch.testing.assert_close(torch.tensor([r["embedding"] for r in csv_rows]),
                               predictor.embed(products), atol=1e-5, rtol=1e-5)



@pytest.mark.slow
def test_hf_model_is_fetched_once_and_loaded_once_per_worker(tiny: object, ray_cluster: Any,
                                                            hub: Any, tmp_path: Path) -> None:
    from fashion.contract.manager import register_plugin, unregister_plugin
    from fashion.registry.hub import HubRegistry
    from tests.predict import distributed_probe

    register_plugin(distributed_probe, name="tests.distributed_probe")
    try:
        spec = {**TINY_SPEC, "views": {"full": {"name": "probe_crop"}}}
        model = train_briefly(FashionModel(spec))
        HubRegistry().publish(save_bundle(model, tmp_path / "bundle"), "team/shoes", tag="v1")
        _images(tmp_path / "images")
        rows = [{"id": f"q{i}", "images": str(tmp_path / "images" / ("red.png" if i % 4 else "gone.png")),
                 "title": "red dress", "sku": i} for i in range(40)]
        before = len(hub.state.requests)
        loads_before = ray_cluster.log.read_text().split()
        ds = predict_dataset(ray_cluster.ray.data.from_items(rows), "hf://team/shoes@v1",
                             concurrency=2, batch_size=8)
        downloads = [p for m, p in hub.state.requests[before:] if m == "GET" and "/resolve/" in p]
        assert len(downloads) == len(set(downloads)) > 1  # each file once, by the driver
        hub.stop()  # the workers can only read the cache now
        out = sorted(ds.take_all(), key=lambda r: r["sku"])
    finally:
        unregister_plugin(name="tests.distributed_probe")
    assert [r["sku"] for r in out] == list(range(40))
    assert [r["status"] for r in out].count("rejected") == 10
    expected = Predictor(model).predict([{"id": r["id"], "images": [r["images"]], "title": r["title"]}
                                         for r in rows if r["sku"] % 4])
    assert [r["color_label"] for r in out if r["status"] == "predicted"] == [
        p.attributes["color"].label for p in expected]
    loads = ray_cluster.log.read_text().split()[len(loads_before):]
    workers = [pid for pid in loads if pid != str(os.getpid())]
    # one load per actor (a pool of 2; Ray may finish 40 rows before the second one is up)
    assert 1 <= len(workers) <= 2 and len(set(workers)) == len(workers)


def _resnet_bundle(path: Path) -> Path:
    """A model made of built-in components only (the CLI subprocess loads no test plugin)."""
    torch.manual_seed(0)
    spec = {"views": {"full": {"name": "full", "options": {"size": 32}}},
            "backbones": {"image": {"name": "resnet18", "views": ["full"],
                                    "options": {"pretrained": False}}},
            "fusion": {"name": "concat"},
            "attributes": {"color": {"labels": ["red", "blue", "navy"]}}}
    return save_bundle(FashionModel(spec, pretrained=False).eval(), path)


@pytest.mark.slow
def test_cli_on_a_parquet_folder_killed_and_rerun(ray_cluster: Any, tmp_path: Path) -> None:
    assert SCRIPT, "the fashion console script is not installed in this environment"
    bundle = _resnet_bundle(tmp_path / "bundle")
    data = tmp_path / "in"
    _images(data / "images")
    n_files, n_rows = 8, 40
    for k in range(n_files):
        rows = [dict(_row(k * n_rows + i), images=_row(k * n_rows + i)["images"].split("|")[0])
                for i in range(n_rows)]
        pq.write_table(pa.Table.from_pylist(rows), data / f"shard-{k}.parquet")
    out = tmp_path / "out"
    command = [SCRIPT, "predict", str(bundle), str(data), "--out", str(out), "--engine", "ray",
               "--concurrency", "2", "--batch-size", "8"]
    env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*command, "--address", ray_cluster.address], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("*.parquet")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    _, err = first.communicate(timeout=60)
    done_before = len(list(out.glob("*.parquet")))
    assert 1 <= done_before < n_files, err[-3000:]  # killed part-way

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    first_line = second.stdout.splitlines()[0]
    total = n_files * n_rows
    assert first_line.startswith(f"{total} rows in = ")
    assert first_line.endswith(" from the earlier run)")
    assert f"of {n_files} parts were complete from the earlier run" in second.stdout
    assert "products/s" in second.stdout and "color:" in second.stdout
    assert not list(out.glob(".*tmp*"))
    outputs = _outputs(out)
    assert sorted(outputs) == [f"shard-{k}.parquet" for k in range(n_files)]
    for rows in outputs.values():
        assert [r["row"] for r in rows] == list(range(1, n_rows + 1))  # none missing, none twice
    statuses = [r["status"] for rows in outputs.values() for r in rows]
    predicted, rejected = statuses.count("predicted"), statuses.count("rejected")
    assert f"{total} rows in = {predicted} predicted + {rejected} rejected" in first_line
    assert rejected == sum(1 for i in range(total) if i % 13 in (0, 1) or _nothing_to_predict(i))


@pytest.mark.slow
def test_a_node_without_the_folder_writes_the_shipped_bundle_once(tiny: object, ray_cluster: Any,
                                                                  tmp_path: Path,
                                                                  fashion_home: Path) -> None:
    """Multi-node clusters: a worker that cannot see the driver's folder loads the copy the
    driver put in the object store, written once under $FASHION_HOME/ray-bundles/<sha>."""
    from dataclasses import replace

    from fashion.predict.ray.worker import _bundle_folder, resolve_model
    from fashion.registry.bundle import load_bundle

    model = make_model(0)
    ref = resolve_model(save_bundle(model, tmp_path / "bundle"), ship=True)
    assert _bundle_folder(ref) == Path(ref.folder)  # visible here: used as is
    elsewhere = replace(ref, folder=str(tmp_path / "not-on-this-node"))
    copy = _bundle_folder(elsewhere)
    assert copy == fashion_home / "ray-bundles" / ref.key
    assert _bundle_folder(elsewhere) == copy  # the second worker of the node reuses it
    loaded = Predictor(load_bundle(copy)).predict([{"images": [image("red")], "title": "red"}])
    assert loaded[0].to_dict() == Predictor(model).predict([{"images": [image("red")],
                                                              "title": "red"}])[0].to_dict()
    with pytest.raises(Exception, match="cannot see the bundle folder"):
        _bundle_folder(replace(elsewhere, files=None, key="0" * 64))


@pytest.mark.slow
def test_predict_dataset_refuses_what_it_cannot_run(ray_cluster: Any, tmp_path: Path) -> None:
    ds = ray_cluster.ray.data.from_items([{"id": "a", "title": "red dress"}])
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'; use one of torch, onnxruntime"):
        predict_dataset(ds, tmp_path, runtime="tensorrt")
    with pytest.raises(ConfigError, match="asks for 1 GPU but the Ray cluster has 0"):
        predict_dataset(ds, tmp_path, num_gpus=1)
    with pytest.raises(ConfigError, match="leave no CPU to read"):
        predict_dataset(ds, tmp_path, concurrency=2, num_cpus=1)


@pytest.mark.slow
def test_runtime_reaches_the_predictor_and_its_error_the_user(
        tiny: object, ray_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``runtime="onnxruntime"`` is the Predictor's: a bundle without an ONNX export is refused on
    the driver with the Predictor's message (no actor traceback), in Python and in the CLI."""
    from fashion.errors import BundleError

    pytest.importorskip("onnxruntime")
    bundle = save_bundle(make_model(0), tmp_path / "bundle")
    ds = ray_cluster.ray.data.from_items([{"id": "a", "title": "red dress"}])
    with pytest.raises(BundleError, match="has no fp32 ONNX model.*fashion export"):
        predict_dataset(ds, bundle, runtime="onnxruntime")
    (tmp_path / "in.csv").write_text("id,title\n1,red dress\n")
    with pytest.raises(SystemExit) as info:
        main(["predict", str(bundle), str(tmp_path / "in.csv"), "--out", str(tmp_path / "out"),
              "--engine", "ray", "--address", ray_cluster.address, "--runtime", "onnxruntime"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "has no fp32 ONNX model" in err and "Traceback" not in err

    from fashion.cli import optimize as optimize_cli

    optimize_cli._export(bundle, ["fp32"])
    (tmp_path / "in.csv").write_text("id,title,images\n1,red dress,red.png\n2,blue shirt,\n")
    image("red").save(tmp_path / "red.png")
    summary = run_ray_predict(bundle, tmp_path / "in.csv", tmp_path / "out", concurrency=1,
                              runtime="onnxruntime", address=ray_cluster.address)
    rows = _outputs(tmp_path / "out")["in.csv"]
    local = Predictor.from_pretrained(bundle, runtime="onnxruntime").predict(
        [{"id": "1", "title": "red dress", "images": [tmp_path / "red.png"]},
         {"id": "2", "title": "blue shirt"}])
    assert summary.predicted == 2
    for row, want in zip(rows, local, strict=True):
        for attribute, p in want.to_dict()["attributes"].items():
            assert row[f"{attribute}_label"] == p["label"]
            assert abs(row[f"{attribute}_score"] - p["score"]) <= 1e-5


@pytest.mark.slow
def test_ray_embeddings_are_indexed_by_fashion_index_build(
        tiny: object, ray_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The --out folder of `--engine ray --embeddings` is what `fashion index build` reads: the
    vectors `fashion embed` writes (L2-normalized), the attributes, the model revision; a
    product's own vector finds it first; a part of another revision or without vectors is
    refused."""
    import numpy as np

    pytest.importorskip("faiss")
    from fashion.search import Index, model_revision, read_info, run_embed
    from fashion.search.vectors import VECTORS_META

    _images(tmp_path / "images")
    names = ["red", "blue", "navy", "corrupt"]
    rows = [{"id": f"p{i}", "images": str(tmp_path / "images" / f"{names[i % 4]}.png"),
             "title": f"{['red dress', 'blue shirt', 'wide trousers'][i % 3]} {i} {'x' * i}"}
            for i in range(12)]
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bundle = save_bundle(make_model(0), tmp_path / "bundle")
    summary = run_ray_predict(bundle, tmp_path / "in.csv", tmp_path / "out", concurrency=1,
                              batch_size=8, embeddings=True)
    assert summary.predicted == 9 and summary.rejected == 3  # every 4th image is corrupt
    assert main(["index", "build", str(tmp_path / "out"), "--out", str(tmp_path / "ix")]) in (0, None)
    capsys.readouterr()
    index = Index.load(tmp_path / "ix")
    predictor = Predictor.from_pretrained(bundle)
    assert index.info.model_revision == model_revision(predictor.model)
    assert index.info.model == str(Path(bundle).resolve())
    assert sorted(index.ids) == sorted(f"p{i}" for i in range(12) if i % 4 != 3)
    assert index.images[index.ids.index("p0")] == rows[0]["images"]
    run_embed(predictor, tmp_path / "in.csv", tmp_path / "v.parquet")
    embedded = Index.build([tmp_path / "v.parquet"])
    assert sorted(embedded.ids) == sorted(index.ids)
    for pid in index.ids:  # the same unit vectors and attributes as `fashion embed`'s
        np.testing.assert_allclose(index.vector(pid), embedded.vector(pid), atol=1e-5)
        assert abs(float(np.linalg.norm(index.vector(pid))) - 1.0) < 1e-5
        own = index.attributes.row(index.position[pid])
        want = embedded.attributes.row(embedded.position[pid])
        assert own.keys() == want.keys()
        for name in own:
            assert own[name]["label"] == want[name]["label"]
            assert abs(own[name]["score"] - want[name]["score"]) < 1e-4
        hits = index.search(index.vector(pid), k=1, revision=index.info.model_revision)
        assert hits[0].id == pid and hits[0].score == pytest.approx(1.0, abs=1e-4)

    part = next((tmp_path / "out").glob("*.parquet"))
    table = pq.read_table(part)
    meta = json.loads(table.schema.metadata[VECTORS_META])
    other = tmp_path / "other"
    other.mkdir()
    pq.write_table(table, other / "a.parquet")
    pq.write_table(table.replace_schema_metadata(
        {**table.schema.metadata, VECTORS_META: json.dumps(
            {**meta, "model_revision": "another"}).encode()}), other / "b.parquet")
    with pytest.raises(ConfigError, match="b.parquet holds vectors of model revision another"):
        read_info(other)
    with pytest.raises(ConfigError, match="model revision another"):
        index.add([other / "b.parquet"])
    plain = tmp_path / "plain"
    plain.mkdir()
    pq.write_table(table.replace_schema_metadata({}), plain / "a.parquet")
    with pytest.raises(SystemExit) as info:
        main(["index", "build", str(plain), "--out", str(tmp_path / "ix2")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "--embeddings" in err and "Traceback" not in err


@pytest.mark.slow
def test_ray_embeddings_in_an_emphasized_space(
        tiny: object, ray_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--engine ray --embeddings --emphasize`: the vectors `fashion embed --emphasize` writes,
    the space recorded for `fashion index build`; an unknown attribute is refused on the driver."""
    import numpy as np

    pytest.importorskip("faiss")
    from fashion.search import Index, run_embed

    _images(tmp_path / "images")
    rows = [{"id": f"p{i}", "images": str(tmp_path / "images" / f"{['red', 'blue', 'navy'][i % 3]}.png"),
             "title": f"{['red dress', 'blue shirt', 'wide trousers'][i % 3]} {i}"} for i in range(6)]
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bundle = save_bundle(make_model(0), tmp_path / "bundle")
    space = {"emphasize": ["category"], "emphasis": 0.4}
    with pytest.raises(ConfigError, match="cannot emphasize sleeve"):
        run_ray_predict(bundle, tmp_path / "in.csv", tmp_path / "bad", concurrency=1,
                        embeddings=True, embedding_space={"emphasize": ["sleeve"]})
    summary = run_ray_predict(bundle, tmp_path / "in.csv", tmp_path / "out", concurrency=1,
                              batch_size=4, embeddings=True, embedding_space=space)
    assert summary.predicted == 6
    index = Index.build([tmp_path / "out"])
    assert index.info.space.model_dump() == space
    predictor = Predictor.from_pretrained(bundle)
    predictor.set_embedding_space(space)
    run_embed(predictor, tmp_path / "in.csv", tmp_path / "v.parquet")
    embedded = Index.build([tmp_path / "v.parquet"])
    assert embedded.info == index.info.model_copy(update={"model": embedded.info.model})
    for pid in index.ids:
        np.testing.assert_allclose(index.vector(pid), embedded.vector(pid), atol=1e-5)
    with pytest.raises(SystemExit) as info:
        main(["predict", str(bundle), str(tmp_path / "in.csv"), "--out", str(tmp_path / "x.jsonl"),
              "--emphasize", "category"])
    assert info.value.code == 2 and "--emphasize shapes the product vector" in capsys.readouterr().err
