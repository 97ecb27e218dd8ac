"""POST /v1/similar of `fashion serve --index`, over real HTTP on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.search.conftest import photo_manifest
from tests.serve.conftest import b64, bundle, start  # noqa: F401 - the bundle fixture


def test_similar_over_http(bundle: Path, tiny: object, tmp_path: Path,  # noqa: F811
                           tmp_path_factory: pytest.TempPathFactory) -> None:
    from fashion import Predictor
    from fashion.search import Index, run_embed

    manifest = photo_manifest(tmp_path / "photos", n=12)
    predictor = Predictor.from_pretrained(bundle, device="cpu")
    predictor.set_embedding_space({"emphasize": ["color"]})  # the server embeds queries alike
    run_embed(predictor, manifest, tmp_path / "v.parquet")
    Index.build([tmp_path / "v.parquet"]).save(tmp_path / "ix")
    server = start(bundle, tmp_path_factory, "--index", str(tmp_path / "ix"), "--api-key-env",
                   "SEARCH_KEY", env={"SEARCH_KEY": "s3cret"})
    try:
        body = {"products": [{"id": "q", "title": "red dress 0",
                              "images": [b64((tmp_path / "photos" / "0.png").read_bytes())]}]}
        key = {"X-API-Key": "s3cret"}
        assert server.request("POST", "/v1/similar", body).status == 401  # the key of /predict
        reply = server.request("POST", "/v1/similar?k=3", body, key)
        assert reply.status == 200, reply.body
        product = reply.json()["products"][0]
        assert product["id"] == "q" and set(product["attributes"]) == {"color", "category"}
        hits = product["similar"]
        assert len(hits) == 3 and hits[0]["id"] == "p0" and hits[0]["score"] == pytest.approx(1, abs=1e-4)
        assert hits[0]["thumbnail"] == "/v1/similar/image/p0" and "image" not in hits[0]
        thumb = server.request("GET", hits[0]["thumbnail"], headers=key)
        assert thumb.status == 200 and thumb.body == (tmp_path / "photos" / "0.png").read_bytes()
        assert server.request("GET", hits[0]["thumbnail"]).status == 401
        assert server.request("GET", "/v1/similar/image/nope", headers=key).status == 404
        assert server.request("GET", "/v1/model", headers=key).json()["index"]["products"] == 12
        label = hits[1]["attributes"]["color"]["label"]
        reply = server.request("POST", f"/v1/similar?k=20&where=color={label}", body, key)
        assert all(h["attributes"]["color"]["label"] == label for h in reply.json()["products"][0]["similar"])
        bad = server.request("POST", "/v1/similar?where=size=m", body, key)
        assert bad.status == 422 and "no attribute 'size'" in bad.message
        assert server.request("POST", "/v1/similar?k=0", body, key).status == 422
        many = {"products": [{"title": "x"}] * 65}  # the limit of /v1/predict
        assert server.request("POST", "/v1/similar", many, key).status == 422
        predicted = server.request("POST", "/v1/predict", body, key).json()
        assert "embedding" not in json.dumps(predicted)
    finally:
        server.stop()


def test_index_of_another_model_stops_the_server(bundle: Path, tiny: object, tmp_path: Path,  # noqa: F811
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    from fashion import Predictor
    from fashion.search import Index, run_embed
    from tests.tiny_model import make_model

    run_embed(Predictor(make_model(1)), photo_manifest(tmp_path / "p", n=4), tmp_path / "v.parquet")
    Index.build([tmp_path / "v.parquet"]).save(tmp_path / "ix")
    with pytest.raises(RuntimeError, match="model revision"):
        start(bundle, tmp_path_factory, "--index", str(tmp_path / "ix"))
