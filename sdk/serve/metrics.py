"""Prometheus metrics of one server process (``GET /metrics``, text exposition format).

Each app owns its registry, so two apps in one process (tests) do not mix their counts. With
``--workers N`` every worker process counts its own requests: scrape each worker, or sum them
behind the load balancer (see docs/serve.md).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Requests, latency, batch sizes, rejects and queue depth."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fashion_requests", "HTTP requests by route and status code.",
            ["route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "fashion_request_latency_seconds", "Request latency by route (queue and forward included).",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "fashion_batch_size", "Products per forward (dynamic batching groups requests).",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "fashion_batch_seconds", "Seconds per batched Predictor.predict call.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.products = Counter(
            "fashion_products_predicted", "Products predicted.", registry=self.registry,
        )
        self.rejects = Counter(
            "fashion_rejects", "Requests answered with an error, by reason.",
            ["reason"], registry=self.registry,
        )
        self.queue_depth = Gauge(
            "fashion_queue_depth", "Requests waiting for a batch.", registry=self.registry,
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.products.inc(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
