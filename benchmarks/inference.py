"""1. Inference overhead: ``Predictor.predict`` vs a hand-written forward of the same backbones.

The limit is what a careful engineer writes by hand: ``torch.inference_mode``, the timm/HF
modules of the same backbones called directly on the already preprocessed tensors, a per-product
mean, the fusion and the five heads, softmax + top-k. The SDK side is
``Predictor.predict(products)`` on products whose images are already decoded (so it also pays
for cropping, pixel normalization, text cleaning + tokenization and decoding to labels), and
``Predictor.run_batch`` on the very same preprocessed batches (framework overhead only).

The whole path from image files on disk (decode + preprocess + forward) is timed with and
without DataLoader workers, and one un-interleaved pass splits where the time goes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .common import (
    Context,
    Precision,
    autocast,
    build_model,
    compare,
    decoded,
    interleaved,
    load_products,
    manifests,
    median,
    model_spec,
    native_bf16_reason,
    not_measurable,
    paired_ratio,
    result,
    spread,
    sync,
)

NAME = "inference"
TITLE = "Inference overhead: Predictor.predict vs a hand-written forward (the limit)"


def image_function(backbone: Any, channels_last: bool | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The raw network of a built-in image backbone, called without the SDK's wrapper."""
    if hasattr(backbone, "net"):  # efficientnet_lite0 (timm)
        net = backbone.net
        if channels_last:
            return lambda px: net.forward_head(
                net.forward_features(px.contiguous(memory_format=torch.channels_last)), pre_logits=True
            )
        return lambda px: net.forward_head(net.forward_features(px), pre_logits=True)
    if hasattr(backbone, "body"):  # torchvision resnet
        body = backbone.body
        use_cl = backbone.options.channels_last if channels_last is None else channels_last
        if use_cl:
            return lambda px: body(px.contiguous(memory_format=torch.channels_last))
        return body
    return backbone.forward


def hand_written(
    model: Any, device: torch.device, precision: Precision,
    image_fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> Callable[[Sequence[Any]], list[Any]]:
    """A plain ``inference_mode`` forward over SDK-prepared batches (the limit)."""
    image_fns = image_fns or {
        k: image_function(b) for k, b in model.backbones.items() if b.modality == "image"
    }
    heads = list(model.heads.values())

    def forward(batches: Sequence[Any]) -> list[Any]:
        outputs = []
        with torch.inference_mode(), autocast(device, precision):
            for batch in batches:
                size = batch.size
                features: dict[str, torch.Tensor] = {}
                masks: dict[str, torch.Tensor] = {}
                for name, (payload, owner) in batch.inputs.items():
                    key = name.split(":")[0]
                    backbone = model.backbones[key]
                    owner = owner.to(device, non_blocking=True)
                    if payload is None or owner.numel() == 0:
                        features[name] = torch.zeros(size, backbone.output_dim, device=device)
                        masks[name] = torch.zeros(size, dtype=torch.bool, device=device)
                        continue
                    if backbone.modality == "image":
                        values = image_fns[key](payload.to(device, non_blocking=True))
                    else:
                        tokens = {k: v.to(device, non_blocking=True) for k, v in payload.items()}
                        hidden = backbone.encoder(**tokens).last_hidden_state
                        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                        values = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    counts = torch.bincount(owner, minlength=size)
                    summed = torch.zeros(size, values.shape[1], device=device).index_add_(
                        0, owner, values.float()
                    )
                    features[name] = summed / counts.clamp(min=1).unsqueeze(1)
                    masks[name] = counts > 0
                fused = model.fusion(features, masks)
                outputs.append([head(fused).float().softmax(-1).topk(3, dim=-1) for head in heads])
        return outputs

    return forward


def breakdown(model: Any, disk_products: Sequence[Any], batch_size: int,
              device: torch.device, precision: Precision) -> dict[str, float]:
    """Seconds per stage over the same products (one pass, after the timed runs)."""
    from fashion.data.images import load_image

    stages: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - start
        return out

    for i in range(0, len(disk_products), batch_size):
        chunk = disk_products[i:i + batch_size]
        images = timed("decode images", lambda c=chunk: [[load_image(s) for s in p.images] for p in c])
        for view, cropper in model.croppers.items():
            views = timed("crop/resize", lambda cr=cropper, im=images: [
                v.image for imgs in im for img in imgs for v in cr.crop(img)])
            for key, backbone in model.backbones.items():
                spec = model.spec.backbones[key]
                if backbone.modality == "image" and view in spec.views:
                    pixels = timed("pixels to tensor", lambda b=backbone, v=views: b.preprocess(v))
                    fn = image_function(backbone)
                    with torch.inference_mode(), autocast(device, precision):
                        timed("image backbone", lambda f=fn, p=pixels: f(p.to(device)))
        for backbone in model.backbones.values():
            if backbone.modality == "text":
                fields = [p.text_fields() for p in chunk]
                tokens = timed("clean + tokenize text", lambda b=backbone, f=fields: b.preprocess(f))
                with torch.inference_mode(), autocast(device, precision):
                    timed("text backbone", lambda b=backbone, t=tokens: b({k: v.to(device) for k, v in t.items()}))
        batch = model.prepare(decoded(chunk))
        with torch.inference_mode(), autocast(device, precision):
            features, masks = model.encode(batch)
            logits = timed("fusion + heads", lambda f=features, m=masks: model.head_logits(f, m))
        timed("decode to labels", lambda lg=logits: model.decode(lg))
    return {k: round(v, 4) for k, v in stages.items()}


def legacy_image_preprocess(self: Any, inputs: Sequence[Any]) -> torch.Tensor:
    """``ImageBackbone.preprocess`` before the prepare fixes (commit 282e94f): an RGB copy of
    every view and an out-of-place normalize. Kept to measure the fixes against, in one run."""
    import numpy as np

    arrays = [np.asarray(image.convert("RGB"), dtype=np.uint8) for image in inputs]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    return (pixels - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)


@contextlib.contextmanager
def before_prepare_fixes() -> Iterator[None]:
    """Run ``prepare`` as before the fixes: legacy preprocess, images cut in the calling thread."""
    import os

    from fashion import ImageBackbone

    saved, threads = ImageBackbone.preprocess, os.environ.get("FASHION_PREPARE_THREADS")
    ImageBackbone.preprocess = legacy_image_preprocess  # type: ignore[method-assign]
    os.environ["FASHION_PREPARE_THREADS"] = "1"
    try:
        yield
    finally:
        ImageBackbone.preprocess = saved  # type: ignore[method-assign]
        if threads is None:
            os.environ.pop("FASHION_PREPARE_THREADS", None)
        else:
            os.environ["FASHION_PREPARE_THREADS"] = threads


def prepare_before_after(ctx: Context, model: Any, products: Sequence[Any], batch_size: int,
                         repeats: int = 7) -> dict[str, Any]:
    """``model.prepare`` of the same batches before and after the fixes, interleaved."""
    chunks = [products[i:i + batch_size] for i in range(0, len(products), batch_size)]

    def before() -> Any:
        with before_prepare_fixes():
            return [model.prepare(c) for c in chunks]

    ctx.log("  experiment: prepare before/after the fixes (RGB copy, normalize, threaded crops)")
    times = interleaved({"before": before, "after": lambda: [model.prepare(c) for c in chunks]},
                        repeats=repeats, warmup=1)
    old, new = before(), [model.prepare(c) for c in chunks]
    same = all(torch.allclose(a.inputs[k][0], b.inputs[k][0], atol=1e-5)
               for a, b in zip(old, new, strict=True) for k in a.inputs if ":" in k)
    return {
        "ms_per_batch": {k: round(median(v) * 1000 / len(chunks), 2) for k, v in times.items()},
        "speedup": round(paired_ratio(times["after"], times["before"]), 3),
        "pixels_equal_to_1e-5": same,
    }


def memory_format_experiment(ctx: Context, model: Any, batches: Sequence[Any],
                             limit: Callable[[Sequence[Any]], Any], device: torch.device,
                             precision: Precision) -> dict[str, Any]:
    """The limit on today's NHWC-strided pixels vs the same pixels made NCHW-contiguous."""
    import dataclasses

    def contiguous(batch: Any) -> Any:
        inputs = {k: ((p.contiguous() if isinstance(p, torch.Tensor) else p), o)
                  for k, (p, o) in batch.inputs.items()}
        return dataclasses.replace(batch, inputs=inputs)

    nchw = [contiguous(b) for b in batches]
    pixels = next((p for b in batches for k, (p, _) in b.inputs.items() if ":" in k), None)
    ctx.log("  experiment: pixel memory format (NHWC as prepared vs NCHW-contiguous)")
    times = interleaved({"nhwc": lambda: limit(batches), "nchw": lambda: limit(nchw)},
                        repeats=max(1, ctx.sizes.repeats - 1), warmup=1, device=device)
    n = sum(b.size for b in batches)
    return {
        "prepared_pixels_channels_last": bool(
            pixels is not None and pixels.is_contiguous(memory_format=torch.channels_last)),
        "limit_products_per_s": {k: round(n / median(v), 3) for k, v in times.items()},
        "nhwc_speedup_over_nchw": round(paired_ratio(times["nhwc"], times["nchw"]), 4),
    }



def measure(
    ctx: Context, *, device: torch.device, precision: Precision = "fp32",
    batch_size: int | None = None, crop: int | None = None, label: str = "",
) -> dict[str, Any]:
    from fashion.predict.predictor import Predictor

    s = ctx.sizes
    batch_size = batch_size or s.batch_size
    crop = crop or s.infer_crop
    catalog = ctx.catalog()
    sources = manifests(catalog, "test") + manifests(catalog, "train")
    n_mem = batch_size * s.infer_batches
    n_disk = batch_size * s.disk_batches
    disk_products = load_products(sources, limit=max(n_mem, n_disk))
    mem_products = decoded(disk_products[:n_mem])
    disk_products = disk_products[:n_disk]

    spec = model_spec(crop=crop, text_model=ctx.text_model())
    model = build_model(spec, ctx.seed).to(device).eval()
    predictor = Predictor(model)
    batches = [model.prepare(mem_products[i:i + batch_size]) for i in range(0, n_mem, batch_size)]
    limit = hand_written(model, device, precision)

    def sdk_predict() -> Any:
        with autocast(device, precision):
            return predictor.predict(mem_products, batch_size=batch_size)

    def sdk_run_batch() -> Any:
        with autocast(device, precision):
            return [predictor.run_batch(b) for b in batches]

    def sdk_predict_before_fixes() -> Any:
        with before_prepare_fixes():
            return sdk_predict()

    ctx.log(f"  {label}predict vs limit: {n_mem} products, batch {batch_size}, crop {crop}px, {precision}")
    times = interleaved(
        {"limit": lambda: limit(batches), "predict": sdk_predict, "run_batch": sdk_run_batch,
         "predict_before_fixes": sdk_predict_before_fixes},
        repeats=s.repeats, warmup=1, device=device,
    )
    per_s = {k: n_mem / median(v) for k, v in times.items()}

    # the whole path from files on disk, with and without DataLoader workers
    workers = 2
    def disk(num_workers: int) -> Callable[[], Any]:
        def go() -> Any:
            with autocast(device, precision):
                return predictor.predict(disk_products, batch_size=batch_size, num_workers=num_workers)
        return go

    ctx.log(f"  {label}from disk: {n_disk} products, 0 vs {workers} workers")
    disk_times = interleaved(
        {"disk_0_workers": disk(0), f"disk_{workers}_workers": disk(workers)},
        repeats=s.disk_repeats, warmup=0 if ctx.profile == "smoke" else 1, device=device,
    )
    disk_per_s = {k: n_disk / median(v) for k, v in disk_times.items()}

    experiments = {
        "memory_format": (
            memory_format_experiment(ctx, model, batches, limit, device, precision)
            if s.info_experiments else {"skipped": f"not run in the {ctx.profile} profile (an "
                                                "information row; the full profile runs it)"}
        ),
        "prepare_before_after": prepare_before_after(ctx, model, mem_products, batch_size,
                                                     s.prepare_repeats),
    }

    stages = breakdown(model, disk_products[:batch_size * 2], batch_size, device, precision)

    comparisons = [
        compare(f"{label}Predictor.predict (decoded images) vs hand-written forward",
                sdk=per_s["predict"], baseline=per_s["limit"], unit="products/s",
                sdk_label="Predictor.predict", baseline_label="hand-written limit",
                ratio=paired_ratio(times["predict"], times["limit"]), target=0.95,
                note="SDK side also crops, normalizes, tokenizes and decodes labels"),
        compare(f"{label}Predictor.run_batch (same preprocessed batch) vs hand-written forward",
                sdk=per_s["run_batch"], baseline=per_s["limit"], unit="products/s",
                sdk_label="Predictor.run_batch", baseline_label="hand-written limit",
                ratio=paired_ratio(times["run_batch"], times["limit"]), target=0.95),
        compare(f"{label}Predictor.predict after vs before the prepare fixes (same run)",
                sdk=per_s["predict"], baseline=per_s["predict_before_fixes"], unit="products/s",
                sdk_label="after", baseline_label="before",
                ratio=paired_ratio(times["predict"], times["predict_before_fixes"]),
                note="before: an RGB copy per view, out-of-place normalize, crops in one thread"),
        compare(f"{label}from disk: predict with {workers} DataLoader workers vs none",
                sdk=disk_per_s[f"disk_{workers}_workers"], baseline=disk_per_s["disk_0_workers"],
                unit="products/s", sdk_label=f"{workers} workers", baseline_label="0 workers",
                ratio=paired_ratio(disk_times[f"disk_{workers}_workers"], disk_times["disk_0_workers"])),
        compare(f"{label}from disk (decode + preprocess + forward, 0 workers) vs hand-written forward",
                sdk=disk_per_s["disk_0_workers"], baseline=per_s["limit"], unit="products/s",
                sdk_label="predict from files", baseline_label="hand-written limit"),
    ]
    return {
        "settings": {
            "backbones": "efficientnet_lite0 (ImageNet weights) + bert "
                         + ("tiny random 1-layer" if s.tiny_text else "MiniLM-L6 (all-MiniLM-L6-v2)"),
            "fusion": "concat", "heads": "5 x linear", "attributes": list(model.attributes),
            "crop": crop, "batch_size": batch_size, "products_in_memory": n_mem,
            "products_from_disk": n_disk, "images_from_disk": sum(len(p.images) for p in disk_products),
            "repeats": s.repeats, "disk_repeats": s.disk_repeats, "precision": precision,
            "device": str(device), "workers": workers,
        },
        "metrics": {
            "seconds": {k: [round(x, 4) for x in v] for k, v in {**times, **disk_times}.items()},
            "products_per_s": {k: round(v, 3) for k, v in {**per_s, **disk_per_s}.items()},
            "stages_seconds": stages,
            "experiments": experiments,
        },
        "comparisons": comparisons,
    }


def bf16_cell(ctx: Context, products: Sequence[Any], batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``Predictor(precision="bf16")`` (autocast + channels_last) vs fp32 ``Predictor.predict``
    on the same decoded products, interleaved; "not measurable here" without native bf16."""
    from fashion.predict.predictor import Predictor

    what = "Predictor.predict bf16 + channels_last vs fp32 (decoded images)"
    reason = native_bf16_reason() if ctx.device.type == "cpu" else "measured by the gpu row on CUDA"
    if reason is not None:
        return not_measurable(what, reason, unit="products/s", target=None,
                              sdk_label="bf16", baseline_label="fp32"), {"skipped": reason}
    model = build_model(model_spec(crop=ctx.sizes.infer_crop, text_model=ctx.text_model()), ctx.seed).eval()
    fp32, bf16 = Predictor(model), Predictor(model, precision="bf16")
    ctx.log(f"  bf16 + channels_last vs fp32: {len(products)} products, batch {batch_size}")
    times = interleaved({"fp32": lambda: fp32.predict(products, batch_size=batch_size),
                         "bf16": lambda: bf16.predict(products, batch_size=batch_size)},
                        repeats=ctx.sizes.repeats, warmup=1)
    per_s = {k: len(products) / median(v) for k, v in times.items()}
    row = compare(what, sdk=per_s["bf16"], baseline=per_s["fp32"], unit="products/s", sdk_label="bf16",
                  baseline_label="fp32", ratio=paired_ratio(times["bf16"], times["fp32"]),
                  note="native bf16 (avx512_bf16/amx); prediction's precision='auto' picks it here")
    return row, {"products_per_s": {k: round(v, 3) for k, v in per_s.items()},
                 "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()}}


def run(ctx: Context) -> dict[str, Any]:
    out = measure(ctx, device=ctx.device, precision="fp32")
    s = ctx.sizes
    n = s.batch_size * s.infer_batches
    products = decoded(load_products(manifests(ctx.catalog(), "test") + manifests(ctx.catalog(), "train"), limit=n))
    row, detail = bf16_cell(ctx, products, s.batch_size)
    out["comparisons"].append(row)
    out["metrics"]["bf16_channels_last"] = detail
    notes = [
        "Images average about two per product (one to three shots); throughput is per product.",
        "The hand-written limit reuses the model's fusion and head modules (a few small matmuls) "
        "and skips turning probabilities into labels.",
    ]
    e = out["metrics"]["experiments"]
    mf, pe = e["memory_format"], e["prepare_before_after"]
    notes.append(
        f"Memory format: the SDK's prepared pixels are NHWC-strided "
        f"({mf['prepared_pixels_channels_last']}); on this CPU that runs the limit "
        f"{mf['nhwc_speedup_over_nchw']:.2f}x as fast as the same pixels NCHW-contiguous "
        "(what a stack of torchvision ToTensor() outputs gives). Keep it."
        if "skipped" not in mf else f"Memory format experiment: {mf['skipped']}."
    )
    ms = pe["ms_per_batch"]
    notes.append(
        f"Prepare fixes, FashionModel.prepare per batch of {out['settings']['batch_size']} products: "
        f"{ms['before']:.0f} ms before -> {ms['after']:.0f} ms after ({pe['speedup']:.2f}x; "
        f"pixels equal to 1e-5: {pe['pixels_equal_to_1e-5']})."
    )
    return result(
        NAME, TITLE, ctx, settings=out["settings"], metrics=out["metrics"],
        comparisons=out["comparisons"], notes=notes,
        size=f"{n} decoded products per timed call (batch {s.batch_size}, crop {s.infer_crop} px, "
             f"{'tiny BERT' if s.tiny_text else 'MiniLM'}), {s.repeats} interleaved repeats; "
             f"{s.batch_size * s.disk_batches} products from files, {s.disk_repeats} repeats",
        noise=spread(*(out["metrics"]["seconds"][k] for k in ("predict", "limit")),
                     what="predict/limit") + "; a 0.95x target is within a few percent of 1.0x: "
              "a verdict that flips between runs is noise, re-measure with --full",
    )
