"""``fashion serve``: the command's front (the app is :mod:`fashion.serve`).

The command only needs click to be listed; FastAPI and uvicorn are imported when it runs, and
their absence is one line naming the ``serve`` extra.
"""

from __future__ import annotations

import click

from fashion.predict.precision import PRECISIONS, RUNTIMES
from fashion.serve.config import make_config
from fashion.serve.server import run_server


@click.command("serve")
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Products per forward; 1 turns dynamic batching off.")
@click.option("--batch-timeout-ms", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a request waits for others to join its batch.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes, each with its own copy of the model.")
@click.option("--device", default=None,
              help="torch device: auto, cpu, cuda, cuda:N (default: auto, the GPU when CUDA is "
                   "available).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="As `fashion predict --precision` (auto: bf16/fp16 on CUDA, a path the "
                   "bundle's accuracy gate validated on the CPU).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="As `fashion predict --runtime`: onnxruntime/openvino run the bundle's ONNX "
                   "export (`fashion export`, `fashion optimize`; extras fashion-sdk[onnx], "
                   "fashion-sdk[openvino]); auto: torch, or the runtime the accuracy gate "
                   "recorded as fastest.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="Require the API key held in environment variable VAR (X-API-Key header).")
@click.option("--max-products", default=64, show_default=True, type=click.IntRange(min=1),
              help="Products per request.")
@click.option("--max-images", default=16, show_default=True, type=click.IntRange(min=1),
              help="Images per product.")
@click.option("--max-body-mb", default=32.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Request body size limit in MiB.")
@click.option("--max-image-pixels", default=40_000_000, show_default=True,
              type=click.IntRange(min=1), help="Width x height limit of one image.")
@click.option("--max-request-pixels", default=128_000_000, show_default=True,
              type=click.IntRange(min=1),
              help="Decoded pixels per request, summed over its images (read from their headers; "
                   "transparency and 16/32-bit images count several times): 413 above.")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.001, max=3600),
              help="Seconds a client has to send a request's headers (and the longest pause in its "
                   "body); slower connections are closed.")
@click.option("--max-queue", default=256, show_default=True, type=click.IntRange(min=1),
              help="Requests waiting for a batch; more are answered 503 with Retry-After.")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds per request, queue included (then 503).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--index", "index", default=None, type=click.Path(file_okay=False),
              help="An index of MODEL's vectors (fashion index build): adds POST /v1/similar.")
def serve_command(
    model: str,
    host: str,
    port: int,
    max_batch_size: int,
    batch_timeout_ms: float,
    workers: int,
    device: str | None,
    precision: str,
    runtime: str,
    api_key_env: str | None,
    max_products: int,
    max_images: int,
    max_body_mb: float,
    max_image_pixels: int,
    max_request_pixels: int,
    header_timeout: float,
    max_queue: int,
    request_timeout: float,
    log_level: str,
    index: str | None,
) -> None:
    """Serve MODEL over HTTP: /v1/predict with dynamic batching, a page at /, OpenAPI at /docs.

    MODEL is a bundle folder, hf://org/name[@revision] or local://name[@revision].
    Needs the serve extra: pip install 'fashion-sdk[serve]'.
    """
    config = make_config(
        model=model, host=host, port=port, workers=workers, device=device, precision=precision,
        runtime=runtime, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
        max_queue=max_queue, max_products=max_products, max_images=max_images,
        max_body_bytes=int(max_body_mb * 1024 * 1024), max_image_pixels=max_image_pixels,
        max_request_pixels=max_request_pixels, header_timeout_s=header_timeout,
        request_timeout_s=request_timeout, api_key_env=api_key_env, index=index,
    )
    run_server(config, log_level=log_level)


__all__ = ["serve_command"]
