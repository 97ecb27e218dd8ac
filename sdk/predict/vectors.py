"""What a Predictor's product vectors were computed with, recorded beside them.

Two writers record it: ``fashion embed`` (a vectors file, :mod:`fashion.search.vectors`) and
``fashion predict --engine ray --embeddings`` (each Parquet part of its output folder, the
vector in the ``embedding`` column); ``fashion index build`` reads both. The record is JSON in
the Parquet schema's metadata under the key ``fashion.vectors``: the model revision that
computed the vectors, the model's URI, the dimension and, per attribute, the labels, whether it
is multilabel and the bundle's abstention threshold (the default ``--min-score`` of a filter).

The model revision is the content hash of the components that compute the vector (croppers,
backbones, fusion, and the heads of the attributes its space emphasizes): a model whose other
heads were recalibrated or extended keeps it, a retrained or swapped backbone changes it. The
record also holds the vector's space (:mod:`fashion.model.space`; absent in files written
before it existed: the fused vector).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from fashion._util.config import StrictModel
from fashion.model.space import FUSED, EmbeddingSpace

VECTORS_META = b"fashion.vectors"
VECTORS_FORMAT = 1
EMBEDDING = "embedding"  # the vector column of `fashion predict --engine ray --embeddings`


class AttributeInfo(StrictModel):
    labels: list[str]
    multilabel: bool = False
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)  # the bundle's abstention threshold


class VectorsInfo(StrictModel):
    """What a vectors file (and an index built from it) was computed with."""

    format: int = VECTORS_FORMAT
    model_revision: str
    model: str | None = None  # the model's URI or folder, for `fashion similar --image`
    dimension: int = Field(ge=1)
    attributes: dict[str, AttributeInfo] = Field(default_factory=dict)
    space: EmbeddingSpace = Field(default_factory=EmbeddingSpace)


def model_revision(model: Any, space: EmbeddingSpace = FUSED) -> str:
    """The content hash of the components that compute the vector in ``space`` (see the module
    docstring)."""
    heads = tuple(f"heads/{name}" for name in space.emphasize)
    prints = model.component_fingerprints_of(
        [p for p in model.component_modules()
         if p.startswith(("croppers/", "backbones/", "fusion")) or p in heads])
    return hashlib.sha256(json.dumps(prints, sort_keys=True).encode()).hexdigest()[:32]


def vectors_info(predictor: Any, *, model: str | None = None) -> VectorsInfo:
    """The :class:`VectorsInfo` of the vectors ``predictor`` computes (``model``: the URI to
    record, default the predictor's bundle URI or folder)."""
    network, bundle = predictor.model, predictor.bundle
    attributes = {}
    for name in network.attributes:
        spec = network.spec.attributes[name]
        task = network.task(name)
        attributes[name] = AttributeInfo(
            labels=list(task.labels), multilabel=bool(getattr(task, "multilabel", False)),
            min_score=spec.abstention.threshold if spec.abstention is not None else 0.0)
    if model is None and bundle is not None:
        model = bundle.uri or (str(Path(bundle.path).resolve()) if bundle.path else None)
    space = predictor.embedding_space
    return VectorsInfo(model_revision=model_revision(network, space), model=model,
                       dimension=predictor.embedding_dim, attributes=attributes, space=space)


def label_column(attribute: str) -> str:
    return f"{attribute}_label"


def score_column(attribute: str) -> str:
    return f"{attribute}_score"


__all__ = [
    "EMBEDDING",
    "VECTORS_FORMAT",
    "VECTORS_META",
    "AttributeInfo",
    "VectorsInfo",
    "label_column",
    "model_revision",
    "score_column",
    "vectors_info",
]
