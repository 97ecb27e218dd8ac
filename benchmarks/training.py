"""4. Training overhead: the SDK Trainer's steps/s vs a plain PyTorch loop, same model and batches.

Both sides start from the same weights, read the same batches (the proportional sampler's
schedule for epoch 0, one dataset per step), prepare them in the main process with
``model.prepare`` (decode, crop, normalize, tokenize), run forward + masked cross-entropy on the
heads that batch labels, backward, clip gradients to norm 1 and take an AdamW step. The
Trainer's steps are timed from its per-step callback; setup (reading and checking manifests) is
excluded on both sides. Runs alternate Trainer / plain loop for a few rounds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .common import (
    Context,
    Precision,
    autocast,
    build_model,
    compare,
    dataset_config,
    median,
    model_spec,
    ratio_spread,
    result,
    sync,
)

NAME = "training"
TITLE = "Training overhead: SDK Trainer vs a plain PyTorch loop"
DATASETS = ("categories", "colors_patterns", "sleeves")


def _trainer_intervals(model: Any, state: dict[str, torch.Tensor], config: Any,
                       device: torch.device) -> list[float]:
    from fashion.training import Trainer

    model.load_state_dict(state)
    stamps: list[float] = []

    def tick(_: Any) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    Trainer(model, config, callbacks=[tick]).fit()
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def _plain_intervals(model: Any, state: dict[str, torch.Tensor], datasets: Sequence[Any],
                     steps: Sequence[Any], device: torch.device, precision: Precision,
                     lr: float) -> list[float]:
    """The loop a team writes by hand: no sampler, loss combiner, schedule or bookkeeping."""
    model.load_state_dict(state)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and precision == "fp16" else None
    stamps: list[float] = []
    for step in steps:
        for d, rows in step:
            data = datasets[d]
            batch = model.prepare([data.products[i] for i in rows]).to(device)
            index = torch.as_tensor(rows)
            with autocast(device, precision):
                logits = model(batch, data.attributes)
                loss = torch.zeros((), device=device)
                for a in data.attributes:
                    target, mask = (x.index_select(0, index).to(device) for x in data.targets[a])
                    if bool(mask.any()):
                        loss = loss + F.cross_entropy(logits[a][mask].float(), target[mask])
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        sync(device)
        stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def measure(
    ctx: Context, *, device: torch.device, precision: Precision = "fp32",
    batch_size: int | None = None, crop: int | None = None, label: str = "",
) -> dict[str, Any]:
    from fashion.training import (
        OptimizerConfig,
        ScheduleConfig,
        TrainConfig,
        get_sampler,
        label_normalizers,
        load_dataset,
    )

    s = ctx.sizes
    batch_size = batch_size or s.batch_size
    crop = crop or s.train_crop
    catalog = ctx.catalog()
    model = build_model(model_spec(crop=crop, text_model=ctx.text_model()), ctx.seed).to(device)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    lr = 1e-4
    total = s.train_warmup + s.train_steps + 1  # n steps give n-1 intervals
    config = TrainConfig(
        datasets=[dataset_config(catalog, d, "train", name=d) for d in DATASETS],
        val_fraction=0.0, epochs=1, max_steps=total, batch_size=batch_size,
        optimizer=OptimizerConfig(lr_backbone=lr, lr_head=lr),
        schedule=ScheduleConfig(warmup_steps=0, cosine=False),
        save_bundle=False, progress=False, device=str(device), precision=precision,
        output_dir=ctx.work / "runs" / "training-overhead", seed=ctx.seed,
    )
    normalizers = label_normalizers(model)
    datasets = [load_dataset(d, model, normalizers=normalizers) for d in config.datasets]
    for data in datasets:
        data.encode(model)
    schedule = get_sampler(config.sampler).schedule([len(d) for d in datasets], batch_size,
                                                    epoch=0, seed=config.seed)[:total]

    ctx.log(f"  {label}{s.train_rounds} rounds x {s.train_steps} timed steps (+{s.train_warmup} warmup), "
            f"batch {batch_size}, crop {crop}px, {precision}")
    sdk: list[float] = []
    plain: list[float] = []
    rounds = []
    for round_ in range(s.train_rounds):
        order = ("sdk", "plain") if round_ % 2 == 0 else ("plain", "sdk")
        got: dict[str, list[float]] = {}
        for side in order:
            if side == "sdk":
                got[side] = _trainer_intervals(model, state, config, device)[s.train_warmup:]
            else:
                got[side] = _plain_intervals(model, state, datasets, schedule, device, precision, lr)[s.train_warmup:]
        sdk += got["sdk"]
        plain += got["plain"]
        rounds.append({k: [round(x, 4) for x in v] for k, v in got.items()})
    sdk_rate = 1.0 / median(sdk)
    plain_rate = 1.0 / median(plain)
    per_round = [median(r["plain"]) / median(r["sdk"]) for r in rounds]
    # step i of both sides trains on the same batch: pair them
    per_step = [p / t for t, p in zip(sdk, plain, strict=True) if t > 0]
    comparison = compare(
        f"{label}training steps/s: SDK Trainer vs plain PyTorch loop", sdk=sdk_rate,
        baseline=plain_rate, unit="steps/s", sdk_label="Trainer", baseline_label="plain loop",
        ratio=median(per_step), target=0.95,
        note="ratio: median over paired steps (same batch) of plain seconds / Trainer seconds",
    )
    return {
        "settings": {
            "backbones": "efficientnet_lite0 (ImageNet) + bert "
                         + ("tiny random 1-layer" if s.tiny_text else "MiniLM-L6") + ", all trainable",
            "fusion": "concat", "heads": "5 x linear", "crop": crop, "batch_size": batch_size,
            "precision": precision, "device": str(device), "warmup_steps": s.train_warmup,
            "timed_steps_per_round": s.train_steps, "rounds": s.train_rounds,
            "data_loading": "main process (num_workers=0) on both sides",
        },
        "metrics": {
            "steps_per_s": {"trainer": round(sdk_rate, 4), "plain": round(plain_rate, 4)},
            "seconds_per_step": {"trainer_median": round(median(sdk), 4),
                                 "plain_median": round(median(plain), 4)},
            "rounds": rounds, "ratio_per_round": [round(x, 4) for x in per_round],
            "ratio_per_step": [round(x, 4) for x in per_step],
        },
        "comparison": comparison,
    }


def run(ctx: Context) -> dict[str, Any]:
    out = measure(ctx, device=ctx.device)
    notes = [
        "Each step includes preparing the batch from image files (decode, crop, normalize, "
        "tokenize) on both sides; the ratio is the median over paired steps (the same batch on "
        "both sides) of plain-loop seconds / Trainer seconds.",
    ]
    s = ctx.sizes
    return result(NAME, TITLE, ctx, settings=out["settings"], metrics=out["metrics"],
                  comparisons=[out["comparison"]], notes=notes,
                  size=f"{s.train_rounds} rounds x {s.train_steps} timed steps (+{s.train_warmup} warm-up) per "
                       f"side, batch {s.batch_size}, crop {s.train_crop} px, "
                       f"{'tiny BERT' if s.tiny_text else 'MiniLM'}, all trainable",
                  noise=ratio_spread(out["metrics"]["ratio_per_step"], "plain/Trainer per step")
                  + "; the verdict reads the median over paired steps")
