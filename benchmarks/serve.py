"""7. ``fashion serve``: requests/s and latency on loopback, dynamic batching on vs off.

The benchmark model (EfficientNet-Lite0 on the ``full`` view + MiniLM text, five heads) is saved
as a bundle and served by a real ``fashion serve`` subprocess, once with dynamic batching
(``--max-batch-size 32 --batch-timeout-ms 10``) and once without (``--max-batch-size 1``).
Clients are threads of this process, each sending one product (a JPEG photo + title) per
request, back to back. At 1, 8 and 32 concurrent clients it records requests/s and p50/p99
latency. The overhead row compares one request at a time (batching off) with
``Predictor.predict`` on the same product in-process: HTTP, JSON, base64 and the queue.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .common import REPO, Context, build_model, compare, model_spec, result

NAME = "serve"
TITLE = "fashion serve: requests/s with dynamic batching vs without, and HTTP overhead"
CLIENTS = (1, 8, 32)


def _photo(i: int, size: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, int(size * 0.75)), "white")
    draw = ImageDraw.Draw(image)
    color = ((i * 67) % 256, (i * 131) % 256, (i * 29) % 256)
    draw.rectangle((size // 4, size // 8, size * 3 // 4, size * 5 // 8), fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, body: bytes) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"the server answered {response.status}: {data[:300]!r}")
    finally:
        conn.close()
    return time.perf_counter() - started


class _Server:
    def __init__(self, bundle: Path, log: Path, threads: int, *args: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": str(threads)}
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fashion", "serve", str(bundle), "--port", str(self.port),
             "--log-level", "warning", "--max-queue", "1024", "--request-timeout", "600", *args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fashion serve exited; see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"fashion serve did not become ready; see {log}")

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _load(port: int, bodies: list[bytes], clients: int, requests: int) -> dict[str, float]:
    """``clients`` threads send ``requests`` requests in all, back to back."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            seconds = _post(port, bodies[i % len(bodies)])
            with lock:
                latencies.append(seconds)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "requests": len(latencies),
    }


def _histogram(metrics: str, name: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram in the text format."""
    values = {}
    for line in metrics.splitlines():
        for key in ("_sum", "_count"):
            if line.startswith(name + key + " "):
                values[key] = float(line.split()[1])
    return values.get("_sum", 0.0), values.get("_count", 0.0)


def _batch_mean(metrics: str) -> float:
    total, count = _histogram(metrics, "fashion_batch_size")
    return total / count if count else 0.0


def _overhead(server: _Server, bundle: Path, products: list[dict[str, Any]], bodies: list[bytes],
              rounds: int) -> tuple[float, float, float]:
    """Median seconds of ``Predictor.predict`` at batch 1 in this process and of one request,
    interleaved (ABAB) so a busy machine slows both alike; and the mean seconds of the
    server's own ``Predictor.predict`` calls behind those requests (same process and threads)."""
    port = server.port
    before = _histogram(server.metrics(), "fashion_batch_seconds")
    from fashion import Predictor

    predictor = Predictor.from_pretrained(bundle)
    predictor.predict([products[0]])  # warm-up
    direct, http = [], []
    for i in range(rounds):
        started = time.perf_counter()
        predictor.predict([products[i % len(products)]], batch_size=1)
        direct.append(time.perf_counter() - started)
        http.append(_post(port, bodies[i % len(bodies)]))
    after = _histogram(server.metrics(), "fashion_batch_seconds")
    inside = (after[0] - before[0]) / max(1.0, after[1] - before[1])
    return statistics.median(direct), statistics.median(http), inside


def _ceiling(bundle: Path, products: list[dict[str, Any]], rounds: int) -> tuple[float, float]:
    """Products/s of ``Predictor.predict`` in this process, one product per call vs all of them
    (32) in one call, interleaved: what batching can give on this machine at best, with no
    HTTP, JSON or queue in the way."""
    from fashion import Predictor

    predictor = Predictor.from_pretrained(bundle)
    batch = [products[i % len(products)] for i in range(32)]
    predictor.predict(batch[:2], batch_size=2)  # warm-up
    single, grouped = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for product in batch:
            predictor.predict([product], batch_size=1)
        single.append(time.perf_counter() - started)
        started = time.perf_counter()
        predictor.predict(batch, batch_size=len(batch))
        grouped.append(time.perf_counter() - started)
    return len(batch) / statistics.median(single), len(batch) / statistics.median(grouped)


def run(ctx: Context) -> dict[str, Any]:
    from fashion.registry import save_bundle

    crop = ctx.sizes.infer_crop
    bundle = ctx.work / "serve-bundle"
    if not bundle.is_dir():
        model = build_model(model_spec(crop=crop, text_model=ctx.text_model()))
        save_bundle(model.eval(), bundle)
    products = [{"id": f"s{i}", "title": f"striped cotton dress no {i}", "images": [_photo(i, 2 * crop)]}
                for i in range(16)]
    bodies = [json.dumps({"products": [{**p, "images": [base64.b64encode(p["images"][0]).decode()]}]}).encode()
              for p in products]
    s = ctx.sizes
    per_client = s.serve_requests_per_client
    minimum = s.serve_min_requests

    modes = {"batching": ("--max-batch-size", "32", "--batch-timeout-ms", "10"),
             "no batching": ("--max-batch-size", "1")}
    measured: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in modes}
    mean_batch_at: dict[str, float] = {}  # products per forward of the batching server, per load
    servers = {mode: _Server(bundle, ctx.work / f"serve-{mode.replace(' ', '-')}.log", ctx.threads, *args)
               for mode, args in modes.items()}
    try:
        for server in servers.values():
            _load(server.port, bodies, 1, 2)  # warm-up
        repeats = s.serve_repeats
        for clients in CLIENTS:
            requests = max(minimum, per_client * clients)
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
            before = _histogram(servers["batching"].metrics(), "fashion_batch_size")
            for _ in range(repeats):  # ABAB: both servers see the same machine load
                for mode, server in servers.items():
                    runs[mode].append(_load(server.port, bodies, clients, requests))
            after = _histogram(servers["batching"].metrics(), "fashion_batch_size")
            mean_batch_at[str(clients)] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
            for mode, rows in runs.items():
                measured[mode][str(clients)] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                ctx.log(f"  {mode}, {clients} clients: {measured[mode][str(clients)]}")
        batch_means = {mode: _batch_mean(server.metrics()) for mode, server in servers.items()}
        direct_s, http_s, inside_s = _overhead(servers["no batching"], bundle, products, bodies, minimum)
    finally:
        for server in servers.values():
            server.stop()
    one_by_one, all_at_once = _ceiling(bundle, products, s.serve_ceiling_repeats)

    on, off = measured["batching"], measured["no batching"]
    direct_ms, http_ms, inside_ms = 1000 * direct_s, 1000 * http_s, 1000 * inside_s
    comparisons = [
        compare("requests/s at 32 concurrent clients, batching on vs off",
                sdk=on["32"]["requests_per_s"], baseline=off["32"]["requests_per_s"], unit="requests/s",
                sdk_label="batching", baseline_label="no batching", target=3.0),
        compare("ceiling: Predictor.predict in-process, 32 products in one call vs one per call",
                sdk=all_at_once, baseline=one_by_one, unit="products/s", sdk_label="batch 32",
                baseline_label="batch 1",
                note="what batching can give on this CPU at best (no HTTP, JSON or queue); the "
                     "server's 32-client gain is measured against this"),
        compare("requests/s at 8 concurrent clients, batching on vs off",
                sdk=on["8"]["requests_per_s"], baseline=off["8"]["requests_per_s"], unit="requests/s",
                sdk_label="batching", baseline_label="no batching"),
        compare("one request at a time: Predictor.predict in-process vs over HTTP (batching off)",
                sdk=1000 / http_ms, baseline=1000 / direct_ms, unit="1/s (median)",
                sdk_label=f"HTTP {http_ms:.1f} ms",
                baseline_label=f"direct {direct_ms:.1f} ms",
                note="ratio < 1: the share of a request spent outside the model"),
        compare("one request at a time: the server's own Predictor.predict call vs the whole request",
                sdk=1000 / http_ms, baseline=1000 / inside_ms, unit="1/s (mean)",
                sdk_label=f"HTTP {http_ms:.1f} ms", baseline_label=f"predict in the server {inside_ms:.1f} ms",
                note="same process and threads: HTTP + JSON + base64 + decode + queue overhead"),
    ]
    notes = [
        f"Model: EfficientNet-Lite0 at {crop} px + {'a tiny random BERT' if ctx.sizes.tiny_text else 'MiniLM'}, "
        f"5 heads; one product (a {2 * crop} px JPEG + title) per request; clients and server share "
        f"the machine's {ctx.threads} threads.",
        "Mean products per forward over the whole run: " + ", ".join(f"{m} {v:.1f}" for m, v in batch_means.items())
        + "; of the batching server per load: " + ", ".join(f"{c} clients {v:.1f}" for c, v in mean_batch_at.items())
        + ".",
        "Latency (p50/p99 ms) and requests/s per clients: " + "; ".join(
            f"{mode} {c}: {r['requests_per_s']:.1f}/s {r['p50_ms']:.0f}/{r['p99_ms']:.0f} ms"
            for mode, rows in measured.items() for c, r in rows.items()) + ".",
        "With batching on, a lone request waits up to --batch-timeout-ms (10 ms) for company.",
    ]
    return result(NAME, TITLE, ctx,
                  settings={"crop": crop, "clients": list(CLIENTS), "modes": {k: list(v) for k, v in modes.items()},
                            "requests_per_client": per_client},
                  metrics={"direct_batch1_ms": direct_ms, "http_batch1_ms": http_ms,
                           "server_predict_batch1_ms": inside_ms, "http": measured, "mean_batch": batch_means,
                           "mean_batch_by_clients": mean_batch_at,
                           "ceiling_products_per_s": {"batch_1": one_by_one, "batch_32": all_at_once}},
                  comparisons=comparisons, notes=notes,
                  size=f"EfficientNet-Lite0 at {crop} px + {'tiny BERT' if s.tiny_text else 'MiniLM'}; "
                       f"{', '.join(str(c) for c in CLIENTS)} clients, max({minimum}, {per_client} x clients) "
                       f"requests each, {repeats} ABAB repeat(s)",
                  noise=f"medians of {repeats} ABAB repeat(s) per load; clients and servers share the "
                        f"machine's {ctx.threads} threads, so a busy machine lowers both sides; batching's "
                        "gain is bounded by the ceiling row measured in the same run")
