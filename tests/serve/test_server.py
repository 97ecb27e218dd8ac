"""``fashion serve`` as a real subprocess on loopback: predictions, explain, model info, metrics,
dynamic batching, and 30+ malformed requests that each get a 4xx JSON error."""

from __future__ import annotations

import io
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'fashion-sdk[serve]'")

from fashion.serve.images import open_image  # noqa: E402
from tests.serve.conftest import Reply, Server, b64, photo, start
from tests.tiny_model import assert_close_predictions

KEY = "s3cret-test-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Defaults, except a 50 ms batch window so concurrent requests surely meet."""
    s = start(bundle, tmp_path_factory, "--batch-timeout-ms", "50")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def strict(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Small limits and an API key, for the malformed-request suite."""
    s = start(bundle, tmp_path_factory, "--api-key-env", "FASHION_TEST_KEY", "--max-products", "4",
              "--max-images", "3", "--max-body-mb", "1", "--max-image-pixels", "1000000",
              env={"FASHION_TEST_KEY": KEY})
    try:
        yield s
    finally:
        s.stop()


def sample_products() -> list[dict[str, Any]]:
    return [
        {"id": "p1", "title": "red summer dress", "images": [photo("red")]},
        {"id": "p2", "title": "blue cotton shirt", "description": "slim fit", "brand": "Acme",
         "images": [photo("blue", (64, 128), "JPEG"), photo("red", (80, 80))]},
        {"id": "p3", "title": "wide leg trousers"},
        {"id": "p4", "images": [photo("blue")]},
    ]


def as_json(products: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**p, "images": [b64(i) for i in p.get("images", [])]} for p in products]


def local_predictions(bundle: Path, products: list[dict[str, Any]], top_k: int = 3) -> list[dict[str, Any]]:
    from fashion import Predictor

    predictor = Predictor.from_pretrained(bundle)
    return [r.to_dict() for r in predictor.predict(products, top_k=top_k)]


def test_predictions_equal_predictor(server: Server, bundle: Path, tiny_registered: None) -> None:
    products = sample_products()
    reply = server.request("POST", "/v1/predict", {"products": as_json(products), "top_k": 2})
    assert reply.status == 200, reply.body
    served = reply.json()["predictions"]
    expected = local_predictions(bundle, products, top_k=2)
    assert [p["id"] for p in served] == ["p1", "p2", "p3", "p4"]
    assert_close_predictions(served, expected)
    assert [p["diagnostics"] for p in served] == [p["diagnostics"] for p in expected]
    assert served[2]["diagnostics"]["missing"] == ["image"]
    assert served[3]["diagnostics"]["missing"] == ["text"]
    assert all(len(a["top_k"]) == 2 for p in served for a in p["attributes"].values())


def test_empty_product_is_refused_alone(server: Server) -> None:
    """A product with no image and no text is an error for the Predictor too: the request that
    holds it gets a 422 naming it, and requests batched with it are unaffected."""
    empty = {"products": [{"id": "p1", "title": "red dress"}, {"id": "p5"}]}
    good = {"products": [{"id": "g", "title": "blue shirt"}]}
    replies: dict[str, Reply] = {}
    threads = [threading.Thread(target=lambda k=k, b=b: replies.__setitem__(k, server.request("POST", "/v1/predict", b)))
               for k, b in (("empty", empty), ("good", good))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies["empty"].status == 422, replies["empty"].body
    assert replies["empty"].json()["error"]["code"] == "bad_product"
    assert "products[1]" in replies["empty"].message and "no image and no text" in replies["empty"].message
    assert replies["good"].status == 200, replies["good"].body
    assert [p["id"] for p in replies["good"].json()["predictions"]] == ["g"]


def test_multipart_upload_equals_predictor(server: Server, bundle: Path, tiny_registered: None) -> None:
    boundary = "fashion-test-boundary"
    parts = []
    for name, value in (("id", "m1"), ("title", "red summer dress")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for k, data in enumerate((photo("red"), photo("blue", (50, 70)))):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{k}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    reply = server.request("POST", "/v1/predict", body,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status == 200, reply.body
    expected = local_predictions(bundle, [{"id": "m1", "title": "red summer dress",
                                           "images": [photo("red"), photo("blue", (50, 70))]}])
    assert_close_predictions(reply.json()["predictions"], expected)


def test_data_uri_and_explain_boxes(server: Server, bundle: Path, tiny_registered: None) -> None:
    from fashion import Predictor

    data = photo("red", (150, 100))
    product = {"id": "e1", "title": "red dress", "images": [f"data:image/png;base64,{b64(data)}"]}
    reply = server.request("POST", "/v1/explain", {"products": [product]})
    assert reply.status == 200, reply.body
    body = reply.json()
    image_info = body["images"][0][0]
    assert (image_info["width"], image_info["height"]) == (150, 100)
    assert set(image_info["views"]) == {"full", "center", "box"}
    model = Predictor.from_pretrained(bundle).model
    image = open_image(data, max_pixels=10**6, where="test")
    for view, info in image_info["views"].items():
        cuts = model.croppers[view].crop(image)
        assert info["boxes"] == [list(c.box) for c in cuts], view
        assert info["size"] == [32, 32]
    assert image_info["views"]["full"]["boxes"] == [[0, 0, 150, 100]]
    # the box cropper found the garment, not the whole photo
    assert image_info["views"]["box"]["boxes"][0] != [0, 0, 150, 100]
    expected = local_predictions(bundle, [{"id": "e1", "title": "red dress", "images": [data]}])
    assert_close_predictions(body["predictions"], expected)


def test_model_health_ready_and_page(server: Server) -> None:
    info = server.request("GET", "/v1/model").json()
    assert info["attributes"]["color"]["labels"] == ["red", "blue"]
    assert info["attributes"]["category"]["labels"] == ["dress", "shirt", "pants"]
    assert info["metrics"] == {"color": {"accuracy": 1.0}}
    assert info["precision"] == "fp32" and info["views"] == ["full", "center", "box"]
    assert info["model"] == "bundle" and len(info["content_hash"]) == 16
    assert server.request("GET", "/healthz").json() == {"status": "ok"}
    assert server.request("GET", "/readyz").json() == {"ready": True}
    page = server.request("GET", "/")
    assert page.status == 200 and b"/v1/explain" in page.body
    schema = server.request("GET", "/openapi.json").json()
    assert {"/v1/predict", "/v1/explain", "/v1/model", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_concurrent_requests_are_batched(server: Server, bundle: Path, tiny_registered: None) -> None:
    before = server.request("GET", "/metrics").body.decode()
    clients = 12
    replies: list[Reply | None] = [None] * clients
    go = threading.Barrier(clients)

    def client(i: int) -> None:
        go.wait()
        replies[i] = server.request("POST", "/v1/predict", {"products": [
            {"id": f"c{i}", "title": "red dress" if i % 2 else "blue shirt",
             "images": [b64(photo("red" if i % 2 else "blue"))]}]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and r.status == 200 for r in replies)
    expected = local_predictions(bundle, [
        {"id": f"c{i}", "title": "red dress" if i % 2 else "blue shirt",
         "images": [photo("red" if i % 2 else "blue")]} for i in range(clients)])
    assert_close_predictions([r.json()["predictions"][0] for r in replies if r], expected)
    after = server.request("GET", "/metrics").body.decode()
    batches = metric(after, "fashion_batch_size_count") - metric(before, "fashion_batch_size_count")
    products = metric(after, "fashion_batch_size_sum") - metric(before, "fashion_batch_size_sum")
    assert products == clients
    assert batches < clients, f"{clients} concurrent requests ran in {batches:g} batches"
    singles = metric(after, "fashion_batch_size_bucket", 'le="1.0"') - metric(before, "fashion_batch_size_bucket", 'le="1.0"')
    assert singles < batches or batches == 1  # at least one batch held more than one request
    assert metric(after, "fashion_requests_total", 'route="/v1/predict",status="200"') >= clients


# ----------------------------------------------------------------------------- malformed requests


def png_header_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's shape) with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def big_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def one(**fields: Any) -> dict[str, Any]:
    return {"products": [{"id": "x", **fields}]}


def multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
    boundary = "b0undary"
    out = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


Case = tuple[str, str, Any, dict[str, str], int, str]  # name, method+path, body, headers, status, text


def cases() -> list[Case]:
    ok_image = b64(photo())
    truncated = photo("red", (200, 200))[:120]
    form_unknown = multipart({"colour": (None, b"red")})
    form_text_file = multipart({"images": ("notes.txt", b"hello, not an image")})
    form_top_k = multipart({"top_k": (None, b"abc"), "title": (None, b"dress")})
    post = "POST /v1/predict"
    return [
        ("bad json", post, b"{bad", AUTH, 400, "not valid JSON"),
        ("empty body", post, b"", AUTH, 400, "body is empty"),
        ("not utf-8", post, b'{"products": "\xff\xfe"}', AUTH, 400, "UTF-8"),
        ("deep nesting", post, b"[" * 100_000 + b"]" * 100_000, AUTH, 400, "nested too deeply"),
        ("top-level list", post, [], AUTH, 422, "valid dictionary"),
        ("products missing", post, {}, AUTH, 422, "products: Field required"),
        ("products not a list", post, {"products": "shoes"}, AUTH, 422, "products: Input should be a valid list"),
        ("product is a string", post, {"products": ["shoe"]}, AUTH, 422, "products[0]"),
        ("title is a number", post, one(title=5), AUTH, 422, "products[0].title"),
        ("id is an object", post, one(id={"a": 1}), AUTH, 422, "products[0].id"),
        ("images not a list", post, one(images=ok_image), AUTH, 422, "products[0].images"),
        ("image is a number", post, one(images=[7]), AUTH, 422, "products[0].images[0]"),
        ("unknown product field", post, one(image=ok_image), AUTH, 422, "unknown field"),
        ("unknown top-level field", post, {"products": [{}], "limit": 3}, AUTH, 422, "limit: unknown field"),
        ("top_k zero", post, {"products": [{}], "top_k": 0}, AUTH, 422, "top_k"),
        ("top_k too large", post, {"products": [{}], "top_k": 1000}, AUTH, 422, "less than or equal to 20"),
        ("top_k as text", post, {"products": [{}], "top_k": "3"}, AUTH, 422, "top_k"),
        ("no products", post, {"products": []}, AUTH, 422, "at least one product"),
        ("too many products", post, {"products": [{}] * 5}, AUTH, 422, "the limit is 4"),
        ("too many images", post, one(images=[ok_image] * 4), AUTH, 422, "4 images; the limit is 3"),
        ("huge body", post, one(title="x" * (2 * 1024 * 1024)), AUTH, 413, "body is over"),
        ("bomb image", post, one(images=[b64(png_header_bomb())]), AUTH, 422, "decompression bomb"),
        ("bomb under PIL's own limit", post, one(images=[b64(png_header_bomb(10_000, 10_000))]), AUTH, 422,
         "100,000,000 pixels, over the limit of 1,000,000"),
        ("image over the pixel limit", post, one(images=[b64(big_png(1100, 1000))]), AUTH, 422, "1,100,000 pixels, over the limit of 1,000,000"),
        ("non-image bytes", post, one(images=[b64(b"%PDF-1.4 not an image at all")]), AUTH, 422, "not an image"),
        ("truncated image", post, one(images=[b64(truncated)]), AUTH, 422, "products[0].images[0]"),
        ("invalid base64", post, one(images=["not*base64!"]), AUTH, 422, "not valid base64"),
        ("empty image string", post, one(images=[""]), AUTH, 422, "empty"),
        ("URL image", post, one(images=["https://example.com/dress.jpg"]), AUTH, 422, "not fetched by URL"),
        ("protocol-relative URL", post, one(images=["//example.com/a.png"]), AUTH, 422, "not fetched by URL"),
        ("file URL", post, one(images=["file:///etc/passwd"]), AUTH, 422, "not fetched by URL"),
        ("server path", post, one(images=["/etc/passwd"]), AUTH, 422, "file path"),
        ("relative path", post, one(images=["photos/dress.jpg"]), AUTH, 422, "file path"),
        ("data URI not an image", post, one(images=["data:text/html;base64,PGgxPg=="]), AUTH, 422, "image/*"),
        ("data URI not base64", post, one(images=["data:image/png,rawbytes"]), AUTH, 422, "not base64"),
        ("missing API key", post, one(), {}, 401, "needs an API key"),
        ("wrong API key", post, one(), {"X-API-Key": "nope"}, 401, "not valid"),
        ("wrong bearer token", post, one(), {"Authorization": "Bearer nope"}, 401, "not valid"),
        ("model info without key", "GET /v1/model", None, {}, 401, "needs an API key"),
        ("explain without key", "POST /v1/explain", one(), {}, 401, "needs an API key"),
        ("text/plain body", post, b"products", {**AUTH, "Content-Type": "text/plain"}, 415, "application/json"),
        ("GET on predict", "GET /v1/predict", None, AUTH, 405, "Method Not Allowed"),
        ("unknown route", "GET /v2/predict", None, AUTH, 404, "no such route"),
        ("similar without --index", "POST /v1/similar", one(), AUTH, 404, "no such route"),
        ("multipart unknown field", post, form_unknown[0], {**AUTH, **form_unknown[1]}, 422, "unknown form fields"),
        ("multipart text file", post, form_text_file[0], {**AUTH, **form_text_file[1]}, 422, "not an image"),
        ("multipart bad top_k", post, form_top_k[0], {**AUTH, **form_top_k[1]}, 422, "not a whole number"),
        ("multipart broken", post, b"--zz\r\ngarbage", {**AUTH, "Content-Type": "multipart/form-data; boundary=zz"}, 422, "form has no fields"),
    ]


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_request_gets_a_clear_4xx(strict: Server, case: Case) -> None:
    name, target, body, headers, status, text = case
    method, path = target.split(" ")
    reply = strict.request(method, path, body, headers)
    assert reply.status == status, (name, reply.status, reply.body[:300])
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["status"] == status and error["code"]
    assert text in error["message"], (name, error["message"])
    assert "Traceback" not in reply.body.decode(errors="replace")
    if status == 401:
        assert reply.headers.get("www-authenticate", "").startswith("Bearer")


def test_server_keeps_serving_after_bad_requests(strict: Server) -> None:
    for case in [*CASES[:5], next(c for c in CASES if c[0] == "missing API key")]:
        strict.request(case[1].split(" ")[0], case[1].split(" ")[1], case[2], case[3])
    assert strict.request("GET", "/healthz").status == 200
    good = strict.request("POST", "/v1/predict", one(title="red dress", images=[b64(photo())]), AUTH)
    assert good.status == 200, good.body
    bearer = strict.request("POST", "/v1/predict", one(title="dress"), {"Authorization": f"Bearer {KEY}"})
    assert bearer.status == 200
    metrics = strict.request("GET", "/metrics").body.decode()
    assert metric(metrics, "fashion_rejects_total", 'reason="bad_json"') >= 1
    assert metric(metrics, "fashion_rejects_total", 'reason="missing_api_key"') >= 1
    assert "fashion_request_latency_seconds_bucket" in metrics
    assert strict.request("GET", "/v1/model", headers=AUTH).json()["auth"] is True


def test_request_timeout_is_a_503_with_retry_after(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    s = start(bundle, tmp_path_factory, "--request-timeout", "0.001", "--batch-timeout-ms", "200")
    try:
        reply = s.request("POST", "/v1/predict", one(title="dress", images=[b64(photo())]))
        assert reply.status == 503 and reply.headers["retry-after"] == "1"
        assert "--request-timeout" in reply.message
        assert s.request("GET", "/healthz").status == 200
    finally:
        s.stop()



def test_runtime_onnxruntime_serves_the_export_and_reports_the_gate(
        bundle: Path, tmp_path_factory: pytest.TempPathFactory, tiny_registered: None) -> None:
    """``--runtime onnxruntime`` reaches the Predictor: the server runs the bundle's ONNX export,
    answers as a local onnxruntime Predictor does, and /v1/model shows the gate's recorded verdict."""
    import shutil

    pytest.importorskip("onnxruntime")
    from fashion import Predictor
    from fashion.cli import optimize as optimize_cli
    from fashion.predict.artifacts import update_bundle

    exported = tmp_path_factory.mktemp("onnx") / "bundle"
    shutil.copytree(bundle, exported)
    optimize_cli._export(exported, ["fp32"])
    from fashion.predict.gate import GateReport, PathScore

    scores = [PathScore(key, {"color": 1.0}, {"color": 1.0}, {"color": delta}, passed=delta == 0)
              for key, delta in (("onnxruntime:fp32", 0.0), ("torch:bf16", -5.0))]
    verdict = GateReport({"color": 1.0}, scores, max_loss=0.5, data=[], rows=6).verdict()
    update_bundle(exported, gate=verdict)  # a verdict as `fashion optimize` records it
    s = start(exported, tmp_path_factory, "--runtime", "onnxruntime")
    try:
        info = s.request("GET", "/v1/model").json()
        assert (info["runtime"], info["precision"]) == ("onnxruntime", "fp32")
        assert info["validated_precision"] == ["onnxruntime:fp32"]
        assert info["refused_precision"] == ["torch:bf16"]
        products = sample_products()
        reply = s.request("POST", "/v1/predict", {"products": as_json(products)})
        assert reply.status == 200, reply.body
        local = Predictor.from_pretrained(exported, runtime="onnxruntime")
        expected = [r.to_dict() for r in local.predict(products)]
        assert_close_predictions(reply.json()["predictions"], expected)
    finally:
        s.stop()
