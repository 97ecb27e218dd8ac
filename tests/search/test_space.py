"""The product vector with attributes emphasized (fashion.model.space), end to end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fashion import Predictor
from fashion.errors import ConfigError
from fashion.model.space import EmbeddingSpace, compose
from fashion.search import read_info
from fashion.search.vectors import model_revision
from tests.search.conftest import photo_manifest
from tests.tiny_model import image, make_model

PRODUCTS = [{"id": "a", "images": [image("red")], "title": "red dress"},
            {"id": "b", "title": "blue shirt"}, {"id": "c", "images": [image("blue")]}]


def test_compose_weighs_the_fused_vector_and_each_attribute_as_asked(tiny: object) -> None:
    model = make_model(0)
    fused = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    logits = {"color": torch.tensor([[2.0, 0.0], [5.0, 5.0]]),
              "category": torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 9.0]])}
    space = EmbeddingSpace(emphasize=["color", "category"], emphasis=0.4)
    out = compose(model, fused, logits, space)
    assert out.shape == (2, 3 + 2 + 3)
    np.testing.assert_allclose(out[0, :3].norm().item() ** 2, 0.6, atol=1e-6)  # 1 - emphasis
    np.testing.assert_allclose(out[0, 3:5].norm().item() ** 2, 0.2, atol=1e-6)  # emphasis / 2
    np.testing.assert_allclose(out[0].norm().item(), 1.0, atol=1e-6)
    # a block is centred per product: softmax ignores a shift, so does the vector
    shifted = compose(model, fused, {"color": logits["color"] + 7.0, "category": logits["category"] - 3.0}, space)
    torch.testing.assert_close(shifted, out)
    np.testing.assert_allclose(out[0, 3:5].numpy(), [math.sqrt(0.2 / 2), -math.sqrt(0.2 / 2)], atol=1e-6)
    assert torch.isfinite(out).all() and out[1, :5].abs().sum() == 0  # no input, tied labels: zeros
    assert compose(model, fused, logits, EmbeddingSpace()) is fused  # the fused space: unchanged


def test_embed_and_predict_agree_in_an_emphasized_space(tiny: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(0)
    predictor = Predictor(model)
    base = predictor.embedding_dim
    space = predictor.set_embedding_space({"emphasize": ["category"], "emphasis": 0.5})
    assert predictor.embedding_dim == base + 3 and space.describe() == "fused + category (emphasis 0.5)"
    vectors = predictor.embed(PRODUCTS)
    assert vectors.shape == (3, base + 3)
    calls: list[int] = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda batch: calls.append(1) or encode(batch))
    both = predictor.predict(PRODUCTS, embeddings=True, batch_size=3)
    assert len(calls) == 1  # heads, fused vector and emphasized block from one encode
    np.testing.assert_allclose(np.stack([p.embedding for p in both]), vectors.numpy(), atol=1e-5)
    fused = predictor.embed(PRODUCTS, space=EmbeddingSpace())  # another space, asked per call
    assert fused.shape == (3, base)
    np.testing.assert_allclose(vectors[:, :base].numpy(), (torch.nn.functional.normalize(fused, dim=1)
                                                           * math.sqrt(0.5)).numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="cannot emphasize sleeve.*category"):
        predictor.set_embedding_space({"emphasize": ["sleeve"]})
    with pytest.raises(ConfigError, match="twice"):
        predictor.set_embedding_space({"emphasize": ["color", "color"]})
    with pytest.raises(ConfigError, match="embedding space"):
        predictor.set_embedding_space({"emphasize": ["color"], "emphasis": 1.5})


def test_the_revision_of_an_emphasized_space_follows_its_heads(tiny: object) -> None:
    model = make_model(0)
    fused, emphasized = EmbeddingSpace(), EmbeddingSpace(emphasize=["category"])
    before = (model_revision(model, fused), model_revision(model, emphasized))
    with torch.no_grad():
        next(model.heads["category"].parameters()).add_(0.5)  # retrain the emphasized head
    assert model_revision(model, fused) == before[0]  # the fused vector did not change
    assert model_revision(model, emphasized) != before[1]  # the emphasized one did


def test_embed_index_and_search_in_an_emphasized_space(tiny: object, bundle: Path, tmp_path: Path,
                                                       cli_main: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from fashion.search import Index

    manifest = photo_manifest(tmp_path / "photos", n=12)
    out, fused_out = tmp_path / "vectors.parquet", tmp_path / "fused.parquet"
    run = ["embed", str(bundle), str(manifest), "--device", "cpu"]
    cli_main([*run, "--out", str(out), "--emphasize", "color", "--emphasis", "0.3"])
    assert "vectors: fused + color (emphasis 0.3)" in capsys.readouterr().out
    info = read_info(out)
    assert info.space == EmbeddingSpace(emphasize=["color"], emphasis=0.3)
    predictor = Predictor.from_pretrained(bundle, device="cpu")
    assert info.dimension == predictor.embedding_dim + 2
    assert info.model_revision == model_revision(predictor.model, info.space)
    with pytest.raises(SystemExit):
        cli_main([*run, "--out", str(tmp_path / "x.parquet"), "--emphasize", "sleeve"])
    err = capsys.readouterr().err
    assert "cannot emphasize sleeve" in err and "Traceback" not in err
    index = Index.build([out])
    assert index.describe()["space"] == "fused + color (emphasis 0.3)"
    # a product query is embedded in the index's space, whatever the predictor's own
    hits = index.search({"id": "q", "images": [str(tmp_path / "photos" / "0.png")],
                         "title": "red dress 0"}, 1,
                        predictor=predictor)
    assert hits[0].id == "p0" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert predictor.embedding_space == EmbeddingSpace()  # the call did not change it
    # vectors of another space never join the index
    cli_main([*run, "--out", str(fused_out)])
    with pytest.raises(ConfigError, match="space fused but the index's are in fused \\+ color"):
        index.add([fused_out])
