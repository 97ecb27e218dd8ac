"""Fast inference: the SDK's optimized paths against a naive fp32 eager forward written by hand.

Two configurations, each image backbone + MiniLM text, one head per attribute: ResNet50
(trained briefly on the synthetic catalog at the profile's train crop, so its activation ranges
and BatchNorm statistics are realistic for the int8 gate; no ResNet50 weights install here) and
EfficientNet-Lite0 (pretrained, heads trained, then in the full profile fine-tuned with BatchNorm
statistics fixed and quantization-aware: :func:`tune_for_int8`). Side by side in one interleaved run, end-to-end
products/s from decoded images and from image files on disk:

- ``naive``: what a user writes by hand: PIL resize, ``ToTensor``-style NCHW fp32 pixels,
  torchvision/timm forward, HF tokenizer + BERT forward with mean pooling, the same fusion and
  heads, softmax + top-k; one thread, no overlap.
- ``sdk fp32``, ``sdk bf16``, ``sdk int8``, ``sdk ort fp32``, ``sdk ort int8``, ``sdk ort
  int8-static`` (the image backbone's calibrated static int8 QDQ graph, ``fashion optimize
  --precision int8-static``), ``sdk openvino fp32``, ``sdk openvino int8-static`` (the same QDQ
  graph on OpenVINO), ``sdk openvino bf16`` (only where native): ``Predictor.predict`` with that
  precision/runtime (prefetch overlaps preparation).
- ``hand-written fp32``: the SDK's own prepare + a hand-written forward (the limit the SDK's fp32
  predict is held to, 0.95x).

Accuracy: the accuracy gate (``fashion.predict.gate.run_gate``) on the catalog's validation rows:
label agreement with fp32 eager and the macro-F1 delta per attribute.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .common import (
    DATASETS,
    Context,
    build_model,
    compare,
    dataset_config,
    decoded,
    interleaved,
    load_products,
    manifest,
    manifests,
    median,
    model_spec,
    native_bf16_reason,
    not_measurable,
    paired_ratio,
    result,
    spread,
    write_subsample,
)
from .inference import hand_written

NAME = "fast_inference"
TITLE = "Fast inference: optimized paths (bf16, int8, ONNX Runtime) vs naive fp32 eager"
CONFIGS = {"resnet50": {"pretrained": False, "target": 5.0, "train_backbone": True},
           "efficientnet_lite0": {"pretrained": True, "target": 4.0, "train_backbone": False, "tune": True}}
# EfficientNet-Lite0's fine-tuning before the int8 gate (profile's ``fast_tune_epochs`` per stage,
# text frozen): BatchNorm statistics fixed, then quantization-aware. The chain that passed the
# int8-static gate on a separate 1,851-row catalog (benchmarks.quantization_aware, docs/training.md)
# where its heads-only model was refused
TUNE_STAGES = (("fixed", False), ("update", True))
TUNE_LR = 1e-4
CALIBRATION_PRODUCTS = {"smoke": 16, "quick": 128, "full": 256}
ATTRS = ("category", "color", "pattern")
HEAD_DATASETS = DATASETS[:2]  # categories, colors_patterns: the datasets labeling ATTRS
PATHS = {"sdk fp32": ("fp32", "torch"), "sdk bf16": ("bf16", "torch"), "sdk int8": ("int8", "torch"),
         "sdk ort fp32": ("fp32", "onnxruntime"), "sdk ort int8": ("int8", "onnxruntime"),
         "sdk ort int8-static": ("int8-static", "onnxruntime"),
         "sdk openvino fp32": ("fp32", "openvino"), "sdk openvino bf16": ("bf16", "openvino"),
         "sdk openvino int8-static": ("int8-static", "openvino")}
GATE_KEY = {k: f"{r}:{p}" for k, (p, r) in PATHS.items() if k != "sdk fp32"}


def naive(model: Any, crop: int) -> Callable[[Sequence[Any], int], list[Any]]:
    """A plain fp32 eager NCHW pipeline over the model's own weights, written by hand."""
    import numpy as np
    from PIL import Image

    image_backbone = model.backbones["image"]
    net = image_backbone.body if hasattr(image_backbone, "body") else None
    timm_net = image_backbone.net if hasattr(image_backbone, "net") else None
    text = model.backbones["text"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    heads = list(model.heads.values())

    def image_features(pixels: torch.Tensor) -> torch.Tensor:
        if net is not None:
            return net(pixels)  # torchvision resnet body: pooled features, NCHW fp32
        return timm_net.forward_head(timm_net.forward_features(pixels), pre_logits=True)

    def run(products: Sequence[Any], batch_size: int) -> list[Any]:
        out = []
        with torch.inference_mode():
            for i in range(0, len(products), batch_size):
                chunk = products[i:i + batch_size]
                arrays, owner = [], []
                for row, p in enumerate(chunk):
                    for source in p.images:
                        img = source if hasattr(source, "convert") else Image.open(source)
                        img = img.convert("RGB").resize((crop, crop), Image.BILINEAR)
                        arrays.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
                        owner.append(row)
                pixels = (torch.stack(arrays).float() / 255 - mean) / std
                values = image_features(pixels)
                idx = torch.tensor(owner)
                img = torch.zeros(len(chunk), values.shape[1]).index_add_(0, idx, values)
                counts = torch.bincount(idx, minlength=len(chunk))
                img = img / counts.clamp(min=1).unsqueeze(1)
                texts = [" ".join(t for t in (p.title, p.description, p.brand) if t) for p in chunk]
                tokens = text.tokenizer(texts, padding=True, truncation=True, max_length=64,
                                        return_tensors="pt")
                hidden = text.encoder(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).float()
                txt = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                fused = model.fusion({"image:full": img, "text": txt},
                                     {"image:full": counts > 0, "text": mask.sum((1, 2)) > 0})
                out.append([h(fused).softmax(-1).topk(3, dim=-1) for h in heads])
        return out

    return run


def active_paths(keep: Sequence[str] | None = None) -> dict[str, tuple[str, str]]:
    """The optimized paths to measure (``keep``: the profile's subset, else all): bf16 only where
    the CPU computes it natively, OpenVINO only where its extra is installed."""
    import importlib.util

    from fashion.model.precision import cpu_bf16_native

    openvino = importlib.util.find_spec("openvino") is not None
    return {k: (p, r) for k, (p, r) in PATHS.items()
            if (p != "bf16" or cpu_bf16_native()) and (r != "openvino" or openvino)
            and (keep is None or k in keep)}


def train_backbone(ctx: Context, model: Any, image: str) -> dict[str, float]:
    """Train the image backbone, fusion and heads end to end (text frozen) for a few epochs at
    the profile's train crop on the catalog's train split, then load the weights into ``model``
    (same spec at the inference crop: the backbone pools globally). Returns the validation
    macro-F1 per attribute."""
    spec = model_spec(crop=ctx.sizes.train_crop, text_model=ctx.text_model(), attributes=ATTRS, image=image)
    spec["backbones"]["image"]["options"] = {"pretrained": False}

    def train() -> dict[str, float]:
        torch.manual_seed(ctx.seed)
        trained = build_model(spec)
        trained.load_state_dict(model.state_dict())
        _, f1 = fine_tune(ctx, trained, epochs=ctx.sizes.fast_backbone_epochs, lr=1e-3, quantization_aware=False,
                          batchnorm="auto", out=ctx.work / "runs" / f"fast-backbone-{image}")
        model.load_state_dict(trained.state_dict())
        return f1

    return _cached(ctx, _trained_key(ctx, spec, model), model, image, train)


def tune_for_int8(ctx: Context, model: Any, image: str, spec: dict[str, Any]) -> dict[str, float]:
    """The pretrained backbone's model as the int8 gate sees it after a team fine-tunes for
    int8: heads trained on cached features (:func:`train_heads`), then ``fast_tune_epochs``
    with BatchNorm statistics fixed and ``fast_tune_epochs`` quantization-aware
    (:data:`TUNE_STAGES`; text frozen, the whole image backbone training). Cached like
    :func:`train_backbone`. Returns the validation macro-F1 per attribute after the last stage."""
    epochs = ctx.sizes.fast_tune_epochs

    def train() -> dict[str, float]:
        train_heads(ctx, model, image)  # its freeze (backbones) holds for that fit only
        f1: dict[str, float] = {}
        for n, (batchnorm, simulated) in enumerate(TUNE_STAGES):
            ctx.log(f"    fine-tuning {epochs} epochs (batchnorm_statistics = {batchnorm}, "
                    f"quantization_aware = {str(simulated).lower()}) ...")
            model.train()
            _, f1 = fine_tune(ctx, model, epochs=epochs, lr=TUNE_LR, quantization_aware=simulated,
                              batchnorm=batchnorm, out=ctx.work / "runs" / f"fast-tune-{image}-{n}")
        return f1

    tuned = {"spec": spec, "tune": {"stages": TUNE_STAGES, "epochs": epochs, "lr": TUNE_LR}}
    return _cached(ctx, _trained_key(ctx, tuned, model), model, image, train)


def fine_tune(ctx: Context, model: Any, *, epochs: int, lr: float, quantization_aware: bool,
              out: Path, batchnorm: str = "update") -> tuple[list[float], dict[str, float]]:
    """``epochs`` more of a model's training on the heads' datasets (text frozen), the image
    backbone's learning rate ``lr`` and the heads' twice that, with that
    ``batchnorm_statistics`` and ``quantization_aware``. Returns the seconds of each epoch and
    the validation macro-F1 per attribute."""
    from fashion.training import OptimizerConfig, TrainConfig, Trainer

    catalog = ctx.catalog()
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(
        datasets=_train_datasets(ctx, catalog),
        validation=[dataset_config(catalog, d, "val", name=f"{d}-val") for d in HEAD_DATASETS],
        epochs=epochs, batch_size=16, freeze=["text-backbone"],
        optimizer=OptimizerConfig(lr_head=2 * lr, lr_backbone=lr), output_dir=out,
        save_bundle=False, progress=False, device="cpu", precision="fp32", seed=ctx.seed,
        verify_images=False, quantization_aware=quantization_aware,
        batchnorm_statistics=batchnorm,  # type: ignore[arg-type]
    )
    result = Trainer(model, config).fit()
    model.eval()
    evaluation = result.evaluation
    return ([round(float(entry["seconds"]), 1) for entry in result.history],
            {a: round(m.macro_f1, 4) for a, m in (evaluation.attributes.items() if evaluation else ())})


def _cached(ctx: Context, key: str, model: Any, image: str, train: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``train()`` ``model`` in place and keep its weights and validation macro-F1 under
    ``key``; a later run with the same key loads them instead."""
    cached = ctx.work / "fast-backbone-trained" / key
    if (cached / "model.safetensors").is_file() and (cached / "f1.json").is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(cached / "model.safetensors"))
        model.eval()
        ctx.log(f"    reusing the {image} an earlier run trained with the same SDK sources, catalog, "
                f"sizes and seed ({cached})")
        return dict(json.loads((cached / "f1.json").read_text()))
    f1 = train()
    model.eval()
    _save_trained(cached, model, f1)
    return f1


UNTRAINED = ("cli", "demo", "serve", "attributes", "search", "predict")
"""Packages above ``fashion.training`` that training never runs: a change there keeps the
trained backbone (the layers contract guarantees training cannot import them)."""


def trained_sources() -> list[tuple[str, Path]]:
    """The SDK's sources the trained backbone depends on, by their name in the package. Read
    from the installed package's layout, not resolved: an editable install links ``plugins/``,
    ``heads/`` and ``registry/`` into it from their own folders."""
    import fashion

    root = Path(fashion.__file__).parent
    return sorted((path.relative_to(root).as_posix(), path) for path in root.rglob("*.py")
                  if "__pycache__" not in path.parts and path.relative_to(root).parts[0] not in UNTRAINED)


def _trained_key(ctx: Context, spec: dict[str, Any], model: Any) -> str:
    """What the briefly trained backbone depends on: the sources of every package training can
    run (the model, training, plugins, data... any change there retrains; :data:`UNTRAINED`
    left out), the spec, the profile's sizes, the catalog, the seed and torch; a rerun after a
    change to prediction alone reuses the weights (the training is a third of the quick row and
    15 minutes of the full one)."""
    digest = hashlib.sha256()
    for name, path in trained_sources():
        digest.update(name.encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps({"spec": spec, "sizes": repr(ctx.sizes), "seed": ctx.seed,
                              "catalog": str(ctx.catalog().resolve()), "torch": torch.__version__,
                              "state": sorted(model.state_dict())}, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _save_trained(folder: Path, model: Any, f1: dict[str, float]) -> None:
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    (tmp / "f1.json").write_text(json.dumps(f1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # complete or absent: an interrupted run leaves no half-written weights


def _train_datasets(ctx: Context, catalog: Path) -> list[Any]:
    """The heads' train split per dataset: all rows, or ``fast_head_rows`` of each (one subsample
    file per size, shared by every model of the run)."""
    from fashion.training import DatasetConfig

    rows = ctx.sizes.fast_head_rows
    if rows is None:
        return [dataset_config(catalog, d, "train", name=d) for d in HEAD_DATASETS]
    return [DatasetConfig(name=d, path=write_subsample(manifest(catalog, d, "train"),
                                                       ctx.work / f"fast-heads-{rows}" / f"{d}.csv", rows))
            for d in HEAD_DATASETS]


def train_heads(ctx: Context, model: Any, image: str) -> dict[str, float]:
    """Head-only training on cached features of the catalog's train split (the backbones keep
    their weights), so the accuracy gate compares trained classifiers, not random ones. Returns
    the validation macro-F1 per attribute of the kept epoch."""
    from fashion.training import OptimizerConfig, TrainConfig, Trainer

    catalog = ctx.catalog()
    rows = ctx.sizes.fast_head_rows
    out = ctx.work / "runs" / f"fast-heads-{image}"
    shutil.rmtree(out, ignore_errors=True)
    datasets = _train_datasets(ctx, catalog)
    config = TrainConfig(
        datasets=datasets,
        validation=[dataset_config(catalog, d, "val", name=f"{d}-val") for d in HEAD_DATASETS],
        epochs=ctx.sizes.fast_head_epochs, batch_size=32, freeze=["backbones"],
        cache_dir=ctx.work / f"fast-heads-cache-{image}-{ctx.sizes.infer_crop}-{rows or 'all'}",
        optimizer=OptimizerConfig(lr_head=2e-3, lr_backbone=0.0), output_dir=out,
        save_bundle=False, progress=False, device="cpu", precision="fp32", seed=ctx.seed,
        verify_images=False,
    )
    trained = Trainer(model, config).fit()
    model.eval()
    evaluation = trained.evaluation
    return {a: round(m.macro_f1, 4) for a, m in (evaluation.attributes.items() if evaluation else ())}


def quantize_static(ctx: Context, folder: Any, calibration: Sequence[Any]) -> dict[str, Any]:
    """``fashion optimize --precision int8-static`` on the bundle, calibrated on the validation
    manifests: what it recorded (recipe, fix, calibration, speeds) or that it was refused."""
    from fashion.errors import GateError
    from fashion.predict.optimize import optimize_static

    try:
        result = optimize_static(folder, calibration=calibration, data=calibration,
                                 products=CALIBRATION_PRODUCTS.get(ctx.profile, 256),
                                 fixes_on_refusal=ctx.sizes.fast_static_fixes,
                                 batch_size=ctx.sizes.batch_size, log=lambda m: ctx.log(f"    {m}"))
    except GateError as exc:
        ctx.log(f"    int8-static refused: {exc}")
        return {"validated": [], "refused": str(exc)}
    return {"validated": result.report.validated, "fix": result.attempts[-1][0],
            "recipes": [fix for fix, _ in result.attempts], "speeds": result.speeds,
            "runtime": result.runtime, "calibration": result.calibration, "report": result.report}


LEARNED_F1 = 0.3  # mean validation macro-F1 below which the gated model predicts near chance


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def measure_config(ctx: Context, image: str, settings: dict[str, Any]) -> dict[str, Any]:
    from fashion import Predictor
    from fashion.cli.optimize import _export
    from fashion.predict.gate import run_gate
    from fashion.registry import save_bundle
    from fashion.registry.bundle import load_bundle

    s = ctx.sizes
    crop, batch = s.infer_crop, s.batch_size
    spec = model_spec(crop=crop, text_model=ctx.text_model(), attributes=ATTRS, image=image)
    # the image backbone's weights: ImageNet where installable (EfficientNet-Lite0, full runs),
    # else random; the text backbone always loads its encoder (MiniLM, or quick's tiny BERT)
    spec["backbones"]["image"]["options"] = {"pretrained": settings["pretrained"] and s.fast_pretrained}
    model = build_model(spec)
    if settings["train_backbone"] and s.fast_backbone_epochs:
        ctx.log(f"  training {image} end to end at {s.train_crop} px (text frozen) so the int8 gate "
                "sees realistic activations ...")
        head_f1 = train_backbone(ctx, model, image)
    elif settings["train_backbone"]:
        ctx.log(f"  {image} not trained in this profile (fast_backbone_epochs = 0): speed only")
        head_f1 = {}
    elif settings.get("tune") and s.fast_tune_epochs:
        ctx.log(f"  training the heads, then fine-tuning {image} at {crop} px (text frozen) "
                f"{s.fast_tune_epochs} epochs with BatchNorm statistics fixed and {s.fast_tune_epochs} "
                "quantization-aware, as a team fine-tunes for int8 ...")
        head_f1 = tune_for_int8(ctx, model, image, spec)
    else:
        ctx.log("  training the heads (head-only, cached features) so the gate scores trained ones ...")
        head_f1 = train_heads(ctx, model, image)
    ctx.log(f"    validation macro-F1: {head_f1}")
    paths = active_paths(s.fast_paths)
    folder = ctx.work / f"fast-{image}"
    shutil.rmtree(folder, ignore_errors=True)
    save_bundle(model, folder)
    _export(folder, ["fp32", *(["int8"] if "sdk ort int8" in paths else [])])
    val = manifests(ctx.catalog(), "val")
    why = "the model predicts near chance" if head_f1 else "the model is not trained in this profile"
    static = {"validated": [], "refused": f"not gated: {why}"}
    if _mean(head_f1) >= LEARNED_F1:  # a gate on a near-chance model says nothing about int8
        static = quantize_static(ctx, folder, val[:2])
    else:
        ctx.log(f"    int8-static {static['refused']}")
    if not static["validated"]:  # refused (the graph left the bundle) or not gated
        paths = {k: v for k, v in paths.items() if v[0] != "int8-static"}
    bundle = load_bundle(folder)
    n = 2 * batch
    disk = load_products(val, limit=n)
    memory = decoded(disk)
    predictors = {k: Predictor(bundle, precision=p, runtime=r) for k, (p, r) in paths.items()}  # type: ignore[arg-type]
    baseline = naive(bundle.model, crop)
    hw = hand_written(bundle.model, torch.device("cpu"), "fp32")

    def sdk(key: str, items: Sequence[Any]) -> Callable[[], Any]:
        return lambda: predictors[key].predict(items, batch_size=batch)

    def calls(items: Sequence[Any]) -> dict[str, Callable[[], Any]]:
        out: dict[str, Callable[[], Any]] = {"naive": lambda: baseline(items, batch)}
        out |= {k: sdk(k, items) for k in paths}
        out["hand-written fp32"] = lambda: hw(
            [bundle.model.prepare(items[i:i + batch]) for i in range(0, len(items), batch)])
        return out

    # warm-up: every path once on one batch (first-call costs: sessions, kernel selection)
    times = interleaved(calls(memory), repeats=s.fast_repeats, warmup=1, warmup_calls=calls(memory[:batch]))
    disk_candidates = {k: call for k, call in calls(disk).items() if k != "hand-written fp32"}
    disk_times = interleaved(disk_candidates, repeats=s.fast_disk_repeats, warmup=0)
    # the gate scores every validation and test row of the two datasets (a label flip moves
    # macro-F1 by well under a point only on a few hundred rows); where it reads the rows
    # optimize_static's gate read (validation only), the int8-static verdicts are that gate's
    reused = {} if s.fast_gate_test or "report" not in static else {p.key: p for p in static["report"].paths}
    gate = run_gate(bundle, [GATE_KEY[k] for k in paths if k in GATE_KEY and GATE_KEY[k] not in reused],
                    data=[*val[:2], *(manifests(ctx.catalog(), "test", HEAD_DATASETS) if s.fast_gate_test else [])],
                    batch_size=batch)
    scores = {p.key: p for p in gate.paths} | reused
    per_s = {k: n / median(v) for k, v in times.items()}
    disk_per_s = {k: n / median(v) for k, v in disk_times.items()}
    ratios = {k: paired_ratio(times[k], times["naive"]) for k in paths}
    disk_ratios = {k: paired_ratio(disk_times[k], disk_times["naive"]) for k in paths}
    validated = [k for k in paths if k == "sdk fp32" or scores[GATE_KEY[k]].passed]
    best = max(validated, key=lambda k: ratios[k])
    return {
        "products": n, "per_s": per_s, "disk_per_s": disk_per_s, "ratios": ratios,
        "disk_ratios": disk_ratios, "best": best, "validated": validated,
        "sdk_vs_hand_written": paired_ratio(times["sdk fp32"], times["hand-written fp32"]),
        "gate": {k: v.to_dict() for k, v in scores.items()}, "gate_rows": gate.rows,
        "int8_static": {k: v for k, v in static.items() if k != "report"},
        "static_vs_ort_fp32": {k: paired_ratio(times[k], times["sdk ort fp32"]) for k in paths
                               if paths[k][0] == "int8-static"},
        "reference_f1": gate.reference, "target": settings["target"], "head_val_macro_f1": head_f1,
        "paths": list(paths),
        "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "disk_seconds": {k: [round(x, 4) for x in v] for k, v in disk_times.items()},
    }


def run(ctx: Context) -> dict[str, Any]:
    from fashion.model.precision import cpu_bf16_native
    from fashion.predict.precision import cpu_record

    metrics: dict[str, Any] = {}
    comparisons = []
    for image, settings in CONFIGS.items():
        ctx.log(f"[{NAME}] {image} + MiniLM ...")
        m = metrics[image] = measure_config(ctx, image, settings)
        mean_f1 = _mean(m["head_val_macro_f1"])
        learned = mean_f1 >= LEARNED_F1
        uninformative = (
            f"the model predicts near chance (mean validation macro-F1 {mean_f1:.2f} "
            f"< {LEARNED_F1} after this profile's short training), so agreement with fp32 says little "
            "about int8 error; the full profile trains it longer") if m["head_val_macro_f1"] else (
            "the model is not trained in this profile (two epochs left it near chance, mean "
            "validation macro-F1 0.12 on both CPUs measured, and such a gate says nothing about int8 "
            "error); the full profile trains it 4 epochs and gates it")
        for key in m["paths"]:
            gate = m["gate"].get(GATE_KEY.get(key, ""), {})
            worst = min(gate.get("f1_delta_points", {}).values(), default=0.0)
            agreement = min(gate.get("agreement", {}).values(), default=1.0)
            note = (f"from files {m['disk_ratios'][key]:.2f}x naive; worst macro-F1 delta "
                    f"{worst:+.2f} pts, min label agreement {agreement:.3f}"
                    + ("" if key == "sdk fp32" or gate.get("passed") else "; REFUSED by the gate"))
            if key in m["static_vs_ort_fp32"]:
                note += f"; {m['static_vs_ort_fp32'][key]:.2f}x ORT fp32 (the int8 kernels' gain on this CPU)"
            if not learned and key == m["best"]:
                note += f"; validated by an uninformative gate: {uninformative}"
            if key == "sdk fp32" and "sdk bf16" not in m["paths"]:  # the bf16 cell, where it cannot run
                comparisons.append(not_measurable(
                    f"{image}: sdk bf16 (+channels_last) vs naive fp32 eager (decoded images)",
                    str(native_bf16_reason()), unit="products/s", target=None,
                    sdk_label="sdk bf16", baseline_label="naive"))
            comparisons.append(compare(
                f"{image}: {key} vs naive fp32 eager (decoded images)",
                sdk=m["per_s"][key], baseline=m["per_s"]["naive"], unit="products/s",
                sdk_label=key, baseline_label="naive", ratio=m["ratios"][key],
                target=settings["target"] if key == m["best"] else None, note=note))
        worst_all = min((d for k in m["validated"] if k in GATE_KEY
                         for d in m["gate"][GATE_KEY[k]]["f1_delta_points"].values()), default=0.0)
        what = f"{image}: worst macro-F1 delta of the best validated path ({m['best']})"
        comparisons.append(compare(
            what, sdk=worst_all / 100, baseline=0.0, unit="points", kind="delta", target=-0.005,
            note=f"gate on {m['gate_rows']} validation rows vs fp32 eager") if learned else not_measurable(
            what, uninformative, unit="points", target=-0.005, kind="delta",
            sdk_label=m["best"], baseline_label="fp32 eager"))
        comparisons.append(compare(
            f"{image}: SDK fp32 predict vs its hand-written forward (same prepare)",
            sdk=m["per_s"]["sdk fp32"], baseline=m["per_s"]["hand-written fp32"],
            unit="products/s", ratio=m["sdk_vs_hand_written"], target=0.95))
    s = ctx.sizes
    notes = [
        f"CPU computes bf16 natively: {cpu_bf16_native()} (without it bf16 is emulated and slow; "
        "Predictor(precision='auto') then stays fp32).",
        (f"ResNet50 (no ResNet50 weights are installable here) is trained end to end for "
         f"{ctx.sizes.fast_backbone_epochs} epochs at {s.train_crop} px on the catalog (text "
         "frozen) before it is quantized and gated, so its activation ranges and BatchNorm "
         "statistics are a trained network's; " if s.fast_backbone_epochs else
         "ResNet50 is not trained in this profile (random weights: its speed rows only; the full "
         "profile trains and gates it); ")
        + "EfficientNet-Lite0 and MiniLM are pretrained; Lite0's heads are trained head-only"
        + (f", then the model (text frozen) is fine-tuned {s.fast_tune_epochs} epochs with BatchNorm "
           f"statistics fixed and {s.fast_tune_epochs} quantization-aware at {s.infer_crop} px, as a "
           "team fine-tunes for int8 (its heads-only model was refused by the int8 gate)"
           if s.fast_tune_epochs else " (not fine-tuned in this profile)")
        + ". Teams with real weights pass weights_path.",
        f"int8-static: QDQ, per-channel int8 weights, uint8 activations calibrated on "
        f"{CALIBRATION_PRODUCTS.get(ctx.profile, 256)} validation products through the real "
        "croppers; 7-bit weights (reduce_range) where the CPU has no VNNI; "
        + ("after a refusal the standard fixes are tried (first conv and last block fp32, "
           "per-tensor weights, percentile and entropy calibration, then the most sensitive "
           "convolutions kept fp32). " if s.fast_static_fixes else
           "MinMax only (this profile skips the fixes: at its gate size one row moves a delta by "
           "about a point, and the full profile tries them). ")
        + "CPU flags: "
        f"{' '.join(cpu_record()['flags']) or 'none'} ({cpu_record()['model']}).",
        *([] if cpu_bf16_native() else [
            "sdk bf16 is not timed or gated: without native bf16 it is emulated (slower than fp32, "
            "over an hour for this run at 224 px) and precision='auto' never picks it here."]),
        "The target applies to the fastest validated path of each configuration.",
        f"A model that predicts near chance (mean validation macro-F1 < {LEARNED_F1}: quick's "
        "ResNet50) is not int8-gated (such a gate says nothing); its int8-static path is left out.",
        *([] if cpu_record()["flags"] and set(cpu_record()["flags"]) & {"avx512_vnni", "avx_vnni", "amx_int8"} else [
            "This CPU has no VNNI: int8 convolutions run on AVX2 (vpmaddubsw, 7-bit weights), which "
            "gains less over fp32 than VNNI does; the int8-static/ORT-fp32 ratio in each row's note "
            "is what this CPU gives."]),
    ]
    noise = "; ".join(
        spread(m["seconds"][m["best"]], m["seconds"]["naive"], f"{image} {m['best']}/naive")
        for image, m in metrics.items())
    return result(NAME, TITLE, ctx, settings={"crop": s.infer_crop, "batch_size": s.batch_size,
                                              "repeats": s.fast_repeats, "disk_repeats": s.fast_disk_repeats,
                                              "head_train_rows_per_dataset": s.fast_head_rows or "all",
                                              "gate_rows": "validation + test" if s.fast_gate_test else "validation",
                                              "head_epochs": s.fast_head_epochs,
                                              "catalog_products": s.catalog_products,
                                              "attributes": list(ATTRS)},
                  metrics=metrics, comparisons=comparisons, notes=notes,
                  size=f"{2 * s.batch_size} decoded products per timed call (batch {s.batch_size}, crop "
                       f"{s.infer_crop} px), {s.fast_repeats} interleaved repeats ({s.fast_disk_repeats} from "
                       f"files); heads trained {s.fast_head_epochs} epochs on {s.fast_head_rows or 'all'} train "
                       f"rows per dataset; gate on the {s.catalog_products}-product catalog's validation"
                       + (" and test rows" if s.fast_gate_test else " rows"),
                  noise=noise + "; the gate's macro-F1 deltas move by one validation row's worth")
