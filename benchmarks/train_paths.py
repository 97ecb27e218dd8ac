"""One training step of a CNN on this CPU in every precision and layout the trainer can pick.

``python -m benchmarks.train_paths [--model efficientnet_lite0|resnet50] [--size 96] [--batch 32]
[--threads 2] [--rounds 3]``: full fine-tuning steps (forward, backward, AdamW) of timm's
``tf_efficientnet_lite0`` or torchvision's ResNet50 (random init: speed does not depend on the
weights) timed side by side in one process, in turns (the order reversed every other round),
median per path: fp32 with the default layout, fp32 with channels_last weights, bf16 autocast +
channels_last as it is, and bf16 with the depthwise convolutions in fp32 (what the trainer runs,
:func:`fashion.training.step.fp32_depthwise`); the bf16 rows only on a CPU with native bf16.
Then each convolution kind of the model alone (depthwise, 1x1, other), fp32 against bf16, forward
+ backward, channels_last: which kind makes bf16 lose. Prints markdown rows and the CPU flags.

The question it answers: which of ``precision = "auto"``'s candidates should win on this CPU, and
why (it times them on the real run anyway).
"""

from __future__ import annotations

import argparse
import collections
import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

from .common import cpu_flags, native_bf16_reason


def _build(name: str, classes: int = 10) -> Any:
    import torch

    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=classes)
    import torchvision

    return torchvision.models.resnet50(num_classes=classes)


def _step(name: str, x: Any, y: Any, path: str) -> Callable[[], None]:
    import torch

    from fashion.training.step import depthwise_convolutions, fp32_depthwise

    model = _build(name).train()
    channels_last = path != "fp32"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    bf16 = path.startswith("bf16")
    depthwise = depthwise_convolutions(model) if path == "bf16 (depthwise fp32)" else []

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), fp32_depthwise(depthwise):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _kinds(name: str, x: Any, repeats: int) -> dict[str, list[float]]:
    """Seconds of forward + backward of every convolution of the model alone, fp32 and bf16,
    summed per kind."""
    import torch

    model = _build(name)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda _m, a, _o, n=n: shapes.__setitem__(n, tuple(a[0].shape)))
             for n, m in convs]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    total: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for n, conv in convs:
        kind = ("depthwise" if conv.groups > 1 and conv.groups == conv.in_channels
                else "1x1" if conv.kernel_size == (1, 1) else "other")
        for column, bf16 in ((0, False), (1, True)):
            layer = copy.deepcopy(conv).to(memory_format=torch.channels_last)  # its own padding rule
            inputs = torch.randn(shapes[n]).contiguous(memory_format=torch.channels_last).requires_grad_(True)

            def run(layer: Any = layer, inputs: Any = inputs, bf16: bool = bf16) -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = layer(inputs)
                out.float().sum().backward()

            run()
            started = time.perf_counter()
            for _ in range(repeats):
                run()
            total[kind][column] += (time.perf_counter() - started) / repeats
        total[kind][2] += 1
    return total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_paths", description=__doc__)
    parser.add_argument("--model", choices=("efficientnet_lite0", "resnet50"), default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    native = native_bf16_reason() is None
    paths = ["fp32", "fp32 channels_last"] + (["bf16", "bf16 (depthwise fp32)"] if native else [])
    steps = {p: _step(args.model, x, y, p) for p in paths}
    for step in steps.values():  # warm-up: kernel selection, first allocations
        step()
    times: dict[str, list[float]] = {p: [] for p in paths}
    for r in range(args.rounds):
        for path in paths if r % 2 == 0 else paths[::-1]:
            started = time.perf_counter()
            for _ in range(3):
                steps[path]()
            times[path].append((time.perf_counter() - started) / 3)
    median = {p: sorted(t)[len(t) // 2] for p, t in times.items()}
    shown = {k: v for k, v in cpu_flags().items() if v}
    print(f"{args.model} at {args.size} px, batch {args.batch}, full fine-tuning (AdamW), {args.threads} "
          f"threads, median of {args.rounds} rounds of 3 steps after a warm-up; CPU flags: {shown}; "
          f"torch {torch.__version__}" + ("" if native else f"; bf16 rows skipped: {native_bf16_reason()}"))
    print("\n| path | ms/step | vs fp32 | vs fp32 channels_last |\n|---|---|---|---|")
    for path in paths:
        print(f"| {path} | {median[path] * 1000:.0f} | {median['fp32'] / median[path]:.2f}x | "
              f"{median['fp32 channels_last'] / median[path]:.2f}x |")
    if native:
        print("\n| convolutions (alone, channels_last, forward + backward) | count | fp32 ms | bf16 ms | bf16 vs fp32 |"
              "\n|---|---|---|---|---|")
        for kind, (fp32, bf16, count) in sorted(_kinds(args.model, x, 3).items()):
            print(f"| {kind} | {count} | {fp32 * 1000:.1f} | {bf16 * 1000:.1f} | {fp32 / bf16:.2f}x |")


if __name__ == "__main__":
    main()
