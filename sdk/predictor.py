"""Predict attributes with a trained bundle: in Python (:class:`Predictor`) or ``fashion predict``.

``Predictor.from_pretrained("hf://org/name")`` (or a folder, or ``local://name@tag``) loads a
bundle; :meth:`Predictor.predict` takes products (``fashion.Product`` or mappings with images,
title, description, brand; any of them may be missing) and returns one
:class:`ProductPrediction` per product.

``fashion predict MODEL INPUT --out predictions.jsonl`` streams a CSV/JSONL/Parquet manifest in
batches (memory stays flat), writes one JSON line per product, and one line per unreadable row to
a rejects file; ``--resume`` continues an interrupted run.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import click
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ._faults import fault_point
from .components import AttributePrediction
from .errors import ConfigError, DataError
from .inputs import Batch, InputName, Product, ProductError
from .model import FashionModel
from .optimize.precision import PRECISIONS, RUNTIMES, resolve_precision
from .optimize.precision import autocast_dtype as _autocast_dtype
from .optimize.prefetch import prefetch

_FIELD = re.compile(r"field '(\w+)'")


@dataclass
class ProductPrediction:
    """Predictions for one product plus diagnostics (cropper notes, missing modalities)."""

    id: str | None
    attributes: dict[str, AttributePrediction]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "attributes": {a: p.to_dict() for a, p in self.attributes.items()},
            "diagnostics": self.diagnostics,
        }


Precision = Literal["fp32", "bf16", "fp16", "int8", "auto"]
Runtime = Literal["torch", "onnxruntime"]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` setting on ``device`` (``None``: no autocast)."""
    return _autocast_dtype(resolve_precision(precision, device))


class Predictor:
    """Runs a :class:`FashionModel` in eval mode, in batches, without gradients.

    ``precision="bf16"``/``"fp16"`` runs the model under :func:`torch.autocast` (logits are cast
    back to fp32 before probabilities and labels are computed); ``"int8"`` runs a copy whose
    Linear layers are dynamically quantized (convolutions stay bf16 where the CPU computes bf16
    natively, else fp32); ``"auto"`` picks bf16 on CUDA and on CPUs with native bf16, a path the
    bundle's accuracy gate validated when there is one, else fp32. ``precision_used`` says what
    runs. ``runtime="onnxruntime"`` runs the bundle's exported ONNX model (``fashion export``);
    preparation and decoding are the same Python code for both runtimes.
    """

    def __init__(
        self, model: Any, *, device: str | torch.device | None = None, precision: Precision = "fp32",
        runtime: Runtime = "torch",
    ) -> None:
        from fashion.registry.bundle import Bundle

        self.bundle = model if isinstance(model, Bundle) else None
        self.model: FashionModel = model.model if isinstance(model, Bundle) else model
        if not isinstance(self.model, FashionModel):
            raise ConfigError(
                f"Predictor needs a FashionModel or a loaded bundle, got {type(model).__name__}; "
                "use Predictor.from_pretrained(path_or_uri)."
            )
        if device is not None:
            self.model.to(parse_device(device))
        self.model.eval()
        from .optimize.artifacts import gate_verdict

        validated, refused = gate_verdict(self.bundle.index) if self.bundle else ([], [])
        self.precision = precision
        self.runtime = runtime
        self.precision_used = resolve_precision(precision, self.model.device, runtime=runtime,
                                                validated=validated, refused=refused)
        self._forward: Any = self.model
        if runtime == "onnxruntime":
            from .optimize.artifacts import onnx_graph
            from .optimize.runtime import OnnxRunner

            if self.bundle is None:
                raise ConfigError(
                    "runtime='onnxruntime' runs a bundle's exported ONNX model; load a bundle "
                    "(Predictor.from_pretrained) exported with `fashion export MODEL --format onnx`."
                )
            path, graph = onnx_graph(self.bundle.index, self.bundle.path, self.precision_used)
            self._forward = OnnxRunner(path, graph, self.model)
        elif self.precision_used == "int8":
            from .optimize.precision import cpu_bf16_native
            from .optimize.quantize import quantize_int8

            self._forward = quantize_int8(
                self.model, conv_dtype=torch.bfloat16 if cpu_bf16_native() else None)

    def describe(self) -> str:
        """One line: the precision and runtime that run, and why (for ``fashion predict``)."""
        asked = f" (asked: {self.precision})" if self.precision != self.precision_used else ""
        return f"precision {self.precision_used}{asked}, runtime {self.runtime}, device {self.model.device}"

    @classmethod
    def from_pretrained(
        cls,
        uri_or_path: str | Path,
        *,
        device: str | torch.device | None = "auto",
        revision: str | None = None,
        precision: Precision = "fp32",
        runtime: Runtime = "torch",
    ) -> Predictor:
        """Load a bundle folder, ``hf://org/name[@rev]`` or ``local://name[@rev]``.

        ``device="auto"`` (the default, as for training and evaluation) is the GPU when CUDA is
        available, else the CPU.
        """
        from fashion.registry.bundle import load_bundle

        device = parse_device(device) if device is not None else None
        return cls(load_bundle(uri_or_path, device=device, revision=revision), precision=precision,
                   runtime=runtime)

    @classmethod
    def from_hub(
        cls,
        repo_id: str,
        revision: str | None = None,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        device: str | torch.device | None = "auto",
        precision: Precision = "fp32",
        runtime: Runtime = "torch",
    ) -> Predictor:
        """Download (or read from the cache) ``repo_id`` from the Hub and load it."""
        from fashion.registry.bundle import load_bundle
        from fashion.registry.hub import HubRegistry

        registry = HubRegistry(endpoint=endpoint, token=token, cache_dir=cache_dir,
                               local_files_only=local_files_only)
        folder = registry.fetch(repo_id, revision)
        bundle = load_bundle(folder, device=parse_device(device) if device is not None else None)
        bundle.uri = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
        return cls(bundle, precision=precision, runtime=runtime)

    @property
    def attributes(self) -> list[str]:
        return self.model.attributes

    # ------------------------------------------------------------------ predict

    def predict(
        self,
        products: Iterable[Product | Mapping[str, Any]],
        *,
        batch_size: int = 32,
        top_k: int = 3,
        num_workers: int = 0,
        abstain: bool = False,
    ) -> list[ProductPrediction]:
        """One :class:`ProductPrediction` per product, in order. Unreadable images and fields of
        the wrong type raise :class:`fashion.DataError` naming the product (``fashion predict``
        rejects those rows instead). ``abstain``: under an attribute's fitted threshold the label
        is ``None`` with ``reason="below_threshold"`` (top-k kept; docs/trust.md)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        check_top_k(top_k)
        items = check_products(products)
        if not items:
            return []
        loader: Iterable[Batch]
        if num_workers > 0:
            from torch.utils.data import DataLoader

            loader = DataLoader(
                items, batch_size=batch_size, collate_fn=self.model.prepare,
                num_workers=num_workers, worker_init_fn=_quiet_worker,
            )
        else:  # the next batch is prepared while this one runs
            loader = prefetch(self.model.prepare(items[i:i + batch_size])
                              for i in range(0, len(items), batch_size))
        out: list[ProductPrediction] = []
        for batch in loader:
            out.extend(self.run_batch(batch, top_k=top_k, abstain=abstain))
        return out

    @torch.inference_mode()
    def logits(self, batch: Batch) -> dict[str, torch.Tensor]:
        """fp32 logits per attribute for one prepared batch, on the chosen precision/runtime."""
        if self.runtime == "onnxruntime":
            return self._forward(batch)  # type: ignore[no-any-return]
        self.model.eval()
        dtype = _autocast_dtype(self.precision_used)
        if dtype is None:
            return self._forward(batch)  # type: ignore[no-any-return]
        with torch.autocast(device_type=self.model.device.type, dtype=dtype):
            logits = self._forward(batch)
        return {a: x.float() for a, x in logits.items()}

    @torch.inference_mode()
    def run_batch(self, batch: Batch, *, top_k: int = 3, abstain: bool = False) -> list[ProductPrediction]:
        """Model + decoding for one prepared batch."""
        logits = self.logits(batch)
        finite = {a: torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1) for a, x in logits.items()}
        decoded = self.model.decode(logits, top_k=top_k, abstain=abstain)
        if not decoded:  # a model without attributes still reports diagnostics
            decoded = [{} for _ in range(batch.size)]
        missing = _missing_modalities(self.model, batch)
        out = []
        for i in range(batch.size):
            notes = list(batch.notes[i])
            attributes = decoded[i]
            for name, ok in finite.items():
                if not bool(ok[i]):  # NaN/inf weights or inputs: no label, not a NaN score
                    attributes[name] = AttributePrediction(label=None, score=0.0, top_k=[],
                                                           abstained=True)
                    notes.append(f"{name}: the model computed non-finite scores (NaN or inf); "
                                 "abstained. The bundle's weights may be damaged.")
            for prediction in attributes.values():  # a NaN that slipped through decoding
                if not math.isfinite(prediction.score):
                    prediction.score, prediction.abstained, prediction.label = 0.0, True, None
            out.append(ProductPrediction(id=batch.ids[i], attributes=attributes,
                                         diagnostics={"notes": notes, "missing": missing[i]}))
        return out

    # ------------------------------------------------------------------ embed

    def embed(
        self, products: Iterable[Product | Mapping[str, Any]], *, batch_size: int = 32,
    ) -> torch.Tensor:
        """The fused product vector every head reads, one row per product: ``(N, D)`` float32.

        Under an early fusion (concat, mean, gated) it is the fusion's output. Under a late
        fusion each head reads every input on its own, so the vector is the concatenation of
        the per-input features in the model's input order (zeros for a missing modality).
        ``fashion predict --engine ray --embeddings`` writes the same vectors.
        """
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        items = check_products(products)
        chunks = [self.embed_batch(self.model.prepare(items[i:i + batch_size]))
                  for i in range(0, len(items), batch_size)]
        if not chunks:
            return torch.zeros(0, self.embedding_dim)
        return torch.cat(chunks)

    @property
    def embedding_dim(self) -> int:
        """Length of the vectors :meth:`embed` returns."""
        fusion = self.model.fusion
        return sum(self.model.input_dims.values()) if fusion.late else int(fusion.output_dim)

    @torch.inference_mode()
    def embed_batch(self, batch: Batch) -> torch.Tensor:
        """:meth:`embed` of one prepared batch (float32, on the CPU). The eager model runs it at
        the resolved precision (int8 and ONNX Runtime paths cover the heads, not this vector)."""
        self.model.eval()
        dtype = _autocast_dtype(self.precision_used)
        with torch.autocast(device_type=self.model.device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            features, masks = self.model.encode(batch)
            if self.model.fusion.late:
                fused = torch.cat([features[name] * masks[name].unsqueeze(1).to(features[name].dtype)
                                   for name in self.model.input_dims], dim=1)
            else:
                fused = self.model.fusion(features, masks)
        return fused.float().cpu()


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has; a clear error otherwise."""
    if isinstance(device, torch.device):
        parsed = device
    elif str(device).strip() == "auto":  # the default everywhere: train, evaluate, predict
        parsed = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            parsed = torch.device(str(device).strip())
        except (RuntimeError, ValueError, TypeError):
            raise ConfigError(
                f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps."
            ) from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r} asked for, but this machine has no usable CUDA "
                              "GPU; use --device cpu.")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"device {device!r} does not exist: this machine has {count} CUDA "
                              f"GPU(s) (cuda:0..cuda:{count - 1}).")
    elif parsed.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {device!r} is not available on this machine; use cpu.")
    elif parsed.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps.")
    return parsed


def check_top_k(top_k: Any) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a whole number of at least 1, got {top_k!r}")
    return top_k


def check_products(products: Any) -> list[Product]:
    """The products of a ``Predictor.predict`` call, checked with the rules of a manifest row.

    A single product (a mapping or :class:`Product`) instead of a list, a product with neither
    images nor text, a text field that is not a string and an ``images`` value that is neither a path, bytes, a PIL image nor a list of
    them are errors (:class:`DataError`) naming the product, like the rejects of ``fashion predict``.
    """
    from .manifest import TEXT_FIELDS, text_value

    if isinstance(products, (Mapping, Product, str, bytes)) or not isinstance(products, Iterable):
        raise DataError(
            f"predict() takes a list of products, got {type(products).__name__}; "
            "wrap a single product in a list: predict([product])."
        )
    items: list[Product] = []
    for index, value in enumerate(products):
        name = f"product {index}"
        if isinstance(value, Mapping) and value.get("id") is not None:
            name = f"product {value.get('id')!s:.80}"
        elif isinstance(value, Product) and value.id is not None:
            name = f"product {value.id:.80}"
        if isinstance(value, Mapping):
            images = value.get("images", value.get("image"))
            if type(images).__module__ == "numpy":
                raise DataError(f"{name}: 'images' is a numpy array; pass a list of images "
                                "(PIL.Image.fromarray(array) for pixels).")
            if images is not None and not isinstance(images, (str, bytes, os.PathLike, list, tuple)) \
                    and not hasattr(images, "convert"):
                raise DataError(f"{name}: 'images' must be a path, bytes, a PIL image or a list "
                                f"of them, got {type(images).__name__}.")
        try:
            product = Product.coerce(value)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from None
        for field_name in TEXT_FIELDS:
            text_value(getattr(product, field_name), name, field_name)
        if not isinstance(product.images, list):
            product.images = list(product.images)
        if not product.images and not product.text_fields():
            known = ", ".join(sorted(value)) if isinstance(value, Mapping) else ""
            raise DataError(
                f"{name} has no image and no text (images, title, description, brand), so there "
                "is nothing to predict from"
                + (f"; its keys are: {known}" if known else "; it is empty")
                + ". Give each product an image or some text."
            )
        items.append(product)
    return items

def _quiet_worker(_: int) -> None:
    torch.set_num_threads(1)
    _die_with_parent()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (no lingering workers)."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _missing_modalities(model: FashionModel, batch: Batch) -> list[list[str]]:
    """Per product, the modalities the model reads but the product lacks (``image``, ``text``)."""
    present: dict[str, set[int]] = {}
    for name, (payload, owner) in batch.inputs.items():
        modality = model.backbones[InputName.parse(name).backbone].modality
        rows = present.setdefault(modality, set())
        if payload is not None:
            rows.update(int(r) for r in owner.tolist())
    return [sorted(m for m, rows in present.items() if i not in rows) for i in range(batch.size)]


# ------------------------------------------------------------------------ fashion predict


@dataclass
class PredictSummary:
    rows_in: int = 0
    predicted: int = 0
    rejected: int = 0
    resumed: int = 0  # rows already done by an earlier run

    def line(self) -> str:
        text = f"{self.rows_in} rows in = {self.predicted} predicted + {self.rejected} rejected"
        return text + (f" ({self.resumed} from the earlier run)" if self.resumed else "")


def _reject(row: int, product_id: str | None, fieldname: str | None, reason: str) -> dict[str, Any]:
    return {"row": row, "id": product_id, "field": fieldname, "reason": reason}


def _prepare_rows(model: FashionModel, rows: Sequence[Any], manifest: Path) -> tuple[
    Batch | None, list[int], list[dict[str, Any]]
]:
    """Turn manifest rows into one batch; bad rows become rejects and the rest still run."""
    from .manifest import row_to_product

    products: list[Product] = []
    numbers: list[int] = []
    rejects: list[dict[str, Any]] = []
    for row in rows:
        try:
            product = row_to_product(row, manifest)
            if not product.images and not product.text_fields():
                raise DataError(f"{manifest}:{row.line or row.row}: the row has no image and no "
                                "text (title, description, brand); nothing to predict from")
            products.append(product)
            numbers.append(row.row)
        except DataError as exc:
            match = _FIELD.search(str(exc))
            raw_id = row.values.get("id") if isinstance(row.values, Mapping) else None
            rejects.append(_reject(row.row, None if raw_id in (None, "") else str(raw_id),
                                   match.group(1) if match else None, str(exc)))
    batch = None
    while products:
        try:
            batch = model.prepare(products)
            break
        except ProductError as exc:
            rejects.append(_reject(numbers[exc.row], exc.product_id, "images", str(exc)))
            del products[exc.row], numbers[exc.row]
    return batch, numbers, sorted(rejects, key=lambda r: r["row"])


class _Chunks(IterableDataset):
    """Batches of manifest rows, prepared (in DataLoader workers when asked), in file order."""

    def __init__(self, model: FashionModel, manifest: Path, done: set[int], batch_size: int) -> None:
        self.model, self.manifest, self.done, self.batch_size = model, manifest, done, batch_size

    def chunks(self) -> Iterator[list[Any]]:
        from .manifest import iter_manifest

        chunk: list[Any] = []
        for row in iter_manifest(self.manifest):
            if row.row in self.done:
                continue
            chunk.append(row)
            if len(chunk) == self.batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def __iter__(self) -> Iterator[tuple[Batch | None, list[int], list[dict[str, Any]]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index, chunk in enumerate(self.chunks()):
            if index % workers == worker:  # workers take turns, so order is kept
                yield _prepare_rows(self.model, chunk, self.manifest)


def _read_done(path: Path | None) -> tuple[set[int], int]:
    """Rows already written to a JSONL output; a truncated last line is cut off the file."""
    if path is None or not path.is_file():
        return set(), 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # an interrupted write: drop the partial line
        with open(path, "r+b") as f:
            f.truncate(end)
    rows: set[int] = set()
    count = 0
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.add(int(json.loads(line)["row"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(
                f"{path}:{number} is not a line written by `fashion predict`; cannot resume. "
                "Move the file away and run again without --resume."
            ) from None
        count += 1
    return rows, count


def run_predict(
    predictor: Predictor,
    manifest: str | Path,
    out: str | Path,
    *,
    rejects: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 0,
    top_k: int = 3,
    resume: bool = False,
    overwrite: bool = False,
    abstain: bool = False,
) -> PredictSummary:
    """Stream ``manifest`` through ``predictor``; write predictions and rejects as JSONL."""
    from .manifest import check_input_columns, count_rows

    manifest, out = Path(manifest), Path(out)
    # OUT "." has no name to derive from; check_output_paths then refuses the folder OUT
    rejects_path = (Path(rejects) if rejects else
                    out.with_name(out.stem + ".rejects.jsonl") if out.name else out / "rejects.jsonl")
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    check_top_k(top_k)
    check_output_paths(manifest, {"--out": out, "--rejects": rejects_path},
                       resume=resume, overwrite=overwrite)
    check_input_columns(manifest)
    done_predicted, n_predicted = _read_done(out) if resume else (set(), 0)
    done_rejected, n_rejected = _read_done(rejects_path) if resume else (set(), 0)
    done = done_predicted | done_rejected
    summary = PredictSummary(predicted=n_predicted, rejected=n_rejected, resumed=len(done))
    out.parent.mkdir(parents=True, exist_ok=True)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if resume else "w"
    dataset = _Chunks(predictor.model, manifest, done, batch_size)
    source: Iterable[tuple[Batch | None, list[int], list[dict[str, Any]]]]
    if workers > 0:
        from torch.utils.data import DataLoader

        source = DataLoader(dataset, batch_size=None, num_workers=workers,
                            worker_init_fn=_quiet_worker, collate_fn=_identity)
    else:  # rows of the next batch are read and prepared while this one runs
        source = prefetch(dataset)
    from .progress import progress

    rows_in = count_rows(manifest)
    with open(out, mode, encoding="utf-8") as pred_file, \
            open(rejects_path, mode, encoding="utf-8") as reject_file, \
            progress("predict", total=max(0, rows_in - len(done))) as bar:
        for batch, numbers, bad in source:
            _write_lines(reject_file, bad)
            summary.rejected += len(bad)
            if batch is not None:
                results = predictor.run_batch(batch, top_k=top_k, abstain=abstain)
                _write_lines(pred_file, [{"row": n, **r.to_dict()} for n, r in zip(numbers, results, strict=True)])
                summary.predicted += len(results)
            bar.update(len(bad) + (len(numbers) if batch is not None else 0))
            fault_point("predict.batch")
    summary.rows_in = rows_in
    return summary


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_paths(
    source: Path, outputs: Mapping[str, Path], *, resume: bool, overwrite: bool
) -> None:
    """The one guard of every file ``fashion predict`` writes.

    An output is never the input (nor a link to it), two outputs are never the same file, an
    output is not a folder, and an existing non-empty output is replaced only with
    ``overwrite`` (or appended to with ``resume``).
    """
    names = list(outputs)
    for name in names:
        path = outputs[name]
        if _same_file(path, source):
            raise ConfigError(
                f"{name} {path} is the input manifest; writing there would destroy the input. "
                "Choose another file."
            )
        if path.is_dir():
            raise ConfigError(f"{name} {path} is a directory; give a file path such as {path}/out.jsonl.")
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if _same_file(outputs[first], outputs[second]):
                raise ConfigError(
                    f"{first} and {second} are the same file ({outputs[first]}); predictions and "
                    "rejects need a file each."
                )
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one of them.")
    if not resume and not overwrite:
        for name in names:
            path = outputs[name]
            if path.is_file() and path.stat().st_size:
                raise ConfigError(
                    f"{name} {path} already exists; pass --resume to continue that run or "
                    "--overwrite to start over."
                )


def _identity(x: Any) -> Any:
    return x


def _write_lines(handle: TextIO, records: Iterable[dict[str, Any]]) -> None:
    for record in records:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from the input: escape it
            line = json.dumps(record, ensure_ascii=True, allow_nan=False) + "\n"
        if os.environ.get("FASHION_FAULT_INJECT", "").startswith("predict.partial-line"):
            handle.write(line[: len(line) // 2])
            handle.flush()
            fault_point("predict.partial-line")
        handle.write(line)
    handle.flush()


@click.command("predict")
@click.argument("model")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Predictions, one JSON line per product (--engine ray: a folder of Parquet "
                   "files, one per input part).")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Unreadable rows (default: OUT's name + .rejects.jsonl).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="DataLoader worker processes that decode images.")
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--abstain", is_flag=True,
              help="Give no label (reason below_threshold, top-k kept) under each attribute's "
                   "fitted threshold (docs/trust.md).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run (skip rows done).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT file.")
@click.option("--device", default=None,
              help="torch device: auto, cpu, cuda, cuda:N (default: auto, the GPU when CUDA is "
                   "available, as for train and evaluate).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32, bf16/fp16 (autocast), int8 (dynamic quantization of Linear layers, "
                   "CPU) or auto (bf16 on CUDA and on CPUs with native bf16, a path the "
                   "bundle's accuracy gate validated, else fp32).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
              help="onnxruntime: run the bundle's ONNX export (`fashion export`, extra "
                   "fashion-sdk[onnx]).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: spread the work over a Ray cluster (INPUT may be a folder or a glob; "
                   "needs pip install 'fashion-sdk[ray]'; see docs/scale.md).")
@click.option("--address", default=None,
              help="--engine ray: the cluster (auto, ray://host:10001); default: start a local "
                   "Ray sized to this machine.")
@click.option("--concurrency", default=None, type=click.IntRange(min=1),
              help="--engine ray: workers, each loads the model once (default: one per CPU but "
                   "one, or one per GPU share).")
@click.option("--num-gpus-per-worker", default=0.0, show_default=True,
              type=click.FloatRange(min=0), help="--engine ray: GPUs per worker (e.g. 1 or 0.5).")
@click.option("--embeddings", is_flag=True,
              help="--engine ray: also write the fused product vector (column 'embedding').")
def predict_command(
    model: str,
    input_path: Path,
    out: Path,
    rejects: Path | None,
    batch_size: int,
    workers: int,
    top_k: int,
    resume: bool,
    overwrite: bool,
    device: str | None,
    precision: str,
    engine: str,
    address: str | None,
    concurrency: int | None,
    num_gpus_per_worker: float,
    embeddings: bool,
    runtime: str,
    abstain: bool,
) -> None:
    """Predict every product of a CSV/JSONL/Parquet manifest with MODEL.

    MODEL is a bundle folder, hf://org/name[@revision] or local://name[@revision].
    """
    if engine == "ray":
        from .distributed import run_ray_predict

        local_only = {"--rejects": rejects, "--workers": workers, "--device": device, "--abstain": abstain}
        used = [name for name, value in local_only.items() if value]
        if used:  # rejects are rows of OUT; workers and devices are set per Ray worker
            raise click.UsageError(f"{', '.join(used)} does not apply to --engine ray "
                                   "(see --concurrency, --num-gpus-per-worker)")

        summary = run_ray_predict(
            model, input_path, out, address=address, concurrency=concurrency,
            num_gpus_per_worker=num_gpus_per_worker, embeddings=embeddings,
            batch_size=batch_size, top_k=top_k, precision=precision, runtime=runtime,
            overwrite=overwrite,
        )
        click.echo(summary.text())
        return
    ray_only = {"--address": address, "--concurrency": concurrency,
                "--num-gpus-per-worker": num_gpus_per_worker, "--embeddings": embeddings}
    used = [name for name, value in ray_only.items() if value]
    if used:
        raise click.UsageError(f"{', '.join(used)} needs --engine ray")
    if not input_path.is_file():
        if input_path.is_dir():
            problem = "is a directory; give a manifest file (folders and globs need --engine ray)"
        elif any(ch in str(input_path) for ch in "*?["):
            problem = "is a glob pattern; give a manifest file (folders and globs need --engine ray)"
        else:
            problem = "does not exist; give a .csv, .jsonl or .parquet manifest file"
        raise click.BadParameter(f"{input_path} {problem}", param_hint="INPUT")
    predictor = Predictor.from_pretrained(model, device=device or "auto", precision=precision,  # type: ignore[arg-type]
                                          runtime=runtime)  # type: ignore[arg-type]
    summary = run_predict(
        predictor, input_path, out, rejects=rejects, batch_size=batch_size, workers=workers,
        top_k=top_k, resume=resume, overwrite=overwrite, abstain=abstain,
    )
    click.echo(predictor.describe())
    click.echo(summary.line())


__all__ = [
    "PredictSummary",
    "Predictor",
    "ProductPrediction",
    "check_output_paths",
    "check_products",
    "parse_device",
    "predict_command",
    "run_predict",
]
