"""One training step: its forward (per-attribute losses and their combination), PCGrad's
backward, and the precision and layout it computes in (``precision``'s resolution, the candidates
``auto`` times on the run's own step and its pick, CPU bf16 autocast with the depthwise
convolutions in fp32)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fashion.contract.training import LossCombiner
from fashion.model.network import FashionModel
from fashion.model.precision import cpu_bf16_native
from fashion.model.spec import InputName
from fashion.training.config import TrainConfig
from fashion.training.loader import LoadedPart
from fashion.training.losses import PCGradLoss
from fashion.training.runtime import set_train_mode

log = logging.getLogger("fashion.training")


class StepModule(nn.Module):
    """Forward of one training step: per-attribute losses and their combination.

    Only the heads of attributes present in a part's targets run, so a batch from a dataset that
    does not label an attribute gives that head no loss and no gradient. Every loss is the head's
    own ``Head.loss`` (the masked cross-entropy of ``fashion.Head``, or a plugin head's).

    ``modality_dropout`` (training only): the probability that a product with both images and
    text has one of them (each half the time) hidden for this step, as if the product lacked it,
    so the heads learn to answer from either modality alone.
    """

    def __init__(
        self, model: FashionModel, combiner: LossCombiner, class_weights: dict[str, Tensor],
        cached: bool, frozen_backbones: bool, modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.combiner = combiner
        self.class_weights = class_weights
        self.cached = cached
        self.frozen_backbones = frozen_backbones
        self.heads = {a: model.task(a) for a in model.attributes}
        self.modality_dropout = modality_dropout
        self.modalities = {
            name: model.backbones[InputName.parse(name).backbone].modality for name in model.input_dims
        }

    def forward(self, parts: Sequence[LoadedPart]) -> tuple[Tensor, dict[str, Tensor]]:
        per_task: dict[str, list[Tensor]] = {}
        for inputs, targets in parts:
            if self.cached:
                # cached features; activations at a cut run the stages above it
                features, masks = inputs.resolve(self.model) if hasattr(inputs, "resolve") else inputs
            elif self.frozen_backbones:
                with torch.no_grad():
                    features, masks = self.model.encode(inputs)
            else:
                features, masks = self.model.encode(inputs)
            if self.modality_dropout > 0 and self.model.training:
                features, masks = self.drop_modality(features, masks)
            logits = self.model.head_logits(features, masks, list(targets))
            for attribute, (target, mask) in targets.items():
                loss = self.heads[attribute].loss(logits[attribute], target, mask, self.class_weights.get(attribute))
                per_task.setdefault(attribute, []).append(loss)
        losses = {a: v[0] if len(v) == 1 else torch.stack(v).mean() for a, v in per_task.items()}
        return self.combiner(losses), losses

    def drop_modality(
        self, features: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Hide images or text of some products (new tensors; cached features stay intact)."""
        present = {
            kind: torch.stack([m for n, m in masks.items() if self.modalities[n] == kind]).any(0)
            for kind in ("image", "text") if kind in self.modalities.values()
        }
        if len(present) < 2:  # one modality only: nothing to hide
            return features, masks
        size = next(iter(masks.values())).shape[0]
        device = next(iter(masks.values())).device
        drop = (torch.rand(size, device=device) < self.modality_dropout) & present["image"] & present["text"]
        hide_image = drop & (torch.rand(size, device=device) < 0.5)
        hidden = {"image": hide_image, "text": drop & ~hide_image}
        out_features, out_masks = {}, {}
        for name, mask in masks.items():
            hide = hidden[self.modalities[name]]
            out_masks[name] = mask & ~hide
            out_features[name] = features[name] * (~hide).unsqueeze(1).to(features[name].dtype)
        return out_features, out_masks


def pcgrad_backward(
    losses: dict[str, Tensor], params: Sequence[nn.Parameter], task_index: dict[str, int],
    generator: torch.Generator, world_size: int = 1,
) -> None:
    """Set ``p.grad`` to the PCGrad combination of the per-attribute gradients of ``losses``."""
    sizes = [p.numel() for p in params]
    grads = torch.zeros(len(task_index), sum(sizes), device=params[0].device)
    names = list(losses)
    for i, name in enumerate(names):
        pieces = torch.autograd.grad(losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True)
        grads[task_index[name]] = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(pieces, params, strict=True)]
        )
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(grads)
        grads /= world_size
    flat = PCGradLoss.project(grads, generator)
    for p, g in zip(params, flat.split(sizes), strict=True):
        p.grad = g.view_as(p).to(p.dtype)


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """The precision a run trains in (``fp32``, ``bf16`` or ``fp16``: autocast with fp32 master
    weights; :func:`fashion.model.precision.autocast_dtype` gives its dtype), with one log line
    saying why; ``auto`` on a CPU with native bf16 is decided by :func:`pick_precision` on
    the run's own model and batch (this returns ``fp32`` for it until then).

    On the CPU, bf16 autocast training was measured at 0.65x the steps/s of fp32 on an
    AVX512-BF16 CPU (EfficientNet-Lite0 at 96 px, full fine-tuning, batch 32), although bf16 +
    channels_last *inference* of the same backbone ran ~2.6x fp32 there; with its depthwise
    convolutions in fp32 (:func:`fp32_depthwise`) the step runs 2.08x, yet a head-only step is
    still faster in fp32: which is faster depends on the model and batch, so ``auto`` times the
    candidates. A forced ``bf16`` trains with bf16
    autocast (channels_last convolutions) where the CPU has native bf16 (AVX512-BF16/AMX) and
    falls back to fp32 elsewhere, since emulated bf16 is slower still. fp16 is CUDA only.
    """
    if device.type != "cuda":
        if config.precision == "fp32":
            return "fp32"
        capability = torch.backends.cpu.get_cpu_capability()
        if config.precision == "fp16":
            log.warning("precision fp16 is used on CUDA only; training in fp32 on %s", device)
            return "fp32"
        if config.precision == "auto":
            return "fp32"
        if cpu_bf16_native():
            return "bf16"
        log.warning(
            "precision bf16 asked for, but this CPU has no native bf16 (no AVX512-BF16/AMX; "
            "capability %s): emulated bf16 is slower than fp32, so training in fp32", capability,
        )
        return "fp32"
    if config.precision == "fp32":
        return "fp32"
    if config.precision == "fp16":
        return "fp16"
    if config.precision == "bf16" or torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp16"


CHANNELS_LAST = "fp32+channels_last"
"""``auto``'s candidate of fp32 with channels_last (NHWC) convolution weights."""


def precision_candidates(config: TrainConfig, device: torch.device, model: nn.Module | None = None) -> list[str]:
    """What ``precision = "auto"`` times on the CPU (``fp32`` first): fp32 with channels_last
    weights when ``model`` trains a convolution, and bf16 (autocast + channels_last) where the CPU
    has native bf16; one entry (the resolved precision) everywhere else.

    channels_last is a candidate because it goes both ways too: on an AVX512 CPU a fp32 training
    step of EfficientNet-Lite0 (96 px, batch 32) ran 1.62x and ResNet50's (128 px) 1.27x faster
    with channels_last weights than with the default layout (``python -m benchmarks.train_paths``)."""
    if device.type == "cuda" or config.precision != "auto":
        return [training_precision(config, device)]
    out = ["fp32"]
    if model is not None and any(isinstance(m, nn.Conv2d) and m.weight.requires_grad for m in model.modules()):
        out.append(CHANNELS_LAST)
    if cpu_bf16_native():
        out.append("bf16")
    return out


AUTO_MARGIN = 1.1
"""``precision = "auto"`` keeps a lower precision over fp32 only when its timed step is at least
this many times faster: a smaller difference is inside the noise of a few timed steps on a shared
machine, and choosing on noise would train two runs of one config in different precisions."""


def pick_precision(candidates: Sequence[str], seconds_per_step: Callable[[str], float]) -> tuple[str, dict[str, float]]:
    """Time a few steps of each candidate and keep the fastest; a candidate is kept over
    ``fp32`` only when it measured at least :data:`AUTO_MARGIN` times faster, so ``auto`` never
    trains slower than fp32 and does not change precision on a difference within the noise."""
    times = {c: seconds_per_step(c) for c in candidates}
    chosen = min(times, key=lambda c: times[c])
    if "fp32" in times and times[chosen] * AUTO_MARGIN > times["fp32"]:
        chosen = "fp32"
    if len(times) > 1:
        measured = ", ".join(f"{c} {t:.3f} s/step" for c, t in times.items())
        log.info("precision auto: timed the model's training step on this batch: %s; training in %s "
                 "(another precision is kept over fp32 only when at least %.1fx faster)",
                 measured, chosen, AUTO_MARGIN)
    return chosen, times


def time_training_step(run_step: Callable[[], None], steps: int = 3) -> float:
    """Seconds per call of ``run_step`` (a forward + backward), after one warm-up call."""
    run_step()
    started = time.perf_counter()
    for _ in range(steps):
        run_step()
    return (time.perf_counter() - started) / steps


def measure_precision(run: Any) -> str:
    """``precision = "auto"`` on a native-bf16 CPU: time a few forward + backward passes of each
    of ``run.candidates`` on the run's first batch, with the run's step module (cached
    activations included); weights, buffers and the random state are restored after, so the
    run itself is the same as without the timing."""
    config = run.config
    schedule = run.sampler.schedule(run.sizes, config.batch_size, epoch=0, seed=config.seed)
    parts = next(iter(run.loader(schedule[:1])))
    saved = {k: v.detach().clone() for k, v in run.state.model_tensors().items()}
    rng = torch.get_rng_state()
    set_train_mode(run.model, fixed_batchnorm=run.fixed_batchnorm)

    def seconds(precision: str) -> float:
        run._set_precision(precision)

        def run_step() -> None:
            with run._autocast():
                total, losses = run.step_module(parts)
            if losses:
                total.backward()
            run.state.optimizer.zero_grad(set_to_none=True)

        return time_training_step(run_step)

    chosen, _ = pick_precision(run.candidates, seconds)
    run.state.load_model_tensors(saved, run.checkpoint_dir)
    torch.set_rng_state(rng)
    return chosen


def depthwise_convolutions(model: nn.Module) -> list[nn.Conv2d]:
    """The model's depthwise convolutions (one group per input channel: EfficientNet's and
    MobileNet's 3x3/5x5 spatial filters)."""
    return [m for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]


@contextlib.contextmanager
def fp32_depthwise(convolutions: Sequence[nn.Conv2d], device_type: str = "cpu") -> Iterator[None]:
    """Inside CPU bf16 autocast, run ``convolutions`` in fp32 (autocast off around each, its
    input cast up; the rest of the model stays bf16).

    oneDNN's bf16 depthwise convolution is slow to train on the CPU: on an AVX512-BF16 CPU
    (``python -m benchmarks.train_paths``: EfficientNet-Lite0's 16 depthwise convolutions at
    96 px, batch 32, channels_last, forward + backward) 316 ms in bf16 against 101 ms in fp32,
    which made bf16 autocast training slower than fp32 channels_last (0.73x); with them in fp32
    the whole step ran 2.08x fp32 and 1.28x fp32 channels_last. The hooks live only inside this
    context."""
    active: set[int] = set()

    def before(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not torch.is_autocast_enabled(device_type):
            return None
        active.add(id(module))
        torch.set_autocast_enabled(device_type, False)
        return (args[0].float(), *args[1:])

    def after(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if id(module) in active:
            active.discard(id(module))
            torch.set_autocast_enabled(device_type, True)

    handles = [h for conv in convolutions
               for h in (conv.register_forward_pre_hook(before), conv.register_forward_hook(after))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def auto_precision(run: Any) -> str:
    """``precision = "auto"``: the candidate a resumed run began in (its checkpoint records it),
    else the one :func:`measure_precision` times on this run; in a distributed run every process
    takes the main process's choice."""
    recorded = run.state.precision
    if recorded in run.candidates:
        log.info("precision auto: resuming in %s, the precision this run was timed and began in", recorded)
        return str(recorded)
    if recorded:
        log.warning("precision auto: the checkpoint began in %s, which is not a candidate on this "
                    "machine (%s); timing the candidates again", recorded, ", ".join(run.candidates))
    chosen = measure_precision(run)
    if run.world_size > 1:
        import torch.distributed as dist

        shared = [chosen]
        dist.broadcast_object_list(shared, src=0)
        chosen = str(shared[0])
    return chosen


def autocast(device: torch.device, dtype: torch.dtype | None,
             depthwise: Sequence[nn.Conv2d] = ()) -> contextlib.AbstractContextManager[Any]:
    """The autocast a training step runs in: none for fp32; on the CPU in bf16, with ``depthwise``
    convolutions in fp32 (:func:`fp32_depthwise`: their bf16 backward is slow there)."""
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype == torch.bfloat16 and depthwise:
        return _cpu_bf16(depthwise)
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _cpu_bf16(depthwise: Sequence[nn.Conv2d]) -> Iterator[None]:
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16), fp32_depthwise(depthwise):
        yield


__all__ = ["StepModule", "pcgrad_backward", "AUTO_MARGIN", "CHANNELS_LAST", "auto_precision", "autocast", "depthwise_convolutions", "fp32_depthwise", "measure_precision", "pick_precision", "precision_candidates", "time_training_step", "training_precision"]
