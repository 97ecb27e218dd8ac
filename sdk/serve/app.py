"""The HTTP app of ``fashion serve`` (FastAPI): routes, limits, API key, errors, metrics.

Routes: ``POST /v1/predict``, ``POST /v1/explain``, ``GET /v1/model`` (API key when one is
set), ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, the page at ``GET /`` and the
OpenAPI schema at ``/docs``. Every error is a JSON body ``{"error": {"status", "code",
"message"}}``; a request the server cannot use is a 4xx, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._config import StrictModel
from ..errors import DataError, FashionError
from .batching import Batcher, QueueFull
from .config import CONFIG_ENV, ServeConfig
from .explain import cropper_views
from .images import ImageRejected, image_bytes, open_image
from .metrics import Metrics

log = logging.getLogger("fashion.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROUTES = ("/", "/healthz", "/readyz", "/metrics", "/v1/model", "/v1/predict", "/v1/explain",
          "/docs", "/openapi.json")
TEXT_FIELDS = ("title", "description", "brand")


class Problem(Exception):
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
            raise Problem(422, "invalid_request",
                          f"top_k: {value} is above the limit {self.config.max_top_k}")
        return value

    def count(self, products: int, where: str = "products") -> None:
        if products == 0:
            raise Problem(422, "invalid_request", f"{where}: send at least one product")
        if products > self.config.max_products:
            raise Problem(413, "too_many_products",
                          f"{where}: {products} products; the limit is {self.config.max_products} "
                          "per request (--max-products). Split the request.")

    def product(self, index: int, fields: dict[str, Any], images: list[Any]) -> tuple[Any, list[Any]]:
        from fashion import Product
        from fashion.predictor import check_products

        if len(images) > self.config.max_images:
            raise Problem(413, "too_many_images",
                          f"products[{index}]: {len(images)} images; the limit is "
                          f"{self.config.max_images} per product (--max-images)")
        decoded = []
        for k, raw in enumerate(images):
            where = f"products[{index}].images[{k}]"
            try:
                data = raw if isinstance(raw, bytes) else image_bytes(raw, where)
                decoded.append(open_image(data, max_pixels=self.config.max_image_pixels, where=where))
            except ImageRejected as exc:
                raise Problem(422, "bad_image", str(exc)) from None
        product_id = fields.get("id")
        product = Product(
            id=None if product_id is None else str(product_id), images=list(decoded),
            **{name: fields.get(name) for name in TEXT_FIELDS},
        )
        try:  # the Predictor's own rules (an empty product is refused), before it joins a batch
            check_products([product])
        except DataError as exc:
            raise Problem(422, "bad_product", f"products[{index}]: {exc}") from None
        return product, decoded

    def from_json(self, body: bytes) -> ParsedRequest:
        if not body.strip():
            raise Problem(400, "empty_body",
                          'the request body is empty; send JSON {"products": [...]} or a multipart form')
        try:
            data = json.loads(body)
        except UnicodeDecodeError:
            raise Problem(400, "bad_json", "the body is not UTF-8 text; send JSON in UTF-8") from None
        except json.JSONDecodeError as exc:
            raise Problem(400, "bad_json",
                          f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except RecursionError:
            raise Problem(400, "bad_json", "the JSON is nested too deeply") from None
        if isinstance(data, dict) and isinstance(data.get("products"), list):
            self.count(len(data["products"]))  # before validating a huge list
        try:
            request = PredictRequest.model_validate(data)
        except ValidationError as exc:
            raise Problem(422, "invalid_request", _validation_message(exc.errors())) from None
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
            raise Problem(400, "bad_multipart", f"the multipart form cannot be read: {exc.detail}") from None
        except ValueError as exc:  # python-multipart parse errors
            raise Problem(400, "bad_multipart", f"the multipart form cannot be read: {exc}") from None
        try:
            if not form:
                raise Problem(422, "invalid_request",
                              "the multipart form has no fields (empty or unreadable); send "
                              "title, description, brand, id and image files named images")
            allowed = {"id", *TEXT_FIELDS, "images", "image", "top_k"}
            unknown = sorted(set(form.keys()) - allowed)
            if unknown:
                raise Problem(422, "invalid_request",
                              f"unknown form fields {unknown}; use id, title, description, brand, "
                              "top_k and images (files)")
            fields: dict[str, Any] = {}
            for name in ("id", *TEXT_FIELDS):
                value = form.get(name)
                if isinstance(value, UploadFile):
                    raise Problem(422, "invalid_request", f"{name}: send text, not a file")
                fields[name] = value
            raw_top_k = form.get("top_k")
            top_k = None
            if raw_top_k is not None:
                if isinstance(raw_top_k, UploadFile) or not str(raw_top_k).strip().isdigit():
                    raise Problem(422, "invalid_request", f"top_k: {raw_top_k!r} is not a whole number")
                top_k = int(str(raw_top_k))
                if top_k < 1:
                    raise Problem(422, "invalid_request", "top_k: must be at least 1")
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
            raise Problem(415, "unsupported_media_type",
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
                    Problem(400, "bad_request", "the Content-Length header is not a number")
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

    def too_large(self) -> Problem:
        return Problem(413, "body_too_large",
                       f"the request body is over {self.max_body_bytes:,} bytes (--max-body-mb); "
                       "send fewer or smaller images per request")


def error_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": problem.status, "code": problem.code, "message": problem.message}},
        status_code=problem.status, headers=problem.headers,
    )


# ----------------------------------------------------------------------------- the app


class ServeState:
    """What the routes share: settings, the predictor, the batcher and the metrics."""

    def __init__(self, config: ServeConfig, predictor: Any | None) -> None:
        self.config = config
        self.predictor = predictor
        self.metrics = Metrics()
        self.parser = RequestParser(config)
        self.api_key = config.api_key()
        self.batcher: Batcher | None = None
        self.ready = False

    def predict(self, products: list[Any], top_k: int) -> list[Any]:
        return self.predictor.predict(products, batch_size=max(1, len(products)), top_k=top_k)  # type: ignore[union-attr]

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        sent = request.headers.get("x-api-key")
        if sent is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            sent = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        headers = {"WWW-Authenticate": 'Bearer realm="fashion"'}
        if sent is None:
            raise Problem(401, "missing_api_key",
                          "this server needs an API key: send it in the X-API-Key header "
                          "(or Authorization: Bearer KEY)", headers)
        if not hmac.compare_digest(sent.encode(), self.api_key.encode()):
            raise Problem(401, "invalid_api_key", "the API key is not valid", headers)

    async def run(self, products: list[Any], top_k: int) -> list[dict[str, Any]]:
        if self.batcher is None or not self.ready:
            raise Problem(503, "not_ready", "the model is not loaded yet; retry shortly",
                          {"Retry-After": str(self.config.retry_after_s)})
        self.metrics.queue_depth.set(self.batcher.depth)
        try:
            results = await self.batcher.submit(products, top_k)
        except QueueFull as exc:
            raise Problem(503, "overloaded",
                          f"the server is busy ({exc}); retry after {self.config.retry_after_s} s",
                          {"Retry-After": str(self.config.retry_after_s)}) from None
        except FashionError as exc:
            raise Problem(422, "prediction_failed", str(exc)) from None
        out = []
        for result in results:
            record = result.to_dict()
            for prediction in record["attributes"].values():
                prediction["top_k"] = prediction["top_k"][:top_k]
            out.append(record)
        return out

    def describe_model(self) -> dict[str, Any]:
        predictor, config = self.predictor, self.config
        bundle = getattr(predictor, "bundle", None)
        out: dict[str, Any] = {
            # a URI as given; a folder by its name (the server's paths are not the client's business)
            "model": config.model if "://" in config.model else Path(config.model).name,
            "revision": config.revision or (config.model.rsplit("@", 1)[1] if "@" in config.model else None),
            "device": str(predictor.model.device),  # type: ignore[union-attr]
            # what runs (``--precision auto`` resolved), and what was asked
            "precision": getattr(predictor, "precision_used", config.precision),
            "precision_asked": config.precision,
            "runtime": getattr(predictor, "runtime", config.runtime),
        }
        if bundle is not None:
            from fashion.optimize.artifacts import gate_verdict

            index = bundle.index
            digest = hashlib.sha256(index.model_dump_json().encode()).hexdigest()[:16]
            out.update({
                "uri": bundle.uri,
                "content_hash": digest,
                "created": index.created,
                "sdk_version": index.sdk_version,
                "attributes": {a: e.model_dump() for a, e in index.attributes.items()},
                "metrics": index.metrics,
            })
            # the accuracy gate's verdict (`fashion optimize`), as runtime:precision paths
            out["validated_precision"], out["refused_precision"] = gate_verdict(index)
        else:
            spec = predictor.model.spec  # type: ignore[union-attr]
            out["attributes"] = {a: {"labels": list(s.labels)} for a, s in spec.attributes.items()}
            out["metrics"] = {}
            out["validated_precision"], out["refused_precision"] = [], []
        out["views"] = list(predictor.model.croppers)  # type: ignore[union-attr]
        out["limits"] = {
            "max_products": config.max_products, "max_images": config.max_images,
            "max_body_bytes": config.max_body_bytes, "max_image_pixels": config.max_image_pixels,
            "max_batch_size": config.max_batch_size, "batch_timeout_ms": config.batch_timeout_ms,
            "request_timeout_s": config.request_timeout_s, "max_top_k": config.max_top_k,
        }
        out["auth"] = self.api_key is not None
        return out


def load_predictor(config: ServeConfig) -> Any:
    from fashion.predictor import Predictor

    return Predictor.from_pretrained(config.model, device=config.device or "auto",
                                     revision=config.revision, precision=config.precision,  # type: ignore[arg-type]
                                     runtime=config.runtime)  # type: ignore[arg-type]


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


def create_app(config: ServeConfig, predictor: Any | None = None) -> Any:
    """The ASGI app: FastAPI routes inside the :class:`Guard` (body limit, metrics).

    ``predictor`` (a loaded :class:`fashion.Predictor`) is loaded from ``config.model`` at
    start-up when not given.
    """
    state = ServeState(config, predictor)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if state.predictor is None:
            state.predictor = await run_in_threadpool(load_predictor, config)
        await run_in_threadpool(state.predict, [{"title": "warm-up"}], 1)  # first request pays no setup
        state.batcher = Batcher(
            state.predict, max_batch_size=config.max_batch_size,
            timeout_s=config.batch_timeout_ms / 1000.0, max_queue=config.max_queue,
            on_batch=state.metrics.observe_batch,
        )
        state.batcher.start()
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await state.batcher.stop()

    app = FastAPI(
        title="fashion serve",
        description="Product attribute predictions with dynamic batching. See docs/serve.md.",
        version="1",
        lifespan=lifespan,
    )
    app.state.fashion = state

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        state.metrics.rejects.labels(exc.code).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = _validation_message(exc.errors())
        return await _problem(_, Problem(422, "invalid_request", message or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "no such route; see /docs for the API"
        return await _problem(_, Problem(exc.status_code, code, message, dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        state.metrics.rejects.labels("internal_error").inc()
        return error_response(Problem(500, "internal_error",
                                      "the server failed on this request; the error is in its log"))

    async def guarded(request: Request, explain: bool) -> dict[str, Any]:
        state.check_key(request)
        parsed = await state.parser.parse(request)
        if explain:
            views_job = run_in_threadpool(
                lambda: [[cropper_views(state.predictor, im) for im in ims] for ims in parsed.images]
            )
            predictions, views = await asyncio.gather(state.run(parsed.products, parsed.top_k), views_job)
            return {"predictions": predictions, "images": views}
        return {"predictions": await state.run(parsed.products, parsed.top_k)}

    async def with_timeout(request: Request, explain: bool) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(guarded(request, explain), config.request_timeout_s)
        except asyncio.TimeoutError:  # noqa: UP041 - not builtin TimeoutError on 3.10
            raise Problem(503, "timeout",
                          f"the request took over {config.request_timeout_s:g} s (--request-timeout); "
                          "the server is overloaded: retry later or send fewer products",
                          {"Retry-After": str(config.retry_after_s)}) from None
        except DataError as exc:
            raise Problem(422, "bad_product", str(exc)) from None

    body_doc = _request_body_doc()

    @app.post("/v1/predict", openapi_extra=body_doc, summary="Predict the attributes of products")
    async def predict(request: Request) -> dict[str, Any]:
        """JSON `{"products": [{"id", "title", "description", "brand", "images": [base64 or
        data URI]}], "top_k": 3}` or a multipart form (one product: fields id, title,
        description, brand, top_k and image files `images`). Answers
        `{"predictions": [{"id", "attributes": {name: {"label", "score", "top_k",
        "abstained"}}, "diagnostics": {"notes", "missing"}}]}`."""
        return await with_timeout(request, explain=False)

    @app.post("/v1/explain", openapi_extra=body_doc, summary="Predictions plus the views the model saw")
    async def explain(request: Request) -> dict[str, Any]:
        """The same input as /v1/predict. Adds `images`: per product, per image, its width and
        height and for every view the cropper's name, output size and boxes
        `[left, top, right, bottom]` in the image's pixels."""
        return await with_timeout(request, explain=True)

    @app.get("/v1/model", summary="The model: name, revision, attributes and labels, metrics")
    async def model(request: Request) -> dict[str, Any]:
        state.check_key(request)
        if state.predictor is None:
            raise Problem(503, "not_ready", "the model is not loaded yet; retry shortly")
        return state.describe_model()

    @app.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Model loaded and batcher running")
    async def readyz() -> JSONResponse:
        ready = state.ready and state.batcher is not None and state.batcher.running
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        if state.batcher is not None:
            state.metrics.queue_depth.set(state.batcher.depth)
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    page = resources.files("fashion.serve").joinpath("static", "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return Guard(app, max_body_bytes=config.max_body_bytes, metrics=state.metrics)


def app_from_environment() -> Any:
    """The app of one uvicorn worker, built from ``FASHION_SERVE_CONFIG`` (``--workers N``)."""
    import os

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start workers with `fashion serve`")
    return create_app(ServeConfig.model_validate_json(raw))
