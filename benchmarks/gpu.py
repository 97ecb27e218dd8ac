"""6. GPU: measurements 1-4 again on CUDA at batch 64 and 256 in bf16 and fp16, and a profile.

Runs only where ``torch.cuda.is_available()``; elsewhere it records that no GPU was available
(the result still carries the environment block). Inference and the multi-task comparison run
under ``torch.autocast``; training uses the Trainer's ``precision`` option and the same autocast
in the plain loop. ``torch.profiler`` shows where the time of one ``Predictor.predict`` goes.
"""

from __future__ import annotations

from typing import Any

import torch

from .common import (
    Context,
    autocast,
    build_model,
    decoded,
    load_products,
    manifests,
    model_spec,
    not_measurable,
    result,
)

NAME = "gpu"
TITLE = "GPU: inference, multi-task, add-attribute and training on CUDA (bf16/fp16)"
BATCHES = (64, 256)
PRECISIONS = ("bf16", "fp16")


def _profile(ctx: Context, device: torch.device, precision: str, batch_size: int) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    from fashion.predict.predictor import Predictor

    s = ctx.sizes
    products = decoded(load_products(manifests(ctx.catalog(), "test"), limit=batch_size))
    predictor = Predictor(build_model(model_spec(crop=s.infer_crop, text_model=ctx.text_model()),
                                      ctx.seed).to(device))
    with autocast(device, precision):  # type: ignore[arg-type]
        predictor.predict(products, batch_size=batch_size)  # warm up
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            predictor.predict(products, batch_size=batch_size)
            torch.cuda.synchronize(device)
    rows = []
    for event in sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)[:15]:
        rows.append({"op": event.key, "calls": event.count,
                     "self_cuda_ms": round(event.self_device_time_total / 1000, 3),
                     "self_cpu_ms": round(event.self_cpu_time_total / 1000, 3)})
    return rows


def run(ctx: Context) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return result(
            NAME, TITLE, ctx, settings={"batches": list(BATCHES), "precisions": list(PRECISIONS)},
            metrics={"gpu_available": False},
            comparisons=[not_measurable(f"[cuda] {what}", "no CUDA GPU", unit=unit,
                                        target=target)
                         for what, unit, target in (
                             ("Predictor.predict vs hand-written forward", "products/s", 0.95),
                             ("multi-task throughput: one 5-head model vs 5 single-task models",
                              "products/s", 4.5),
                             ("training steps/s: SDK Trainer vs plain PyTorch loop", "steps/s", 0.95))],
            size="nothing: no CUDA GPU", noise="-",
            notes=["No GPU was available on this machine: the CUDA path (device selection, "
                   "autocast bf16/fp16, Trainer precision) was not measured. Run `make bench` on "
                   "a CUDA machine to fill this in."],
        )
    from . import add_attribute, inference, multitask, training

    device = torch.device("cuda", torch.cuda.current_device())
    comparisons: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {"gpu_available": True, "runs": {}}
    for batch_size in BATCHES:
        for precision in PRECISIONS:
            label = f"[cuda b{batch_size} {precision}] "
            key = f"b{batch_size}-{precision}"
            run: dict[str, Any] = {}
            for part, call in (
                ("inference", inference.measure),
                ("multitask", multitask.throughput),
                ("training", training.measure),
            ):
                try:
                    out = call(ctx, device=device, precision=precision, batch_size=batch_size,
                               label=label)
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory at batch 256
                    run[part] = {"error": f"{type(exc).__name__}: {exc}"}
                    continue
                run[part] = out["metrics"]
                comparisons += out.get("comparisons") or [out["comparison"]]
            metrics["runs"][key] = run
            torch.cuda.empty_cache()
    try:
        out = add_attribute.measure(ctx, device=device)
        metrics["add_attribute"] = out["metrics"]
        comparisons += [dict(c, what="[cuda] " + c["what"]) for c in out["comparisons"]]
    except Exception as exc:  # noqa: BLE001
        metrics["add_attribute"] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        metrics["profile_predict_b64_bf16"] = _profile(ctx, device, "bf16", 64)
    except Exception as exc:  # noqa: BLE001
        metrics["profile_predict_b64_bf16"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result(
        NAME, TITLE, ctx,
        settings={"batches": list(BATCHES), "precisions": list(PRECISIONS), "device": str(device),
                  "gpu": torch.cuda.get_device_name(device)},
        metrics=metrics, comparisons=comparisons,
        notes=["Inference runs under torch.autocast, as Predictor(precision=...) does."],
    )
