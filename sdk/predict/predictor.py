"""Predict attributes with a trained bundle: in Python (:class:`Predictor`) or ``fashion predict``.

``Predictor.from_pretrained("hf://org/name")`` (or a folder, or ``local://name@tag``) loads a
bundle; :meth:`Predictor.predict` takes products (``fashion.Product`` or mappings with images,
title, description, brand; any of them may be missing) and returns one
:class:`ProductPrediction` per product.
``fashion predict`` (streaming a manifest through a Predictor) lives in :mod:`fashion.predict.batch`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from fashion.contract.components import AttributePrediction
from fashion.errors import ConfigError, DataError
from fashion.model.inputs import Batch, Product
from fashion.model.network import FashionModel
from fashion.model.precision import autocast_dtype, parse_device
from fashion.model.space import FUSED, EmbeddingSpace, check_space, compose, space_dimension
from fashion.model.spec import InputName
from fashion.predict.precision import PRECISIONS, RUNTIMES, select
from fashion.predict.prefetch import prefetch


@dataclass
class ProductPrediction:
    """Predictions for one product plus diagnostics (cropper notes, missing modalities)."""

    id: str | None
    attributes: dict[str, AttributePrediction]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    embedding: Any = None  # predict(..., embeddings=True): the fused vector, float32 numpy (D,)

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "attributes": {a: p.to_dict() for a, p in self.attributes.items()},
               "diagnostics": self.diagnostics}
        return out | ({} if self.embedding is None else {"embedding": self.embedding.tolist()})


Precision = Literal["fp32", "bf16", "fp16", "int8", "int8-static", "auto"]
Runtime = Literal["torch", "onnxruntime", "openvino", "auto"]


class Predictor:
    """Runs a :class:`FashionModel` in eval mode, in batches, without gradients.

    ``precision="bf16"``/``"fp16"`` runs the model under :func:`torch.autocast` (logits are cast
    back to fp32 before probabilities and labels are computed); ``"int8"`` runs a copy whose
    Linear layers are dynamically quantized (convolutions stay bf16 where the CPU computes bf16
    natively, else fp32); ``"int8-static"`` runs the bundle's statically quantized ONNX graph
    (``fashion optimize --precision int8-static``); ``"auto"`` picks bf16 on CUDA and, on the
    CPU, the fastest path the bundle's accuracy gate validated that runs here (warning about and
    skipping one that cannot), else bf16 where native, else fp32. ``precision_used`` and
    ``runtime`` say what runs. ``runtime="onnxruntime"``/``"openvino"`` runs the bundle's ONNX
    model; ``"auto"`` is torch unless the verdict says otherwise. Preparation and decoding are
    the same Python code for every runtime.
    """

    def __init__(
        self, model: Any, *, device: str | torch.device | None = None, precision: Precision = "fp32",
        runtime: Runtime = "auto",
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
        self.precision, self.runtime_asked = precision, runtime
        self.runtime, self.precision_used, self.fallbacks = select(
            precision, runtime, self.model.device, self.bundle.index if self.bundle else None)
        for message in self.fallbacks:  # a validated path this machine cannot run as validated
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        self._forward: Any = self.model
        self.embedding_space: EmbeddingSpace = FUSED  # set_embedding_space
        if self.runtime != "torch":
            from fashion.predict.runtime import open_runner

            if self.bundle is None:
                raise ConfigError(
                    f"runtime={self.runtime!r} runs a bundle's exported ONNX model; load a bundle "
                    "(Predictor.from_pretrained) exported with `fashion export MODEL --format onnx`."
                )
            self._forward = open_runner(self.bundle, self.runtime, self.precision_used)
        elif self.precision_used == "int8":
            from fashion.model.precision import cpu_bf16_native
            from fashion.predict.quantize import quantize_int8

            self._forward = quantize_int8(
                self.model, conv_dtype=torch.bfloat16 if cpu_bf16_native() else None)

    def describe(self) -> str:
        """One line: the precision and runtime that run, and why (for ``fashion predict``)."""
        asked = f" (asked: {self.precision})" if self.precision != self.precision_used else ""
        how = f" (asked: {self.runtime_asked})" if self.runtime_asked != self.runtime else ""
        fell = f"; fell back: {'; '.join(self.fallbacks)}" if self.fallbacks else ""
        return (f"precision {self.precision_used}{asked}, runtime {self.runtime}{how}, "
                f"device {self.model.device}{fell}")

    @classmethod
    def from_pretrained(
        cls,
        uri_or_path: str | Path,
        *,
        device: str | torch.device | None = "auto",
        revision: str | None = None,
        precision: Precision = "fp32",
        runtime: Runtime = "auto",
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
        runtime: Runtime = "auto",
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
        embeddings: bool = False,
    ) -> list[ProductPrediction]:
        """One :class:`ProductPrediction` per product, in order. Unreadable images and fields of
        the wrong type raise :class:`fashion.DataError` naming the product (``fashion predict``
        rejects those rows instead). ``abstain``: under an attribute's fitted threshold the label
        is ``None`` with ``reason="below_threshold"`` (top-k kept; docs/trust.md).
        ``embeddings``: each prediction also carries ``embedding``, the vector :meth:`embed`
        returns, from the same forward pass (one encode per batch)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        check_top_k(top_k)
        items = check_products(products)
        if not items:
            return []
        loader: Iterable[Batch]
        if num_workers > 0:
            from torch.utils.data import DataLoader

            loader = DataLoader(items, batch_size=batch_size, collate_fn=self.model.prepare,
                                num_workers=num_workers, worker_init_fn=_quiet_worker)
        else:  # the next batch is prepared while this one runs
            loader = prefetch(self.model.prepare(items[i:i + batch_size])
                              for i in range(0, len(items), batch_size))
        out: list[ProductPrediction] = []
        for batch in loader:
            out.extend(self.run_batch(batch, top_k=top_k, abstain=abstain, embeddings=embeddings))
        return out

    @torch.inference_mode()
    def logits(self, batch: Batch) -> dict[str, torch.Tensor]:
        """fp32 logits per attribute for one prepared batch, on the chosen precision/runtime."""
        if self.runtime != "torch":
            return self._forward(batch)  # type: ignore[no-any-return]
        self.model.eval()
        dtype = autocast_dtype(self.precision_used)
        if dtype is None:
            return self._forward(batch)  # type: ignore[no-any-return]
        with torch.autocast(device_type=self.model.device.type, dtype=dtype):
            logits = self._forward(batch)
        return {a: x.float() for a, x in logits.items()}

    @torch.inference_mode()
    def logits_and_vectors(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:meth:`logits` and :meth:`embed_batch` from one encode (torch runtime; an ONNX graph
        computes the heads only, so there the vector is a second, eager encode)."""
        if self.runtime != "torch":
            return self.logits(batch), self.embed_batch(batch)
        model: FashionModel = self._forward
        model.eval()
        dtype = autocast_dtype(self.precision_used)
        with torch.autocast(device_type=self.model.device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            features, masks = model.encode(batch)
            logits = model.head_logits(features, masks)
            fused = compose(model, _fused(model, features, masks), logits, self.embedding_space)
        return {a: x.float() for a, x in logits.items()}, fused.float().cpu()

    @torch.inference_mode()
    def run_batch(self, batch: Batch, *, top_k: int = 3, abstain: bool = False,
                  embeddings: bool = False) -> list[ProductPrediction]:
        """Model + decoding for one prepared batch (``embeddings``: with each product's vector,
        from the same encode)."""
        logits, vectors = self.logits_and_vectors(batch) if embeddings else (self.logits(batch), None)
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
                                         diagnostics={"notes": notes, "missing": missing[i]},
                                         embedding=None if vectors is None else vectors[i].numpy()))
        return out

    # ------------------------------------------------------------------ embed

    def set_embedding_space(self, space: EmbeddingSpace | Mapping[str, Any] | None) -> EmbeddingSpace:
        """The space of every vector this predictor computes (:mod:`fashion.model.space`):
        None, the fused vector; ``{"emphasize": ["category", "pattern"], "emphasis": 0.5}``,
        with those attributes emphasized. Checked against the model's attributes."""
        self.embedding_space = check_space(self.model.heads, space)
        return self.embedding_space

    def embed(
        self, products: Iterable[Product | Mapping[str, Any]], *, batch_size: int = 32,
        normalize: bool = False, per_input: bool = False,
        space: EmbeddingSpace | Mapping[str, Any] | None = None,
    ) -> Any:
        """The product vector, one row per product: ``(N, D)`` float32. By default the fused
        vector every head reads; ``space`` (default: :meth:`set_embedding_space`'s) can add the
        heads of named attributes (:mod:`fashion.model.space`).

        Under an early fusion (concat, mean, gated) it is the fusion's output. Under a late
        fusion each head reads every input on its own, so the vector is the concatenation of
        the per-input features in the model's input order (zeros for a missing modality).
        ``fashion predict --engine ray --embeddings`` writes the same vectors. ``normalize``:
        rows L2-normalized, a numpy array (what ``fashion embed`` writes and fashion.search
        indexes). ``per_input``: a dict of vectors per fusion input (``image``, ``text``...).
        """
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        items = check_products(products)
        space = self.embedding_space if space is None else check_space(self.model.heads, space)
        chunks = [self.embed_batch(self.model.prepare(items[i:i + batch_size]), per_input=per_input,
                                   space=space) for i in range(0, len(items), batch_size)]
        dims = self.model.input_dims if per_input else {"": self.dimension(space)}
        merged = {n: torch.cat([c[n] if per_input else c for c in chunks]) if chunks
                  else torch.zeros(0, d) for n, d in dims.items()}
        out = {n: l2_normalize(v) if normalize else v for n, v in merged.items()}
        return out if per_input else out[""]

    @property
    def embedding_dim(self) -> int:
        """Length of the vectors :meth:`embed` returns (in the predictor's space)."""
        return self.dimension(self.embedding_space)

    def dimension(self, space: EmbeddingSpace) -> int:
        """Length of the vectors in ``space``."""
        fusion = self.model.fusion
        fused = sum(self.model.input_dims.values()) if fusion.late else int(fusion.output_dim)
        return space_dimension(self.model, fused, space)

    @torch.inference_mode()
    def embed_batch(self, batch: Batch, *, per_input: bool = False,
                    space: EmbeddingSpace | None = None) -> Any:
        """:meth:`embed` of one prepared batch (float32, on the CPU). The eager model runs it at
        the resolved precision (int8 and ONNX Runtime paths cover the heads, not this vector)."""
        self.model.eval()
        dtype = autocast_dtype(self.precision_used)
        with torch.autocast(device_type=self.model.device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            features, masks = self.model.encode(batch)
            if per_input:
                return {n: (features[n] * masks[n].unsqueeze(1).to(features[n].dtype)).float().cpu()
                        for n in self.model.input_dims}
            fused = _fused(self.model, features, masks)
            space = self.embedding_space if space is None else space
            if space.emphasize:
                logits = self.model.head_logits(features, masks, space.emphasize)
                fused = compose(self.model, fused, logits, space)
        return fused.float().cpu()


def _fused(model: FashionModel, features: Mapping[str, torch.Tensor],
           masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The vector the heads read (late fusion: the masked per-input features, concatenated)."""
    if model.fusion.late:
        return torch.cat([features[name] * masks[name].unsqueeze(1).to(features[name].dtype)
                          for name in model.input_dims], dim=1)
    return model.fusion(features, masks)  # type: ignore[no-any-return]


def l2_normalize(vectors: torch.Tensor | Any) -> Any:
    """Rows of ``vectors`` scaled to unit length, as a float32 numpy array."""
    import numpy as np
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)  # a zero row (no input) stays zero
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


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
    from fashion.data.manifest import TEXT_FIELDS
    from fashion.model.inputs import text_value

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


__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "Predictor",
    "ProductPrediction",
    "check_products",
    "check_top_k",
    "l2_normalize",
    "parse_device",
]
