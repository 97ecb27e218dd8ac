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
import logging
import os
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fashion.errors import DataError, FashionError
from fashion.serve.batching import Batcher, QueueFull
from fashion.serve.config import ServeConfig
from fashion.serve.explain import cropper_views
from fashion.serve.metrics import Metrics
from fashion.serve.requests import (
    Guard,
    RequestParser,
    RequestProblem,
    _validation_message,
    error_response,
)
from fashion.serve.schema import route_docs, security_schemes

log = logging.getLogger("fashion.serve")


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
        self.index: Any = None  # --index: a fashion.search.Index of the model's vectors

    def predict(self, products: list[Any], top_k: int) -> list[Any]:
        return self.predictor.predict(products, batch_size=max(1, len(products)), top_k=top_k,  # type: ignore[union-attr]
                                      embeddings=self.index is not None)  # the same encode

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        sent = request.headers.get("x-api-key")
        if sent is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            sent = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        headers = {"WWW-Authenticate": 'Bearer realm="fashion"'}
        if sent is None:
            raise RequestProblem(401, "missing_api_key",
                          "this server needs an API key: send it in the X-API-Key header "
                          "(or Authorization: Bearer KEY)", headers)
        if not hmac.compare_digest(sent.encode(), self.api_key.encode()):
            raise RequestProblem(401, "invalid_api_key", "the API key is not valid", headers)

    async def run(self, products: list[Any], top_k: int,
                  vectors: list[Any] | None = None) -> list[dict[str, Any]]:
        if self.batcher is None or not self.ready:
            raise RequestProblem(503, "not_ready", "the model is not loaded yet; retry shortly",
                          {"Retry-After": str(self.config.retry_after_s)})
        self.metrics.queue_depth.set(self.batcher.depth)
        try:
            results = await self.batcher.submit(products, top_k)
        except QueueFull as exc:
            raise RequestProblem(503, "overloaded",
                          f"the server is busy ({exc}); retry after {self.config.retry_after_s} s",
                          {"Retry-After": str(self.config.retry_after_s)}) from None
        except FashionError as exc:
            raise RequestProblem(422, "prediction_failed", str(exc)) from None
        out = []
        for result in results:
            if vectors is not None:
                vectors.append(result.embedding)
            result.embedding = None
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
            from fashion.predict.artifacts import gate_verdict

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
            "max_request_pixels": config.max_request_pixels, "header_timeout_s": config.header_timeout_s,
        }
        out["auth"] = self.api_key is not None
        if self.index is not None:
            out["index"] = {"products": len(self.index), "kind": self.index.kind}
        return out


def load_predictor(config: ServeConfig) -> Any:
    from fashion.predict.predictor import Predictor

    return Predictor.from_pretrained(config.model, device=config.device or "auto",
                                     revision=config.revision, precision=config.precision,  # type: ignore[arg-type]
                                     runtime=config.runtime)  # type: ignore[arg-type]



def load_index(folder: str, predictor: Any) -> Any:
    """The ``--index`` folder, refused (the server does not start) unless ``predictor``'s model
    computed its vectors."""
    from fashion.errors import ConfigError
    from fashion.search import Index, model_revision

    index = Index.load(folder)
    revision = model_revision(predictor.model, index.info.space)
    if revision != index.info.model_revision:
        raise ConfigError(f"--index {folder} holds vectors of model revision "
                          f"{index.info.model_revision}, but the served model is of revision "
                          f"{revision}; serve the index's model or build the index from its vectors.")
    predictor.set_embedding_space(index.info.space)  # queries are embedded as the index was
    return index


def create_app(config: ServeConfig, predictor: Any | None = None) -> Any:
    """The ASGI app: FastAPI routes inside the :class:`Guard` (body limit, metrics).

    ``predictor`` (a loaded :class:`fashion.Predictor`) is loaded from ``config.model`` at
    start-up when not given.
    """
    state = ServeState(config, predictor)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if state.predictor is None:
            try:
                state.predictor = await run_in_threadpool(load_predictor, config)
            except Exception as exc:
                # one line (the Guard drops the traceback): the supervisor reports the stop
                log.error("fashion serve: worker %s cannot load the model %s: %s",
                          os.getpid(), config.model, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                raise
        if config.index:
            try:
                state.index = await run_in_threadpool(load_index, config.index, state.predictor)
            except Exception as exc:
                log.error("fashion serve: worker %s cannot load the index %s: %s", os.getpid(),
                          config.index, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                raise
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

    @app.exception_handler(RequestProblem)
    async def _problem(_: Request, exc: RequestProblem) -> JSONResponse:
        state.metrics.rejects.labels(exc.code).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = _validation_message(exc.errors())
        return await _problem(_, RequestProblem(422, "invalid_request", message or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "no such route; see /docs for the API"
        return await _problem(_, RequestProblem(exc.status_code, code, message, dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        state.metrics.rejects.labels("internal_error").inc()
        return error_response(RequestProblem(500, "internal_error",
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
            raise RequestProblem(503, "timeout",
                          f"the request took over {config.request_timeout_s:g} s (--request-timeout); "
                          "the server is overloaded: retry later or send fewer products",
                          {"Retry-After": str(config.retry_after_s)}) from None
        except DataError as exc:
            raise RequestProblem(422, "bad_product", str(exc)) from None

    docs = route_docs(state.parser.models, auth=state.api_key is not None)

    @app.post("/v1/predict", **docs["predict"], summary="Predict the attributes of products")
    async def predict(request: Request) -> dict[str, Any]:
        """JSON `{"products": [{"id", "title", "description", "brand", "images": [base64 or
        data URI]}], "top_k": 3}` or a multipart form (one product: fields id, title,
        description, brand, top_k and image files `images`). Answers
        `{"predictions": [{"id", "attributes": {name: {"label", "score", "top_k",
        "abstained"}}, "diagnostics": {"notes", "missing"}}]}`."""
        return await with_timeout(request, explain=False)

    @app.post("/v1/explain", **docs["explain"], summary="Predictions plus the views the model saw")
    async def explain(request: Request) -> dict[str, Any]:
        """The same input as /v1/predict. Adds `images`: per product, per image, its width and
        height and for every view the cropper's name, output size and boxes
        `[left, top, right, bottom]` in the image's pixels."""
        return await with_timeout(request, explain=True)

    if config.index:
        from fashion.serve.similar import similar_route

        similar_route(app, state)

    @app.get("/v1/model", **docs["model"], summary="The model: name, revision, attributes and labels, metrics")
    async def model(request: Request) -> dict[str, Any]:
        state.check_key(request)
        if state.predictor is None:
            raise RequestProblem(503, "not_ready", "the model is not loaded yet; retry shortly")
        return state.describe_model()

    @app.get("/healthz", **docs["healthz"], summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", **docs["readyz"], summary="Model loaded and batcher running")
    async def readyz() -> JSONResponse:
        ready = state.ready and state.batcher is not None and state.batcher.running
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format)")
    async def metrics() -> Response:
        if state.batcher is not None:
            state.metrics.queue_depth.set(state.batcher.depth)
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the API-key schemes the /v1 routes name when a key is set."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            if state.api_key is not None:
                schema.setdefault("components", {})["securitySchemes"] = security_schemes()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    page = resources.files("fashion.serve").joinpath("static", "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return Guard(app, max_body_bytes=config.max_body_bytes, metrics=state.metrics)
