"""Quantization-aware fine-tuning against plain fine-tuning, judged by the int8-static gate.

``python -m benchmarks.quantization_aware`` (not part of ``make bench``: about an hour on 2
cores in the full profile). The fast_inference benchmark's model, built as it builds it —
ResNet50 trained by :func:`benchmarks.fast_inference.train_backbone` at the profile's sizes
(reused when an earlier run trained it from the same sources), or ``--image
efficientnet_lite0``: its ImageNet backbone with heads trained on cached features, the model
fast_inference then fine-tunes with the last chain below — is
fine-tuned ``--epochs`` more three ways (text frozen, the whole image backbone training):
plainly, plainly with ``batchnorm_statistics = "fixed"`` (quantization-aware training keeps the
statistics of the BatchNorms it folds fixed too), with ``quantization_aware = true``, and
``--epochs`` with fixed statistics followed by ``--epochs`` quantization-aware; each of the five
models is then quantized by
``optimize_static`` (MinMax, per-channel, no fixes, ONNX Runtime; calibrated on the catalog's
validation products) and gated on every split of a **separate** catalog of ``--gate-products``
products (another seed of the same generator), so one row moves a macro-F1 by a fraction of a
point instead of the 1-2 points of the bench's own gate. Prints, per model and attribute, the
fp32 and int8 macro-F1, the gate's delta (int8 against the same bundle's fp32), the label
agreement and the int8 model against the base model's fp32, with the CPU it ran on; writes the
numbers as JSON (``--out``). docs/training.md publishes the full profile's table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import (
    PROFILES,
    Context,
    build_model,
    make_or_reuse_catalog,
    manifests,
    model_spec,
)

VARIANTS = ("base", "plain", "plain, BatchNorm fixed", "quantization-aware",
            "BatchNorm fixed, then quantization-aware")
# each fine-tuned variant: its stages in turn, (batchnorm_statistics, quantization_aware) each
# ``--epochs`` long; "plain" lets the statistics move (what `update` does) whatever the default
STAGES = {
    "plain": [("update", False)],
    "plain, BatchNorm fixed": [("fixed", False)],
    "quantization-aware": [("update", True)],
    "BatchNorm fixed, then quantization-aware": [("fixed", False), ("update", True)],
}


def _norm_statistics(model: Any) -> list[Any]:
    """Copies of the running statistics of the backbones' BatchNorm layers."""
    from fashion.training.runtime import batchnorm_layers

    return [s.detach().clone() for m in batchnorm_layers(model) for s in (m.running_mean, m.running_var)]


def gate(folder: Path, calibration: Sequence[Path], data: Sequence[Path], products: int,
         log: Any) -> dict[str, Any]:
    """int8-static of the bundle at ``folder`` (the asked recipe only) and the gate's scores."""
    from fashion.errors import GateError
    from fashion.predict.optimize import optimize_static

    try:
        report = optimize_static(folder, calibration=calibration, data=data, products=products,
                                 fixes_on_refusal=False, runtime="onnxruntime", batch_size=32,
                                 log=lambda m: log(f"    {m}")).report
    except GateError as exc:
        report = exc.report
    path = report.paths[0]
    return {"rows": report.rows, "passed": path.passed, "fp32": dict(report.reference),
            "int8": dict(path.f1), "delta": dict(path.delta), "agreement": dict(path.agreement)}


def _triple(values: dict[str, float], attrs: Sequence[str], fmt: str = "{:.3f}") -> str:
    return " / ".join(fmt.format(values[a]) for a in attrs)


def table(results: dict[str, dict[str, Any]], attrs: Sequence[str]) -> str:
    """The markdown table docs/training.md publishes."""
    base = results["base"]["fp32"]
    lines = ["| model | fp32 | int8-static (ORT) | int8 - own fp32 (the gate) | label agreement | "
             "int8 - base fp32 |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        verdict = "passed" if r["passed"] else "refused"
        against_base = {a: (r["int8"][a] - base[a]) * 100 for a in attrs}
        lines.append(f"| {name} | {_triple(r['fp32'], attrs)} | {_triple(r['int8'], attrs)} | "
                     f"{_triple(r['delta'], attrs, '{:+.2f}')}: {verdict} | {_triple(r['agreement'], attrs)} | "
                     f"{_triple(against_base, attrs, '{:+.2f}')} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quantization_aware", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--image", default="resnet50",
                        help="image backbone, built as fast_inference builds it: efficientnet_lite0 "
                             "pretrained with heads trained, any other trained end to end (default: resnet50)")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs of each variant")
    parser.add_argument("--variant", dest="variants", action="append", choices=VARIANTS[1:],
                        help="fine-tune only this way (repeatable; default: all four); the base model is always gated")
    parser.add_argument("--lr", type=float, default=1e-4, help="image backbone learning rate (heads: twice)")
    parser.add_argument("--gate-products", type=int, default=2500, help="products of the separate gate catalog")
    parser.add_argument("--gate-seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fashion-bench")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: WORK/quantization_aware.json)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from .common import quiet_libraries

    quiet_libraries()
    import torch

    from fashion.cli.optimize import _export
    from fashion.predict.precision import cpu_record
    from fashion.registry import save_bundle
    from fashion.registry.bundle import load_bundle

    from .fast_inference import (
        ATTRS,
        CALIBRATION_PRODUCTS,
        CONFIGS,
        HEAD_DATASETS,
        fine_tune,
        train_backbone,
        train_heads,
    )

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"{time.perf_counter() - started:6.0f}s {message}", flush=True)

    args.work.mkdir(parents=True, exist_ok=True)
    ctx = Context(sizes=PROFILES[args.profile], out=args.work, work=args.work.resolve(),
                  device=torch.device("cpu"), threads=threads, log=log)
    s = ctx.sizes
    cpu = cpu_record()
    log(f"CPU: {cpu['model']}; flags: {' '.join(cpu['flags']) or 'none'}; {threads} threads")
    spec = model_spec(crop=s.infer_crop, text_model=ctx.text_model(), attributes=ATTRS, image=args.image)
    settings = CONFIGS.get(args.image, {"pretrained": False, "train_backbone": True})  # others: as ResNet50
    spec["backbones"]["image"]["options"] = {"pretrained": settings["pretrained"] and s.fast_pretrained}
    base = build_model(spec)
    if settings["train_backbone"]:
        log(f"base model: {args.image} trained {s.fast_backbone_epochs} epochs at {s.train_crop} px ...")
        train_backbone(ctx, base, args.image)
    else:  # as fast_inference gates it: its (ImageNet) backbone as installed, heads trained
        log(f"base model: {args.image}, heads trained on cached features ...")
        train_heads(ctx, base, args.image)
    gate_catalog = make_or_reuse_catalog(ctx.work, args.gate_products, s.catalog_image_size, args.gate_seed, log)
    data = [m for split in ("train", "val", "test") for m in manifests(gate_catalog, split, HEAD_DATASETS)]
    calibration = manifests(ctx.catalog(), "val", HEAD_DATASETS)
    results: dict[str, dict[str, Any]] = {}
    for variant in ("base", *(args.variants or VARIANTS[1:])):
        slug = variant.replace(", BatchNorm fixed", "-fixed-bn").replace(", then ", "-then-").replace(" ", "-")
        model = load_bundle(save_bundle(base, ctx.work / f"qat-{args.image}-base-copy")).model if variant != "base" else base
        seconds: list[float] = []
        norms_moved = False
        if variant != "base":
            before = _norm_statistics(model)
            for n, (batchnorm, simulated) in enumerate(STAGES[variant]):
                log(f"{variant}: fine-tuning {args.epochs} epochs (lr {args.lr:g}, batchnorm_statistics "
                    f"{batchnorm}, quantization_aware {simulated}) ...")
                model.train()
                seconds += fine_tune(ctx, model, epochs=args.epochs, lr=args.lr, quantization_aware=simulated,
                                     batchnorm=batchnorm, out=ctx.work / "runs" / f"qat-{args.image}-{slug}-{n}")[0]
            after = _norm_statistics(model)
            norms_moved = any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
        folder = ctx.work / f"qat-{args.image}-{slug}"
        shutil.rmtree(folder, ignore_errors=True)
        save_bundle(model, folder)
        _export(folder, ["fp32"])
        log(f"{variant}: int8-static gate on {args.gate_products} separate products ...")
        results[variant] = gate(folder, calibration, data, CALIBRATION_PRODUCTS.get(args.profile, 256),
                                log) | {"epoch_seconds": seconds, "norm_statistics_moved": norms_moved}
        log(f"{variant}: {results[variant]}")
    print()
    print(f"{args.image}, {args.profile} profile, gate on {results['base']['rows']} rows of a separate "
          f"{args.gate_products}-product catalog; macro-F1 per attribute ({' / '.join(ATTRS)}); CPU flags: "
          f"{' '.join(cpu['flags']) or 'none'} ({cpu['model']})")
    print(table(results, ATTRS))
    out = args.out or ctx.work / "quantization_aware.json"
    payload = {"image": args.image, "profile": args.profile, "epochs": args.epochs, "lr": args.lr,
               "variants": list(results),
               "gate_products": args.gate_products, "cpu": cpu, "threads": threads, "results": results}
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nresults: {out}")
    return payload


if __name__ == "__main__":
    main()
