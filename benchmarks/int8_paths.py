"""ResNet50's convolutions in int8 on this CPU, every software path side by side.

``python -m benchmarks.int8_paths [--batch 16] [--repeats 4] [--threads 2]``: one ResNet50
(torchvision, random init: kernel speed does not depend on the weights) exported to ONNX, then
statically quantized by ONNX Runtime's ``quantize_static`` (per-channel int8 weights, uint8
activations) in both of its formats (QDQ and QOperator) with and without ``reduce_range``, and
timed in one process: torch eager fp32 (NCHW and channels_last), ONNX Runtime fp32 and int8,
OpenVINO fp32 and on the QDQ graph, with its latency hint and with two throughput streams, and,
on a CPU with native bf16 (avx512_bf16 or amx_bf16), torch bf16 autocast and OpenVINO bf16.
Calibration uses random images: it sets activation ranges, which change accuracy, not speed
(accuracy is the gate's business, in ``fast_inference``). Prints one markdown row per path
with images/s, the ratio to eager fp32 and to ONNX Runtime fp32, and the CPU flags.

The question it answers: how far above ONNX Runtime fp32 can int8 convolutions go on this CPU,
whichever runtime and format run them (the ResNet50 target of ``fast_inference`` needs about 4x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common import cpu_flags, native_bf16_reason, quiet_libraries


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: kernel selection, first allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_paths", description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder for the ONNX graphs (default: a temp folder)")
    args = parser.parse_args(argv)
    quiet_libraries()

    import numpy as np
    import onnxruntime as ort
    import openvino as ov
    import torch
    import torchvision
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="fashion-int8-paths-"))
    work.mkdir(parents=True, exist_ok=True)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(args.batch, 3, 224, 224)
    fp32 = work / "resnet50.onnx"
    torch.onnx.export(model, (x,), str(fp32), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    pre = work / "resnet50-pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    rng = np.random.default_rng(0)

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": rng.random((8, 3, 224, 224), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    graphs: dict[str, Path] = {}
    for fmt_name, fmt in (("QDQ", QuantFormat.QDQ), ("QOperator", QuantFormat.QOperator)):
        for reduce_range in (True, False):
            path = work / f"resnet50-int8-{fmt_name}-rr{int(reduce_range)}.onnx"
            quantize_static(str(pre), str(path), Images(), quant_format=fmt, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
            graphs[f"{fmt_name}, reduce_range={reduce_range}"] = path

    pixels = x.numpy()
    native_bf16 = native_bf16_reason() is None
    rows: dict[str, float] = {}
    with torch.inference_mode():
        rows["torch eager fp32 (NCHW)"] = _median_seconds(lambda: model(x), args.repeats)
        last = model.to(memory_format=torch.channels_last)
        x_last = x.contiguous(memory_format=torch.channels_last)
        rows["torch eager fp32 (channels_last)"] = _median_seconds(lambda: last(x_last), args.repeats)
        if native_bf16:  # bf16 autocast, as Predictor(precision="bf16") runs it

            def bf16() -> Any:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return last(x_last)

            rows["torch eager bf16 autocast (channels_last)"] = _median_seconds(bf16, args.repeats)

    def onnxruntime(path: Path) -> Callable[[], Any]:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"x": pixels})

    rows["ONNX Runtime fp32"] = _median_seconds(onnxruntime(fp32), args.repeats)
    for name, path in graphs.items():
        rows[f"ONNX Runtime int8 ({name})"] = _median_seconds(onnxruntime(path), args.repeats)

    core = ov.Core()

    def openvino(path: Path, hint: str, precision: str = "f32") -> Callable[[], Any]:
        # the precision hint explicit: on CPUs with native bf16 OpenVINO may otherwise pick bf16
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": hint,
                                  "INFERENCE_PRECISION_HINT": precision}
        if hint == "THROUGHPUT":
            config["NUM_STREAMS"] = 2
        compiled = core.compile_model(str(path), "CPU", config)
        if hint == "LATENCY":
            request = compiled.create_infer_request()
            return lambda: request.infer({0: pixels})
        queue = ov.AsyncInferQueue(compiled, 2)
        halves = [pixels[: args.batch // 2], pixels[args.batch // 2:]]

        def both() -> None:
            for half in halves:
                queue.start_async({0: half})
            queue.wait_all()

        return both

    rows["OpenVINO fp32 (latency hint)"] = _median_seconds(openvino(fp32, "LATENCY"), args.repeats)
    if native_bf16:
        rows["OpenVINO bf16 (latency hint)"] = _median_seconds(openvino(fp32, "LATENCY", "bf16"), args.repeats)
    for name in ("QDQ, reduce_range=True", "QDQ, reduce_range=False"):
        rows[f"OpenVINO int8 ({name}, latency hint)"] = _median_seconds(
            openvino(graphs[name], "LATENCY"), args.repeats)
    rows["OpenVINO int8 (QDQ, reduce_range=True, 2 throughput streams)"] = _median_seconds(
        openvino(graphs["QDQ, reduce_range=True"], "THROUGHPUT"), args.repeats)

    flags = cpu_flags()
    shown = {k: v for k, v in flags.items() if v}
    print(f"ResNet50 at 224 px, batch {args.batch}, {args.threads} threads, median of {args.repeats} "
          f"after a warm-up; CPU flags: {shown}; torch {torch.__version__}, onnxruntime "
          f"{ort.__version__}, openvino {ov.__version__}\n")
    print("| path | images/s | vs eager fp32 | vs ONNX Runtime fp32 |\n|---|---|---|---|")
    eager, ort_fp32 = rows["torch eager fp32 (NCHW)"], rows["ONNX Runtime fp32"]
    for name, seconds in rows.items():
        print(f"| {name} | {args.batch / seconds:.1f} | {eager / seconds:.2f}x | {ort_fp32 / seconds:.2f}x |")


if __name__ == "__main__":
    main()
