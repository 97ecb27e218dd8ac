"""Requests of ``fashion serve``: parsing and validation before a product joins a batch.

:class:`RequestParser` reads a JSON or multipart body into products (each checked field by
field, images decoded and limited), :class:`Guard` is the ASGI middleware that caps the body
size and counts every request, and :class:`RequestProblem` / :func:`error_response` give every error
its JSON body ``{"error": {"status", "code", "message"}}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fashion._util.config import StrictModel
from fashion.data.manifest import TEXT_FIELDS
from fashion.errors import DataError
from fashion.serve.config import ServeConfig
from fashion.serve.images import ImageRejected, image_bytes, open_image
from fashion.serve.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROUTES = ("/", "/healthz", "/readyz", "/metrics", "/v1/model", "/v1/predict", "/v1/explain",
          "/docs", "/openapi.json")


class RequestProblem(Exception):
    """An HTTP error answered as JSON: status, a short code, and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class ProductIn(StrictModel):
    """One product; every field may be missing (a text-only or image-only product works)."""

    model_config = ConfigDict(strict=True)

    id: str | int | None = None
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    images: list[str] = Field(
        default_factory=list,
        description="Base64-encoded image bytes or data URIs (data:image/jpeg;base64,...). "
        "URLs and server-side paths are refused.",
    )


class PredictRequest(StrictModel):
    model_config = ConfigDict(strict=True)

    products: list[ProductIn]
    top_k: int | None = Field(None, ge=1, description="Labels ranked per attribute (default 3).")


@dataclass
class ParsedRequest:
    products: list[Any]  # fashion.Product with decoded RGB images
    top_k: int
    images: list[list[Any]]  # per product, its PIL images (for /v1/explain)


# ----------------------------------------------------------------------------- parsing


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (OpenAPI's requestBody has no $defs)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(dict(defs[node["$ref"].rsplit("/", 1)[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


def _validation_message(errors: Sequence[Any]) -> str:
    """At most five problems of a request body as ``products[0].title: message``."""
    parts = []
    for error in errors[:5]:
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in error["loc"]).lstrip(".")
        if error["type"] == "extra_forbidden":
            allowed = "id, title, description, brand, images" if "products" in loc else "products, top_k"
            parts.append(f"{loc}: unknown field; use {allowed}")
        else:
            parts.append(f"{loc or 'body'}: {error['msg']}")
    more = len(errors) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class RequestParser:
    """Turns a request body into products with decoded images, within the configured limits."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config

    def top_k(self, value: int | None) -> int:
        if value is None:
            return self.config.top_k
        if value > self.config.max_top_k:
            raise RequestProblem(422, "invalid_request",
                          f"top_k: {value} is above the limit {self.config.max_top_k}")
        return value

    def count(self, products: int, where: str = "products") -> None:
        if products == 0:
            raise RequestProblem(422, "invalid_request", f"{where}: send at least one product")
        if products > self.config.max_products:
            raise RequestProblem(413, "too_many_products",
                          f"{where}: {products} products; the limit is {self.config.max_products} "
                          "per request (--max-products). Split the request.")

    def product(self, index: int, fields: dict[str, Any], images: list[Any]) -> tuple[Any, list[Any]]:
        from fashion.model.inputs import Product
        from fashion.predict.predictor import check_products

        if len(images) > self.config.max_images:
            raise RequestProblem(413, "too_many_images",
                          f"products[{index}]: {len(images)} images; the limit is "
                          f"{self.config.max_images} per product (--max-images)")
        decoded = []
        for k, raw in enumerate(images):
            where = f"products[{index}].images[{k}]"
            try:
                data = raw if isinstance(raw, bytes) else image_bytes(raw, where)
                decoded.append(open_image(data, max_pixels=self.config.max_image_pixels, where=where))
            except ImageRejected as exc:
                raise RequestProblem(422, "bad_image", str(exc)) from None
        product_id = fields.get("id")
        product = Product(
            id=None if product_id is None else str(product_id), images=list(decoded),
            **{name: fields.get(name) for name in TEXT_FIELDS},
        )
        try:  # the Predictor's own rules (an empty product is refused), before it joins a batch
            check_products([product])
        except DataError as exc:
            raise RequestProblem(422, "bad_product", f"products[{index}]: {exc}") from None
        return product, decoded

    def from_json(self, body: bytes) -> ParsedRequest:
        if not body.strip():
            raise RequestProblem(400, "empty_body",
                          'the request body is empty; send JSON {"products": [...]} or a multipart form')
        try:
            data = json.loads(body)
        except UnicodeDecodeError:
            raise RequestProblem(400, "bad_json", "the body is not UTF-8 text; send JSON in UTF-8") from None
        except json.JSONDecodeError as exc:
            raise RequestProblem(400, "bad_json",
                          f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except RecursionError:
            raise RequestProblem(400, "bad_json", "the JSON is nested too deeply") from None
        if isinstance(data, dict) and isinstance(data.get("products"), list):
            self.count(len(data["products"]))  # before validating a huge list
        try:
            request = PredictRequest.model_validate(data)
        except ValidationError as exc:
            raise RequestProblem(422, "invalid_request", _validation_message(exc.errors())) from None
        self.count(len(request.products))
        top_k = self.top_k(request.top_k)
        products, images = [], []
        for i, item in enumerate(request.products):
            product, decoded = self.product(i, item.model_dump(exclude={"images"}), item.images)
            products.append(product)
            images.append(decoded)
        return ParsedRequest(products, top_k, images)

    async def from_form(self, request: Request) -> ParsedRequest:
        from starlette.datastructures import UploadFile

        try:
            form = await request.form(max_files=self.config.max_images, max_fields=16,
                                      max_part_size=self.config.max_body_bytes)
        except StarletteHTTPException as exc:
            raise RequestProblem(400, "bad_multipart", f"the multipart form cannot be read: {exc.detail}") from None
        except ValueError as exc:  # python-multipart parse errors
            raise RequestProblem(400, "bad_multipart", f"the multipart form cannot be read: {exc}") from None
        try:
            if not form:
                raise RequestProblem(422, "invalid_request",
                              "the multipart form has no fields (empty or unreadable); send "
                              "title, description, brand, id and image files named images")
            allowed = {"id", *TEXT_FIELDS, "images", "image", "top_k"}
            unknown = sorted(set(form.keys()) - allowed)
            if unknown:
                raise RequestProblem(422, "invalid_request",
                              f"unknown form fields {unknown}; use id, title, description, brand, "
                              "top_k and images (files)")
            fields: dict[str, Any] = {}
            for name in ("id", *TEXT_FIELDS):
                value = form.get(name)
                if isinstance(value, UploadFile):
                    raise RequestProblem(422, "invalid_request", f"{name}: send text, not a file")
                fields[name] = value
            raw_top_k = form.get("top_k")
            top_k = None
            if raw_top_k is not None:
                if isinstance(raw_top_k, UploadFile) or not str(raw_top_k).strip().isdigit():
                    raise RequestProblem(422, "invalid_request", f"top_k: {raw_top_k!r} is not a whole number")
                top_k = int(str(raw_top_k))
                if top_k < 1:
                    raise RequestProblem(422, "invalid_request", "top_k: must be at least 1")
            images: list[Any] = []
            for part in [*form.getlist("images"), *form.getlist("image")]:
                images.append(await part.read() if isinstance(part, UploadFile) else part)
            product, decoded = await run_in_threadpool(self.product, 0, fields, images)
            return ParsedRequest([product], self.top_k(top_k), [decoded])
        finally:
            await form.close()

    async def parse(self, request: Request) -> ParsedRequest:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            return await self.from_form(request)
        if kind not in ("application/json", ""):
            raise RequestProblem(415, "unsupported_media_type",
                          f"content type {kind!r} is not accepted; send application/json or "
                          "multipart/form-data")
        body = await request.body()
        return await run_in_threadpool(self.from_json, body)


# ----------------------------------------------------------------------------- middleware


class Guard:
    """Outermost ASGI layer: the body size limit and the request/latency metrics."""

    def __init__(self, app: Any, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                problem = self.too_large() if length.isdigit() else \
                    RequestProblem(400, "bad_request", "the Content-Length header is not a number")
                self.metrics.rejects.labels(problem.code).inc()
                await error_response(problem)(scope, receive, sending)
                return
            received = 0

            async def receiving() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        raise self.too_large()
                return message

            await self.app(scope, receiving, sending)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def too_large(self) -> RequestProblem:
        return RequestProblem(413, "body_too_large",
                       f"the request body is over {self.max_body_bytes:,} bytes (--max-body-mb); "
                       "send fewer or smaller images per request")


def error_response(problem: RequestProblem) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": problem.status, "code": problem.code, "message": problem.message}},
        status_code=problem.status, headers=problem.headers,
    )


def _request_body_doc() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline_refs(PredictRequest.model_json_schema())},
                "multipart/form-data": {"schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"},
                        "description": {"type": "string"}, "brand": {"type": "string"},
                        "top_k": {"type": "integer"},
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }},
            },
        }
    }
