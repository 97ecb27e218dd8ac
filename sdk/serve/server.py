"""Run the server: load the model once (a bad MODEL fails as one line), then uvicorn with one
process, or ``--workers`` processes that each load their own copy from the config passed in
the environment (``FASHION_SERVE_CONFIG``)."""

from __future__ import annotations

import json
import math
import os
import sys

from fashion.serve.config import CONFIG_ENV, ServeConfig, require_serve_extras


def run_server(config: ServeConfig, *, log_level: str = "info") -> None:
    """Load the model (a bad MODEL fails here, as one line) and serve until interrupted."""
    require_serve_extras()
    import uvicorn

    from fashion.serve.app import create_app, load_predictor

    config.api_key()  # a missing key fails before the model loads
    predictor = load_predictor(config)
    print(
        f"fashion serve: {config.model} ({len(predictor.attributes)} attributes) on "
        f"http://{config.host}:{config.port}  page: /  API: /docs  workers: {config.workers}",
        file=sys.stderr,
    )
    if config.workers == 1:
        uvicorn.run(create_app(config, predictor), host=config.host, port=config.port,
                    log_level=log_level, timeout_graceful_shutdown=math.ceil(config.request_timeout_s))
        return
    del predictor  # checked; each worker loads its own copy
    os.environ[CONFIG_ENV] = json.dumps(config.model_dump(mode="json"))
    uvicorn.run("fashion.serve.app:app_from_environment", factory=True, host=config.host,
                port=config.port, workers=config.workers, log_level=log_level,
                timeout_graceful_shutdown=math.ceil(config.request_timeout_s))


__all__ = ["run_server"]
