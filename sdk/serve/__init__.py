"""``fashion serve``: predictions over HTTP with dynamic batching, and a page that shows them.

Install the extra (``pip install 'fashion-sdk[serve]'``), then ``fashion serve MODEL``. In
Python: ``create_app(ServeConfig(model=...))`` returns the ASGI app (see docs/serve.md).
This package imports FastAPI only when the app is built, so the CLI stays quick.

May import: ``fashion.predict`` and the layers below; never ``fashion.attributes`` or the Ray
engine. Exports ``create_app``, ``ServeConfig``, ``make_config``, ``require_serve_extras``.
"""

from __future__ import annotations

from typing import Any

from fashion.serve.config import ServeConfig, make_config, require_serve_extras


def create_app(config: ServeConfig, predictor: Any | None = None) -> Any:
    """The ASGI app for ``config`` (see :func:`fashion.serve.app.create_app`)."""
    require_serve_extras()
    from fashion.serve.app import create_app as build

    return build(config, predictor)


__all__ = ["ServeConfig", "create_app", "make_config", "require_serve_extras"]
