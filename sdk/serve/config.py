"""The settings of ``fashion serve``: one pydantic model, shared by the CLI, the app and workers.

Several uvicorn workers each build their own app from the same settings, handed over as JSON in
the ``FASHION_SERVE_CONFIG`` environment variable (:func:`fashion.serve.server.app_from_environment`).
"""

from __future__ import annotations

import importlib.util
import os

from pydantic import Field, model_validator

from fashion._util.config import StrictModel, explain_validation_error
from fashion.errors import ConfigError, MissingExtraError
from fashion.predict.precision import PRECISIONS, RUNTIMES, check_choice

CONFIG_ENV = "FASHION_SERVE_CONFIG"
# import name -> distribution, for the message when the `serve` extra is missing
SERVE_PACKAGES: dict[str, str] = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
    "prometheus_client": "prometheus-client",
}


class ServeConfig(StrictModel):
    """Everything the server needs; limits have safe defaults for a public-facing service."""

    model: str = Field(description="Bundle folder, hf://org/name[@rev] or local://name[@rev].")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    device: str | None = Field(None, description="torch device (None: auto, the GPU when CUDA is available).")
    precision: str = Field("fp32", description=f"One of {', '.join(PRECISIONS)}.")
    runtime: str = Field("auto", description=f"One of {', '.join(RUNTIMES)}.")
    revision: str | None = None
    max_batch_size: int = Field(32, ge=1, le=4096, description="Products per forward.")
    batch_timeout_ms: float = Field(
        10.0, ge=0.0, le=10_000.0,
        description="How long the first request of a batch waits for others to join it.",
    )
    max_queue: int = Field(256, ge=1, description="Requests waiting; more are answered 503.")
    max_products: int = Field(64, ge=1, description="Products per request.")
    max_images: int = Field(16, ge=1, description="Images per product.")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Request body size.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Width x height of one decoded image (decompression bombs)."
    )
    max_request_pixels: int = Field(
        128_000_000, ge=1,
        description="Decoded pixels per request, summed over its images and read from their "
        "headers before decoding; an image with transparency or 16/32-bit samples counts "
        "several times its pixels (the memory its decoding takes, RGB-equivalent).",
    )
    header_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0,
        description="Seconds a client has to send a request's headers and body once it has "
        "connected or started a request; slower connections are closed.",
    )
    request_timeout_s: float = Field(30.0, gt=0.0, description="Per request, queue included.")
    top_k: int = Field(3, ge=1, le=100, description="Default top-k; a request may ask for fewer or more.")
    max_top_k: int = Field(20, ge=1, le=1000)
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key."
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 when the queue is full.")
    index: str | None = Field(None, description="An index folder of the model's vectors: POST /v1/similar.")

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        check_choice(self.precision, self.runtime)  # the Predictor's own rules, before loading
        from fashion.data.images import max_image_pixels

        limit = max_image_pixels()
        if self.max_image_pixels > limit:  # the Predictor re-checks every image against it
            raise ValueError(
                f"max_image_pixels {self.max_image_pixels:,} is above this process's image limit "
                f"{limit:,}; lower --max-image-pixels or raise FASHION_MAX_IMAGE_PIXELS too"
            )
        if self.top_k > self.max_top_k:
            raise ValueError(f"top_k {self.top_k} is above max_top_k {self.max_top_k}")
        return self

    def api_key(self) -> str | None:
        """The key requests must send, read from ``api_key_env``; refuses a missing or empty one."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key.strip():
            raise ConfigError(
                f"--api-key-env {self.api_key_env}: that environment variable is not set or "
                f"empty; export {self.api_key_env}=<a long random key> before `fashion serve`."
            )
        return key.strip()


def make_config(**values: object) -> ServeConfig:
    """A :class:`ServeConfig`, or a :class:`ConfigError` naming each bad setting."""
    from pydantic import ValidationError

    try:
        return ServeConfig(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"fashion serve: {explain_validation_error(exc, top='settings')}") from None


def require_serve_extras() -> None:
    """Raise :class:`MissingExtraError` naming the ``serve`` extra when a package is missing."""
    missing = [dist for module, dist in SERVE_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtraError(
            f"`fashion serve` needs {', '.join(missing)}; install the serve extra: "
            "pip install 'fashion-sdk[serve]'"
        )
