"""``POST /v1/similar`` of ``fashion serve --index``: the products of the index most similar to
uploaded ones, under the limits, API key and timeout of ``/v1/predict``.

The body is the body of ``/v1/predict``; the query string takes ``k`` (default the server's
top-k, at most its max top-k), ``where`` (repeat: ``where=color=red``) and ``min_score``. The
products go through the same batcher as predictions: one encode gives their attributes and
their vectors. A hit whose catalog photo the server can read (a file, or an http(s) URL) has a
``thumbnail``: the URL, or ``GET /v1/similar/image/{id}`` (API key as for the rest; the server's
paths are never sent).
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from fashion.errors import ConfigError, DataError
from fashion.serve.requests import RequestProblem


def _query(request: Request, top_k: int, max_k: int) -> tuple[int, list[str], float | None]:
    params = request.query_params
    try:
        k = int(params.get("k", top_k))
        min_score = float(params["min_score"]) if "min_score" in params else None
    except ValueError:
        raise RequestProblem(422, "invalid_request", "k must be a whole number and min_score a "
                             "number between 0 and 1") from None
    if not 1 <= k <= max_k:
        raise RequestProblem(422, "invalid_request", f"k must be between 1 and {max_k}")
    return k, params.getlist("where"), min_score


def _local_image(index: Any, product_id: str) -> Path | None:
    row = index.position.get(product_id)
    image = index.images[row] if row is not None else None
    if not image or "://" in image:
        return None
    path = Path(image)
    kind = mimetypes.guess_type(path.name)[0] or ""
    return path if kind.startswith("image/") and path.is_file() else None


def _thumbnail(index: Any, hit: dict[str, Any]) -> dict[str, Any]:
    image = hit.pop("image", None)
    if image and image.startswith(("http://", "https://")):
        hit["thumbnail"] = image
    elif image and _local_image(index, hit["id"]) is not None:
        hit["thumbnail"] = f"/v1/similar/image/{quote(hit['id'], safe='')}"
    return hit


def similar_route(app: Any, state: Any) -> None:
    """Add ``POST /v1/similar`` to ``app`` (``state``: the app's ServeState, with an index)."""
    config = state.config

    async def answer(request: Request) -> dict[str, Any]:
        state.check_key(request)
        k, where, min_score = _query(request, config.top_k, config.max_top_k)
        parsed = await state.parser.parse(request)
        vectors: list[Any] = []
        predictions = await state.run(parsed.products, parsed.top_k, vectors=vectors)

        def search() -> list[dict[str, Any]]:
            return [{"id": p["id"], "attributes": p["attributes"], "similar": [
                _thumbnail(state.index, hit.to_dict())
                for hit in state.index.search(v, k, where=where, min_score=min_score)]}
                for p, v in zip(predictions, vectors, strict=True)]

        try:
            return {"products": await run_in_threadpool(search)}
        except (ConfigError, DataError) as exc:
            raise RequestProblem(422, "invalid_request", str(exc)) from None

    @app.post("/v1/similar", summary="The indexed products most similar to uploaded ones")
    async def similar(request: Request) -> dict[str, Any]:
        """The body of /v1/predict; query `k`, `where=ATTRIBUTE=LABEL` (repeat), `min_score`.
        Answers `{"products": [{"id", "attributes", "similar": [{"id", "score",
        "attributes"}]}]}`."""
        try:
            return await asyncio.wait_for(answer(request), config.request_timeout_s)
        except asyncio.TimeoutError:  # noqa: UP041
            raise RequestProblem(503, "timeout", f"the request took over "
                                 f"{config.request_timeout_s:g} s (--request-timeout); retry "
                                 "later", {"Retry-After": str(config.retry_after_s)}) from None
        except DataError as exc:
            raise RequestProblem(422, "bad_product", str(exc)) from None

    @app.get("/v1/similar/image/{product_id}", summary="The catalog photo of an indexed product")
    async def similar_image(request: Request, product_id: str) -> FileResponse:
        state.check_key(request)
        path = _local_image(state.index, product_id)
        if path is None:
            raise RequestProblem(404, "not_found", f"no readable photo for product {product_id!r}")
        return FileResponse(path)


__all__ = ["similar_route"]
