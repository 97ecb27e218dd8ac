"""Embeddings: one encode for heads and vector, `fashion embed` rows/rejects/resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from fashion import Predictor
from fashion.errors import ConfigError
from fashion.search import read_info, run_embed
from fashion.search.vectors import model_revision
from tests.search.conftest import photo_manifest
from tests.tiny_model import image, make_model


def test_predict_with_embeddings_encodes_once(tiny: object, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(0)
    predictor = Predictor(model)
    products = [{"id": "a", "images": [image("red")], "title": "red dress"},
                {"id": "b", "title": "blue shirt"}, {"id": "c", "images": [image("blue")]}]
    expected = predictor.embed(products)
    plain = predictor.predict(products)
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda batch: calls.append(1) or encode(batch))
    both = predictor.predict(products, embeddings=True, batch_size=2)
    assert len(calls) == 2  # one encode per batch, for the heads and the vectors together
    np.testing.assert_allclose(np.stack([p.embedding for p in both]), expected.numpy(), atol=1e-6)
    for a, b in zip(plain, both, strict=True):
        assert {n: p.label for n, p in a.attributes.items()} == \
            {n: p.label for n, p in b.attributes.items()}
        assert "embedding" not in a.to_dict() and len(b.to_dict()["embedding"]) == expected.shape[1]
    unit = predictor.embed(products, normalize=True)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    per_input = predictor.embed(products, per_input=True)
    assert set(per_input) == set(model.input_dims)
    assert float(per_input["text" if "text" in per_input else next(iter(per_input))].abs().sum()) > 0


def test_embed_writes_rows_and_rejects_and_resumes(tiny: object, bundle: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import fashion.search.embed as embed_module

    manifest = photo_manifest(tmp_path / "photos", n=20, bad=(5, 13))
    predictor = Predictor.from_pretrained(bundle, device="cpu")
    out = tmp_path / "vectors.parquet"
    monkeypatch.setenv("FASHION_EMBED_PART_ROWS", "4")
    calls = {"n": 0}

    def stop_after_two_parts(name: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as a user's Ctrl-C between two parts

    monkeypatch.setattr(embed_module, "fault_point", stop_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        run_embed(predictor, manifest, out, batch_size=3)
    assert not out.exists() and len(list((tmp_path / "vectors.parquet.parts").iterdir())) == 2
    with pytest.raises(ConfigError, match="--resume"):
        run_embed(predictor, manifest, out, batch_size=3)
    monkeypatch.setattr(embed_module, "fault_point", lambda name: None)
    summary = run_embed(predictor, manifest, out, batch_size=3, resume=True)
    assert summary.rows_in == 20 == summary.embedded + summary.rejected and summary.rejected == 2
    assert summary.resumed >= 8 and not (tmp_path / "vectors.parquet.parts").exists()
    table = pq.read_table(out)
    rows = table.column("row").to_pylist()
    assert sorted(rows) == [r for r in range(1, 21) if r not in (6, 14)]  # each row once
    rejects = [json.loads(line) for line in out.with_name("vectors.rejects.jsonl").read_text().splitlines()]
    assert sorted(r["row"] for r in rejects) == [6, 14] and all("does not exist" in r["reason"] for r in rejects)
    info = read_info(out)
    assert info.model_revision == model_revision(predictor.model) and info.dimension == predictor.embedding_dim
    vectors = np.asarray(table.column("vector").to_pylist(), np.float32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    first = table.to_pylist()[rows.index(1)]
    want = predictor.predict([{"images": [str(tmp_path / "photos" / "0.png")], "title": "red dress 0"}],
                             embeddings=True)[0]
    np.testing.assert_allclose(first["vector"], want.embedding / np.linalg.norm(want.embedding), atol=1e-5)
    assert first["color_label"] == want.attributes["color"].label
    assert abs(first["color_score"] - want.attributes["color"].score) < 1e-6


def test_embed_command(tiny: object, bundle: Path, tmp_path: Path, cli_main: Any,
                       capsys: pytest.CaptureFixture[str]) -> None:
    manifest = photo_manifest(tmp_path / "photos", n=6, bad=(2,))
    out = tmp_path / "v.parquet"
    cli_main(["embed", str(bundle), str(manifest), "--out", str(out), "--batch-size", "4"])
    assert "6 rows in = 5 embedded + 1 rejected" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an existing OUT is neither replaced nor appended to
        cli_main(["embed", str(bundle), str(manifest), "--out", str(out)])
    assert "--resume" in capsys.readouterr().err
    cli_main(["embed", str(bundle), str(manifest), "--out", str(out), "--resume"])
    assert "6 rows in = 5 embedded + 1 rejected (6 from the earlier run)" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 5


def test_ray_worker_encodes_each_batch_once_with_embeddings(tiny: object, bundle: Path,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The actor of `fashion predict --engine ray --embeddings` (called directly, no cluster):
    one encode per batch feeds the heads and the vectors."""
    import pyarrow as pa

    from fashion.model.network import FashionModel
    from fashion.predict.ray.inputs import ROW, SOURCE
    from fashion.predict.ray.worker import PredictBatches, resolve_model

    photos = photo_manifest(tmp_path / "photos", n=5)
    worker = PredictBatches(resolve_model(bundle), embeddings=True, batch_size=2)
    calls = []
    encode = FashionModel.encode
    monkeypatch.setattr(FashionModel, "encode", lambda self, b: calls.append(1) or encode(self, b))
    rows = [json.loads(line) for line in photos.read_text().splitlines()]
    table = pa.table({"id": [r["id"] for r in rows], "image": [r["image"] for r in rows],
                      "title": [r["title"] for r in rows], SOURCE: [str(photos)] * 5,
                      ROW: list(range(1, 6))})
    out = worker(table).to_pylist()
    assert len(calls) == 3  # batches of 2, 2 and 1
    expected = Predictor.from_pretrained(bundle, device="cpu").embed(
        [{"images": [r["image"]], "title": r["title"]} for r in rows])
    np.testing.assert_allclose(np.asarray([r["embedding"] for r in out]), expected.numpy(), atol=1e-5)
    assert all(r["status"] == "predicted" for r in out)
