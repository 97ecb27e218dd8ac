"""Requests of ``fashion serve``: parsing and validation before a product joins a batch.

:class:`RequestParser` reads a JSON or multipart body into products (each checked field by
field, images decoded and limited), :class:`Guard` is the ASGI middleware that caps the body
size and counts every request, and :class:`RequestProblem` / :func:`error_response` give every error
its JSON body ``{"error": {"status", "code", "message"}}``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from fashion.data.manifest import TEXT_FIELDS
from fashion.errors import DataError
from fashion.serve.config import ServeConfig
from fashion.serve.images import (
    RGB_BYTES_PER_PIXEL,
    ImageRejected,
    decode_cost,
    image_bytes,
    open_image,
)
from fashion.serve.metrics import Metrics
from fashion.serve.schema import MAX_DIGITS, RequestModels

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


@dataclass
class ParsedRequest:
    products: list[Any]  # fashion.Product with decoded RGB images
    top_k: int
    images: list[list[Any]]  # per product, its PIL images (for /v1/explain)


# ----------------------------------------------------------------------------- parsing


class _HugeNumber(ValueError):
    """A JSON number with more digits than any request value may have."""


_UNION_BRANCH = re.compile(r"\.(?:str|int|none|function-(?:after|before|wrap)\[.*|constrained-\w+)$")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _HugeNumber(f"a number with {digits:,} digits; whole numbers in a request have at "
                          f"most {MAX_DIGITS} digits")
    return int(text)


def _validation_message(errors: Sequence[Any]) -> str:
    """At most five problems of a request body as ``products[0].title: message``; the branches
    of a union (``id``: text or a whole number) are one problem of their field."""
    problems: dict[str, list[str]] = {}
    for error in errors:
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in error["loc"]).lstrip(".")
        loc = _UNION_BRANCH.sub("", loc)
        if error["type"] == "extra_forbidden":
            allowed = "id, title, description, brand, images" if "products" in loc else "products, top_k"
            message = f"unknown field; use {allowed}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        problems.setdefault(loc or "body", [])
        if message not in problems[loc or "body"]:
            problems[loc or "body"].append(message)
    parts = [f"{loc}: {' or '.join(messages)}" for loc, messages in list(problems.items())[:5]]
    more = len(problems) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _invalid(exc: ValidationError) -> RequestProblem:
    return RequestProblem(422, "invalid_request", _validation_message(exc.errors()))


class RequestParser:
    """Turns a request body into products with decoded images, within the configured limits.

    Every value is validated by the models of :class:`~fashion.serve.schema.RequestModels`
    (the ones the OpenAPI schema shows) before use; the images of a request are then sized from
    their headers and refused together (413) when decoding them would exceed
    ``max_request_pixels``, before any of them is decoded."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.models = RequestModels(config)

    def count(self, products: int, where: str = "products") -> None:
        if products == 0:
            raise RequestProblem(422, "invalid_request", f"{where}: send at least one product")
        if products > self.config.max_products:
            raise RequestProblem(422, "too_many_products",
                                 f"{where}: {products} products; the limit is {self.config.max_products} "
                                 "per request (--max-products). Split the request.")

    def count_images(self, index: int, images: int) -> None:
        if images > self.config.max_images:
            raise RequestProblem(422, "too_many_images",
                                 f"products[{index}]: {images} images; the limit is "
                                 f"{self.config.max_images} per product (--max-images)")

    def image_data(self, index: int, images: list[Any]) -> list[bytes]:
        """The bytes of a product's images (base64 text decoded; nothing decoded to pixels)."""
        self.count_images(index, len(images))
        out = []
        for k, raw in enumerate(images):
            try:
                out.append(raw if isinstance(raw, bytes) else image_bytes(raw, f"products[{index}].images[{k}]"))
            except ImageRejected as exc:
                raise RequestProblem(422, "bad_image", str(exc)) from None
        return out

    def check_budget(self, images: list[list[bytes]]) -> None:
        """Refuse (413) a request whose images would take more than ``max_request_pixels`` to
        decode, read from their headers; an image over ``max_image_pixels`` alone is left to
        the decoder's own 422."""
        budget, total, count = self.config.max_request_pixels, 0, 0
        for data in (d for product in images for d in product):
            cost = decode_cost(data)
            if cost is None or cost[0] > self.config.max_image_pixels:
                continue
            total += -(-cost[1] // RGB_BYTES_PER_PIXEL)  # RGB-equivalent pixels, rounded up
            count += 1
        if total > budget:
            raise RequestProblem(
                413, "too_many_pixels",
                f"the {count} images of this request decode to {total:,} pixels (RGB-equivalent: "
                "transparency and 16/32-bit samples count several times); the limit is "
                f"{budget:,} per request (--max-request-pixels). Send fewer or smaller images "
                "per request.")

    def product(self, index: int, fields: dict[str, Any], images: list[bytes]) -> tuple[Any, list[Any]]:
        from fashion.model.inputs import Product
        from fashion.predict.predictor import check_products

        decoded = []
        for k, data in enumerate(images):
            where = f"products[{index}].images[{k}]"
            try:
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

    def products(self, fields: list[dict[str, Any]], images: list[list[Any]], top_k: int | None) -> ParsedRequest:
        data = [self.image_data(i, raw) for i, raw in enumerate(images)]
        self.check_budget(data)
        products, decoded = [], []
        for i, (values, product_images) in enumerate(zip(fields, data, strict=True)):
            product, pixels = self.product(i, values, product_images)
            products.append(product)
            decoded.append(pixels)
        return ParsedRequest(products, self.config.top_k if top_k is None else top_k, decoded)

    def from_json(self, body: bytes) -> ParsedRequest:
        if not body.strip():
            raise RequestProblem(400, "empty_body",
                                 'the request body is empty; send JSON {"products": [...]} or a multipart form')
        try:
            data = json.loads(body, parse_int=_bounded_int)
        except _HugeNumber as exc:
            raise RequestProblem(422, "invalid_request", f"body: {exc}") from None
        except UnicodeDecodeError:
            raise RequestProblem(400, "bad_json", "the body is not UTF-8 text; send JSON in UTF-8") from None
        except json.JSONDecodeError as exc:
            raise RequestProblem(400, "bad_json",
                                 f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except RecursionError:
            raise RequestProblem(400, "bad_json", "the JSON is nested too deeply") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise RequestProblem(400, "bad_json", f"the body is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("products"), list):
            self.count(len(data["products"]))  # before validating a huge list
            for i, item in enumerate(data["products"]):
                if isinstance(item, dict) and isinstance(item.get("images"), list):
                    self.count_images(i, len(item["images"]))
        try:
            request = self.models.request.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc) from None
        fields = [item.model_dump(exclude={"images"}) for item in request.products]
        return self.products(fields, [list(item.images) for item in request.products], request.top_k)

    async def from_form(self, request: Request) -> ParsedRequest:
        from starlette.datastructures import UploadFile

        try:
            form = await request.form(max_files=self.config.max_images + 1, max_fields=16,
                                      max_part_size=self.config.max_body_bytes)
        except StarletteHTTPException as exc:
            if "Too many files" in str(exc.detail):
                raise RequestProblem(422, "too_many_images",
                                     f"products[0]: over {self.config.max_images} image files; the limit "
                                     f"is {self.config.max_images} per product (--max-images)") from None
            raise RequestProblem(400, "bad_multipart", f"the multipart form cannot be read: {exc.detail}") from None
        except (ValueError, UnicodeError, LookupError, AssertionError) as exc:  # python-multipart parse errors
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
            values: dict[str, Any] = {}
            for name in ("id", *TEXT_FIELDS, "top_k"):
                found = form.getlist(name)
                if len(found) > 1:
                    raise RequestProblem(422, "invalid_request", f"{name}: sent {len(found)} times; send it once")
                if found and isinstance(found[0], UploadFile):
                    raise RequestProblem(422, "invalid_request", f"{name}: send text, not a file")
                if found:
                    values[name] = found[0]
            try:
                fields = self.models.form.model_validate(values)
            except ValidationError as exc:
                raise _invalid(exc) from None
            images: list[Any] = []
            for part in [*form.getlist("images"), *form.getlist("image")]:
                images.append(await part.read() if isinstance(part, UploadFile) else part)
            return await run_in_threadpool(
                self.products, [fields.model_dump(exclude={"top_k"})], [images], fields.top_k)
        finally:
            await form.close()

    async def parse(self, request: Request) -> ParsedRequest:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/json", "", "multipart/form-data"):
            raise RequestProblem(415, "unsupported_media_type",
                                 f"content type {kind!r} is not accepted; send application/json or "
                                 "multipart/form-data")
        try:
            if kind == "multipart/form-data":
                return await self.from_form(request)
            body = await request.body()
        except ClientDisconnect:
            raise RequestProblem(400, "client_disconnected",
                                 "the connection closed before the whole body arrived") from None
        return await run_in_threadpool(self.from_json, body)


# ----------------------------------------------------------------------------- middleware


class Guard:
    """Outermost ASGI layer: the body size limit and the request/latency metrics."""

    def __init__(self, app: Any, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._quiet_startup_failure(send))
            return
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

    @staticmethod
    def _quiet_startup_failure(send: Send) -> Send:
        """A failed start-up is reported by the app in one line: drop the traceback that
        Starlette attaches for uvicorn to log."""
        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        return sending

    def too_large(self) -> RequestProblem:
        return RequestProblem(413, "body_too_large",
                       f"the request body is over {self.max_body_bytes:,} bytes (--max-body-mb); "
                       "send fewer or smaller images per request")


def error_response(problem: RequestProblem) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": problem.status, "code": problem.code, "message": problem.message}},
        status_code=problem.status, headers=problem.headers,
    )
