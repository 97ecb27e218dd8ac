"""``POST /v1/similar`` of ``fashion serve --index``: the products of the index most similar to
uploaded ones, under the limits, API key and timeout of ``/v1/predict``.

The body is the body of ``/v1/predict``; the query string takes ``k`` (default the server's
top-k, at most its max top-k), ``where`` (repeat: ``where=color=red``) and ``min_score``. The
products go through the same batcher as predictions: one encode gives their attributes and
their vectors.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
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
                hit.to_dict() for hit in state.index.search(v, k, where=where, min_score=min_score)]}
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


__all__ = ["similar_route"]
