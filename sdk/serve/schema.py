"""The request and response models of ``fashion serve``, and its OpenAPI document built from them.

:class:`RequestModels` builds, for one :class:`~fashion.serve.config.ServeConfig`, the pydantic
models every request value is validated with before use (integers bounded, lists within the
configured limits, text that is valid Unicode). :func:`openapi_paths` documents the routes with
the same models, so the schema at ``/openapi.json`` describes what the server accepts and answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from fashion._util.config import StrictModel
from fashion.serve.config import ServeConfig

#: The largest whole number a request may hold (an ``id``): what JSON clients represent exactly.
MAX_INTEGER = 2**53 - 1
#: Digits of a JSON number parsed as an integer; longer ones are refused before ``int()`` runs.
MAX_DIGITS = 20


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate code point (\\ud800-\\udfff); send valid "
                         "Unicode text") from None
    return text


def _form_integer(value: Any) -> Any:
    """A multipart ``top_k``: ASCII digits only (``"²"`` or ``"٣"`` are not whole numbers here)."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 6):
            raise ValueError(f"{value[:40]!r} is not a whole number")
        return int(text)
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
ProductId = Annotated[int, Field(ge=-MAX_INTEGER, le=MAX_INTEGER)]


class RequestModels:
    """The request models for one config: JSON body, one JSON product, multipart fields."""

    def __init__(self, config: ServeConfig) -> None:
        images_doc = ("Base64-encoded image bytes or data URIs (data:image/jpeg;base64,...). "
                      "URLs and server-side paths are refused.")

        class Product(StrictModel):
            """One product; every field may be missing, but not all of them (no image and no
            text is refused)."""

            model_config = ConfigDict(strict=True, title="Product")

            id: Text | ProductId | None = None
            title: Text | None = None
            description: Text | None = None
            brand: Text | None = None
            images: list[Text] = Field(default_factory=list, max_length=config.max_images,
                                       description=images_doc)

        class PredictRequest(StrictModel):
            model_config = ConfigDict(strict=True, title="PredictRequest")

            products: list[Product] = Field(min_length=1, max_length=config.max_products)
            top_k: int | None = Field(None, ge=1, le=config.max_top_k,
                                      description=f"Labels ranked per attribute (default {config.top_k}).")

        class FormFields(StrictModel):
            """The text fields of a multipart upload (one product; files go in ``images``)."""

            model_config = ConfigDict(strict=True, title="PredictForm")

            id: Text | None = None
            title: Text | None = None
            description: Text | None = None
            brand: Text | None = None
            top_k: Annotated[int, Field(ge=1, le=config.max_top_k),
                             BeforeValidator(_form_integer)] | None = None

        self.config = config
        self.product = Product
        self.request = PredictRequest
        self.form = FormFields


# ----------------------------------------------------------------------------- responses


class ErrorDetail(StrictModel):
    status: int
    code: str
    message: str


class ErrorBody(StrictModel):
    """Every error: a status, a short code and a message saying what to do."""

    error: ErrorDetail


class AttributeOut(StrictModel):
    model_config = ConfigDict(extra="allow")

    label: str | None
    score: float
    top_k: list[Annotated[list[str | float], Field(min_length=2, max_length=2)]] = Field(
        description="[label, score] pairs, best first.")
    abstained: bool
    reason: str | None = None


class Diagnostics(StrictModel):
    model_config = ConfigDict(extra="allow")

    notes: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


class PredictionOut(StrictModel):
    id: str | None
    attributes: dict[str, AttributeOut]
    diagnostics: Diagnostics


class PredictResponse(StrictModel):
    predictions: list[PredictionOut]


class ExplainResponse(PredictResponse):
    images: list[list[dict[str, Any]]] = Field(
        description="Per product, per image: width, height and every view's cropper, size and boxes.")


class Ready(StrictModel):
    ready: bool


class Health(StrictModel):
    status: str


# ----------------------------------------------------------------------------- OpenAPI


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (a requestBody has no ``$defs``)."""
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


def _json(model: Any) -> dict[str, Any]:
    return {"application/json": {"schema": inline_refs(model.model_json_schema(mode="serialization"))}}


def _errors(*statuses: int) -> dict[int, dict[str, Any]]:
    why = {
        400: "The body cannot be read (not JSON, not UTF-8, a broken multipart form, a bad "
             "Content-Length).",
        401: "The API key is missing or wrong.",
        413: "The body is over --max-body-mb, or its images would decode to more than "
             "--max-request-pixels.",
        415: "Neither application/json nor multipart/form-data.",
        422: "A value is invalid or over a limit (the message names it: more products or "
             "images than allowed, top_k out of range), an image cannot be decoded, or a "
             "product has no image and no text.",
        503: "Not ready, overloaded or timed out; retry after Retry-After seconds.",
    }
    return {s: {"description": why[s], "content": _json(ErrorBody)} for s in statuses}


def request_body(models: RequestModels) -> dict[str, Any]:
    form = inline_refs(models.form.model_json_schema())
    for name, prop in form["properties"].items():  # a form field is sent or not: never null
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        form["properties"][name] = {**prop, **(branches[0] if branches else {})}
    form["properties"]["images"] = {
        "type": "array", "maxItems": models.config.max_images,
        "items": {"type": "string", "format": "binary"},
        "description": "Image files of the product.",
    }
    return {
        "required": True,
        "content": {
            "application/json": {"schema": inline_refs(models.request.model_json_schema())},
            "multipart/form-data": {"schema": form},
        },
    }


def route_docs(models: RequestModels, *, auth: bool) -> dict[str, dict[str, Any]]:
    """Per route, the ``openapi_extra`` and ``responses`` of its FastAPI decorator."""
    key = (401,) if auth else ()
    security = {"security": [{"ApiKey": []}, {"Bearer": []}]} if auth else {}
    predict = {"openapi_extra": {"requestBody": request_body(models), **security},
               "responses": _errors(400, *key, 413, 415, 422, 503), "response_model": None}
    return {
        "predict": {**predict, "responses": {**predict["responses"], 200: {"content": _json(PredictResponse)}}},
        "explain": {**predict, "responses": {**predict["responses"], 200: {"content": _json(ExplainResponse)}}},
        "model": {"openapi_extra": security, "responses": _errors(*key, 503), "response_model": None},
        "healthz": {"responses": {200: {"content": _json(Health)}}, "response_model": None},
        "readyz": {"responses": {200: {"content": _json(Ready)},
                                 503: {"description": "Starting or stopping.", "content": _json(Ready)}},
                   "response_model": None},
    }


def security_schemes() -> dict[str, Any]:
    return {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "Bearer": {"type": "http", "scheme": "bearer"},
    }
