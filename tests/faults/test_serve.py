"""Bad requests against a real ``fashion serve`` over HTTP on loopback: every kind is answered
with a 4xx whose message names the problem (or served, when it is valid), never a 500 or a
dropped connection; connections that do not finish their request are closed with 408; the
images of one request are refused together (413) when decoding them would exceed the pixel
budget; and the worst request the default limits allow stays under the memory bound that
docs/serve.md states, measured on the server's /proc."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'fashion-sdk[serve]'")

from tests.faults import ledger  # noqa: E402
from tests.serve.conftest import SERVE_SPEC, Server, photo, start  # noqa: E402

KEY = "fault-suite-key"
AUTH = {"X-API-Key": KEY}
#: RSS a request at the default limits may add to the server (docs/serve.md, "Memory").
MEMORY_BOUND_MB = 1024


@pytest.fixture(scope="module")
def bundle(plugin: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fashion.registry import save_bundle
    from tests.tiny_model import make_model

    return save_bundle(make_model(0, spec=SERVE_SPEC), tmp_path_factory.mktemp("serve-faults") / "bundle")


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Default pixel limits (the memory kinds measure them); small counts and a short read deadline."""
    s = start(bundle, tmp_path_factory, "--api-key-env", "FASHION_FAULT_KEY", "--max-products", "4",
              "--max-images", "3", "--header-timeout", "1", "--batch-timeout-ms", "0",
              env={"FASHION_FAULT_KEY": KEY})
    try:
        yield s
    finally:
        s.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "f4ult") -> tuple[bytes, dict[str, str]]:
    out = b""
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}


def classify(server: Server, kind: str, body: Any, *, status: int, says: str,
             headers: dict[str, str] | None = None, method: str = "POST", path: str = "/v1/predict") -> None:
    """Send one request, record what happened and assert it: ``status`` 2xx is "predicted",
    4xx is "error" (and the message must contain ``says``); a 5xx or a dropped connection is
    a traceback."""
    expected = "predicted" if status < 300 else "error"
    try:
        reply = server.request(method, path, body, AUTH if headers is None else headers)
    except OSError as exc:  # reset, closed without an answer
        ledger.record("serve", kind, expected, "traceback")
        raise AssertionError(f"{kind}: the connection dropped ({exc})") from None
    if reply.status >= 500:
        observed = "traceback"
    elif reply.status >= 400:
        try:
            message = json.loads(reply.body)["error"]["message"]
        except ValueError:  # the HTTP layer's own 400 for a request it cannot parse is plain text
            message = reply.body.decode(errors="replace")
        observed = "error" if says.lower() in message.lower() else "silent-wrong"
    else:
        observed = "predicted" if "predictions" in json.loads(reply.body) else "silent-wrong"
    if observed in ("error", "predicted") and reply.status != status:
        observed = "silent-wrong"
    ledger.record("serve", kind, expected, observed)
    assert observed == expected and reply.status == status, (kind, reply.status, reply.body[:400])


def one(**fields: Any) -> dict[str, Any]:
    return {"products": [{"id": "x", "title": "red dress", **fields}]}


HUGE = "9" * 5000
JSON_KINDS: dict[str, tuple[bytes | dict[str, Any] | list[Any], int, str]] = {
    "5,000-digit integer in top_k": (b'{"products": [{"title": "dress"}], "top_k": ' + HUGE.encode() + b"}", 422, "5,000 digits"),
    "5,000-digit integer in id": (b'{"products": [{"title": "dress", "id": ' + HUGE.encode() + b"}]}", 422, "5,000 digits"),
    "id beyond 2**53": ({"products": [{"title": "dress", "id": 2**60}]}, 422, "products[0].id"),
    "top_k negative": ({**one(), "top_k": -3}, 422, "top_k"),
    "top_k zero": ({**one(), "top_k": 0}, 422, "top_k"),
    "top_k huge": ({**one(), "top_k": 10**18}, 422, "less than or equal to 20"),
    "top_k 30 digits": ({**one(), "top_k": 10**29}, 422, "30 digits"),
    "top_k a float": ({**one(), "top_k": 2.5}, 422, "top_k"),
    "top_k true": ({**one(), "top_k": True}, 422, "top_k"),
    "top_k as text": ({**one(), "top_k": "3"}, 422, "top_k"),
    "top_k NaN": (b'{"products": [{"title": "dress"}], "top_k": NaN}', 422, "top_k"),
    "top_k 1e999": (b'{"products": [{"title": "dress"}], "top_k": 1e999}', 422, "top_k"),
    "empty products": ({"products": []}, 422, "at least one product"),
    "products null": ({"products": None}, 422, "products"),
    "product is a list": ({"products": [["title", "dress"]]}, 422, "products[0]"),
    "title is a number": (one(title=7), 422, "products[0].title"),
    "id is a list": (one(id=[1]), 422, "products[0].id"),
    "lone surrogate in the title": (b'{"products": [{"title": "dress \\ud800"}]}', 422, "surrogate"),
    "lone surrogate in the id": (b'{"products": [{"title": "dress", "id": "\\udfff"}]}', 422, "surrogate"),
    "body is a JSON string": (b'"products"', 422, "valid dictionary"),
    "body is null": (b"null", 422, "valid dictionary"),
    "not JSON": (b"{products: 1", 400, "not valid JSON"),
    "not UTF-8": (b'{"products": [{"title": "\xff"}]}', 400, "UTF-8"),
    "unknown field": ({"products": [{"title": "dress", "colour": "red"}]}, 422, "unknown field"),
    "no image and no text": ({"products": [{"id": "x"}]}, 422, "no image and no text"),
    "too many products": ({"products": [{"title": "dress"}] * 5}, 422, "the limit is 4"),
    "too many images": (one(images=["aGVsbG8="] * 4), 422, "the limit is 3"),
    "image not base64": (one(images=["***"]), 422, "not valid base64"),
    "image random bytes": (one(images=[b64(b"\x00\x01\x02" * 100)]), 422, "products[0].images[0]"),
    "image truncated PNG": (one(images=[b64(photo("red", (200, 200))[:150])]), 422, "products[0].images[0]"),
    "image corrupt JPEG body": (one(images=[b64(photo("red", (200, 200), "JPEG")[:400] + b"\x00" * 300)]), 422, "products[0].images[0]"),
    "image URL": (one(images=["http://127.0.0.1:1/x.png"]), 422, "not fetched by URL"),
    "valid text-only product": ({"products": [{"id": 7, "title": "red dress"}], "top_k": 2}, 200, ""),
    "valid product with a photo": (one(images=[b64(photo())]), 200, ""),
}


@pytest.mark.parametrize("kind", list(JSON_KINDS))
def test_json_request(kind: str, server: Server) -> None:
    body, status, says = JSON_KINDS[kind]
    headers = {**AUTH, "Content-Type": "application/json"}
    classify(server, kind, body, status=status, says=says, headers=headers)


FORM_KINDS: dict[str, tuple[list[tuple[str, str | None, bytes]], int, str]] = {
    "multipart top_k '²'": ([("title", None, b"dress"), ("top_k", None, "²".encode())], 422, "not a whole number"),
    "multipart top_k of 5,000 digits": ([("title", None, b"dress"), ("top_k", None, HUGE.encode())], 422, "not a whole number"),
    "multipart top_k Arabic-Indic digit": ([("title", None, b"dress"), ("top_k", None, "٣".encode())], 422, "not a whole number"),
    "multipart top_k zero": ([("title", None, b"dress"), ("top_k", None, b"0")], 422, "top_k"),
    "multipart top_k huge": ([("title", None, b"dress"), ("top_k", None, b"999999")], 422, "top_k"),
    "multipart title twice": ([("title", None, b"dress"), ("title", None, b"shirt")], 422, "send it once"),
    "multipart title as a file": ([("title", "t.txt", b"dress")], 422, "not a file"),
    "multipart non-UTF-8 title": ([("title", None, b"caf\xe9")], 422, "products[0]"),
    "multipart too many files": ([("images", f"{k}.png", photo()) for k in range(5)], 422, "the limit is 3"),
    "multipart image not an image": ([("images", "a.png", b"not an image at all")], 422, "not an image"),
    "multipart valid": ([("title", None, b"red dress"), ("top_k", None, b"2"), ("images", "a.png", photo())], 200, ""),
}


@pytest.mark.parametrize("kind", list(FORM_KINDS))
def test_multipart_request(kind: str, server: Server) -> None:
    fields, status, says = FORM_KINDS[kind]
    body, headers = multipart(fields)
    if kind == "multipart non-UTF-8 title":  # the title decodes with replacement characters: served
        status, says = 200, ""
    classify(server, kind, body, status=status, says=says, headers=headers)


def test_broken_multipart_and_auth(server: Server) -> None:
    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=zz"}
    classify(server, "multipart with no closing boundary", b"--zz\r\ngarbage", status=422,
             says="form has no fields", headers=headers)
    classify(server, "multipart without a boundary", b"--zz--", status=400, says="multipart",
             headers={**AUTH, "Content-Type": "multipart/form-data"})
    classify(server, "missing API key", one(), status=401, says="needs an API key", headers={})
    classify(server, "wrong API key", one(), status=401, says="not valid", headers={"X-API-Key": "nope"})
    classify(server, "empty bearer token", one(), status=401, says="needs an API key",
             headers={"Authorization": "Bearer "})
    classify(server, "Content-Length not a number", b"{}", status=400, says="Invalid HTTP request",
             headers={**AUTH, "Content-Type": "application/json", "Content-Length": "x1"})


def _budget_images() -> dict[str, tuple[list[bytes], int]]:
    """Requests whose images each pass --max-image-pixels but together exceed the budget."""
    gray = png(Image.new("L", (6400, 6100), 200))  # 39 Mpx: the shape of the twelve-photo request
    deep = png(Image.fromarray(__import__("numpy").full((4000, 4000), 30000, dtype="uint16")))
    rgba = png(Image.new("RGBA", (5200, 5100), (255, 0, 0, 128)))
    return {"twelve 39-Mpx images": ([gray] * 12, 12), "one 16-bit 16-Mpx image": ([deep], 1),
            "one 26-Mpx image with transparency": ([rgba], 1)}


def test_pixel_budget_refuses_before_decoding(server: Server) -> None:
    for kind, (images, count) in _budget_images().items():
        products = [{"id": f"p{i}", "title": "dress", "images": [b64(d) for d in images[i * 3:i * 3 + 3]]}
                    for i in range(max(1, count // 3))]
        before = _rss_mb(server)
        classify(server, f"pixel budget: {kind}", {"products": products}, status=413,
                 says="--max-request-pixels")
        assert _rss_mb(server) - before < 200, f"{kind}: the refused images were decoded"


def _status(server: Server, name: str) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])  # kB
    raise AssertionError(f"{name} not in /proc status")


def _rss_mb(server: Server) -> float:
    return _status(server, "VmRSS") / 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads the server's RSS from /proc (Linux)")
def test_worst_request_at_the_default_limits_stays_under_the_memory_bound(server: Server) -> None:
    """Three RGB photos of 40 Mpx (--max-image-pixels) fill the default --max-request-pixels
    (128 M): the request is served, and the server's peak RSS rises by less than the bound."""
    photo_40m = png(Image.new("RGB", (6500, 6150), "white"))
    body = {"products": [{"id": "big", "title": "dress", "images": [b64(photo_40m)] * 3}]}
    for path in ("/v1/predict", "/v1/explain"):
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # the peak starts again from now
        before = _status(server, "VmHWM") / 1024
        classify(server, f"worst request at the default limits ({path})", body, status=200, says="",
                 path=path)
        peak = _status(server, "VmHWM") / 1024
        print(f"{path}: peak RSS {before:.0f} -> {peak:.0f} MB (+{peak - before:.0f} MB)")
        assert peak - before < MEMORY_BOUND_MB, (path, before, peak)


def _raw(server: Server, data: bytes, wait: float = 30.0) -> bytes:
    """Send raw bytes, then read until the server closes the connection (a test timeout guards)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as conn:
        if data:
            conn.sendall(data)
        received = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return received
            received += chunk


@pytest.mark.parametrize(("kind", "data"), [
    ("connection that sends nothing", b""),
    ("headers that never finish", b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"),
    ("body that stalls", b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
     + b"\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"products\": ["),
])
def test_slow_client_is_closed_with_408(kind: str, data: bytes, server: Server) -> None:
    try:
        received = _raw(server, data)
    except OSError:  # still open when the test's own guard ran out
        ledger.record("serve", kind, "error", "traceback")
        raise
    observed = "error" if received.startswith(b"HTTP/1.1 408") else "silent-wrong"
    ledger.record("serve", kind, "error", observed)
    assert observed == "error", received[:300]
    assert server.request("GET", "/healthz").status == 200


def test_server_still_serves(server: Server) -> None:
    classify(server, "a valid request after all the bad ones", one(images=[b64(photo("blue"))]),
             status=200, says="")
