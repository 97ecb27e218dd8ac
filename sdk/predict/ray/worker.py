"""The worker side of :mod:`fashion.predict.ray.engine`: the model each Ray actor predicts with.

A bundle is resolved once on the driver (:func:`resolve_model`, which also ships its files through
the object store when the cluster has more than one node); :class:`PredictBatches`, the callable
class of ``map_batches``, loads it once per actor (from the driver's folder, or a node-local copy
written once per node) and appends the prediction columns to each Arrow batch.
:func:`check_model_runs` refuses on the driver what every actor would refuse.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashion.errors import BundleError, ConfigError
from fashion.predict.ray.inputs import INTERNAL, RECORD, ROW, SOURCE
from fashion.predict.vectors import (
    EMBEDDING,
    VECTORS_META,
    label_column,
    score_column,
    vectors_info,
)

if TYPE_CHECKING:
    import pyarrow as pa


STATUS, REASON, MISSING, NOTES = "status", "reason", "missing", "notes"


def prediction_columns(attribute: str) -> tuple[str, str, str, str]:
    """The output columns of one attribute: label, score, top-k, abstained."""
    return (label_column(attribute), score_column(attribute), f"{attribute}_top_k",
            f"{attribute}_abstained")


# ------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class ModelRef:
    """A bundle resolved on the driver: its local folder, content key and (multi-node) files."""

    uri: str
    folder: str
    key: str  # sha256 of the bundle index (fashion.json): names the bundle's content
    files: Any = None  # ObjectRef of {relative path: bytes}, for nodes that lack ``folder``


def resolve_model(model_uri: str | Path, *, ship: bool = False) -> ModelRef:
    """Resolve ``model_uri`` once (a Hub model is downloaded to the cache here, not by actors).

    ``ship=True`` also puts the bundle's files in the Ray object store, for workers on nodes that
    cannot see the driver's folder.
    """
    from fashion.registry.bundle import INDEX_NAME, read_index
    from fashion.registry.uri import fetch_uri

    folder, uri = fetch_uri(model_uri)
    index_bytes = (folder / INDEX_NAME).read_bytes()
    key = hashlib.sha256(index_bytes).hexdigest()
    files = None
    if ship:
        import ray

        names = sorted(read_index(folder).files) + [INDEX_NAME]
        files = ray.put({name: (folder / name).read_bytes() for name in names})
    return ModelRef(uri=uri or str(folder), folder=str(folder.resolve()), key=key, files=files)


def _bundle_folder(ref: ModelRef) -> Path:
    """The bundle on this node: the driver's folder when visible, else a node-local copy."""
    from fashion.registry.bundle import INDEX_NAME
    from fashion.registry.local import fashion_home

    folder = Path(ref.folder)
    index = folder / INDEX_NAME
    if index.is_file() and hashlib.sha256(index.read_bytes()).hexdigest() == ref.key:
        return folder
    copy = fashion_home() / "ray-bundles" / ref.key
    if (copy / INDEX_NAME).is_file():
        return copy
    if ref.files is None:
        raise BundleError(
            f"model {ref.uri}: this worker cannot see the bundle folder {folder}; run the driver "
            "on a node that shares the folder, or use an hf:// or local:// URI."
        )
    import ray

    files: dict[str, bytes] = ray.get(ref.files)
    staging = copy.with_name(f"{ref.key}.tmp-{os.getpid()}")
    for name, data in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    try:
        staging.rename(copy)  # atomic: another worker of this node may have won the race
    except OSError:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return copy


def runtime_plugins() -> list[tuple[str, str]]:
    """Plugins registered at run time on this process (``register_plugin`` with an importable
    module), as ``(name, module)``: workers register them too. Built-ins and entry points load
    in every process by themselves."""
    from fashion.contract.manager import DEFAULT_PLUGINS, get_plugin_manager

    out = []
    for name, plugin in get_plugin_manager().list_name_plugin():
        if name in DEFAULT_PLUGINS or not isinstance(plugin, types.ModuleType):
            continue
        if plugin.__name__ != "__main__":
            out.append((name, plugin.__name__))
    return out


def _register_plugins(plugins: Sequence[tuple[str, str]]) -> None:
    from fashion.contract.manager import get_plugin_manager, register_plugin

    for name, module in plugins:
        if get_plugin_manager().get_plugin(name) is None:
            register_plugin(importlib.import_module(module), name=name)


# ------------------------------------------------------------------------------ the actor


class PredictBatches:
    """The callable class of :func:`predict_dataset`: one bundle per actor, one Arrow block in
    (run through the model ``batch_size`` rows at a time), the same block out with the
    prediction columns appended (with ``embeddings``, and the vectors' record of
    :mod:`fashion.predict.vectors` in the schema metadata, which ``fashion index build`` reads)."""

    def __init__(
        self,
        ref: ModelRef,
        *,
        precision: str = "fp32",
        runtime: str = "torch",
        device: str = "cpu",
        top_k: int = 3,
        embeddings: bool = False,
        space: dict[str, Any] | None = None,
        plugins: Sequence[tuple[str, str]] = (),
        threads: int = 1,
        base_dir: str | None = None,
        batch_size: int = 32,
    ) -> None:
        import torch

        from fashion.predict.predictor import Predictor

        torch.set_num_threads(max(1, threads))
        _register_plugins(plugins)
        self.predictor = Predictor.from_pretrained(
            _bundle_folder(ref), device=device, precision=precision,  # type: ignore[arg-type]
            runtime=runtime,  # type: ignore[arg-type]
        )
        self.predictor.set_embedding_space(space)  # before the schema: it sets the vector's width
        self.top_k, self.embeddings, self.batch_size = top_k, embeddings, max(1, batch_size)
        self.base = Path(base_dir or os.getcwd())
        self.schema = output_fields(self.predictor, embeddings=embeddings)
        self.metadata: dict[bytes, bytes] = {}
        if embeddings:
            info = vectors_info(self.predictor, model=ref.uri if "://" in ref.uri else ref.folder)
            self.metadata[VECTORS_META] = info.model_dump_json().encode()

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        clash = sorted(set(batch.column_names) & {f.name for f in self.schema})
        if clash:
            raise ConfigError(
                f"input columns {clash} have the names of prediction columns; rename them."
            )
        records = batch.to_pylist()
        results: list[tuple[str, Any, Any]] = [("rejected", "not processed", None)] * len(records)
        groups: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            groups.setdefault(record.get(SOURCE) or str(self.base / "(dataset)"), []).append(i)
        for source, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                self._predict_group(records, indices[start:start + self.batch_size], Path(source),
                                    results)
        columns = _result_columns(self.predictor.attributes, results, self.schema)
        for spec in self.schema:
            batch = batch.append_column(spec, pa.array(columns[spec.name], type=spec.type))
        metadata = {k: v for k, v in (batch.schema.metadata or {}).items() if k != VECTORS_META}
        return batch.replace_schema_metadata({**metadata, **self.metadata} or None)

    def _predict_group(self, records: list[dict[str, Any]], indices: list[int], source: Path,
                       results: list[tuple[str, Any, Any]]) -> None:
        from fashion.data.manifest import ManifestRow
        from fashion.predict.batch import prepare_rows

        rows = []
        for position, i in enumerate(indices, start=1):
            number = records[i].get(ROW)
            number = int(number) if number is not None else position
            raw = records[i].get(RECORD)
            if raw is not None:  # a CSV/JSONL row: its values, line and read error as read
                read = json.loads(raw)
                rows.append(ManifestRow(number, read["values"], read["line"], read["error"]))
            else:
                rows.append(ManifestRow(number, {k: v for k, v in records[i].items()
                                                 if k not in INTERNAL}))
        where = {row.row: i for row, i in zip(rows, indices, strict=True)}
        prepared, numbers, rejects = prepare_rows(self.predictor.model, rows, source)
        for reject in rejects:
            results[where[reject["row"]]] = ("rejected", reject["reason"], None)
        if prepared is None:
            return
        # one encode per batch feeds the heads and, with --embeddings, the vectors
        predictions = self.predictor.run_batch(prepared, top_k=self.top_k, embeddings=self.embeddings)
        for number, prediction in zip(numbers, predictions, strict=True):
            vector = None if prediction.embedding is None else prediction.embedding.tolist()
            prediction.embedding = None
            results[where[number]] = ("predicted", prediction.to_dict(), vector)


def output_fields(predictor: Any, *, embeddings: bool = False) -> list[pa.Field]:
    """The Arrow fields :class:`PredictBatches` appends, in order."""
    import pyarrow as pa

    top = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
    fields = [pa.field(STATUS, pa.string()), pa.field(REASON, pa.string())]
    for attribute in predictor.attributes:
        multilabel = bool(getattr(predictor.model.task(attribute), "multilabel", False))
        label, score, top_k, abstained = prediction_columns(attribute)
        fields += [pa.field(label, pa.list_(pa.string()) if multilabel else pa.string()),
                   pa.field(score, pa.float64()), pa.field(top_k, top),
                   pa.field(abstained, pa.bool_())]
    fields += [pa.field(MISSING, pa.list_(pa.string())), pa.field(NOTES, pa.list_(pa.string()))]
    if embeddings:
        fields.append(pa.field(EMBEDDING, pa.list_(pa.float32())))
    return fields


def _utf8(text: str) -> str:
    """``text`` as Arrow can hold it: a lone surrogate from the input (a JSONL ``\\ud800``
    escape, quoted in a reason) is written as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _result_columns(attributes: Sequence[str], results: Sequence[tuple[str, Any, Any]],
                    schema: Sequence[pa.Field]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {spec.name: [] for spec in schema}
    for status, payload, vector in results:
        predicted = status == "predicted"
        columns[STATUS].append(status)
        columns[REASON].append(None if predicted else _utf8(payload))
        for attribute in attributes:
            label, score, top_k, abstained = prediction_columns(attribute)
            p = payload["attributes"][attribute] if predicted else None
            columns[label].append(p["label"] if p else None)
            columns[score].append(p["score"] if p else None)
            columns[top_k].append([{"label": lbl, "score": s} for lbl, s in p["top_k"]] if p else None)
            columns[abstained].append(p["abstained"] if p else None)
        columns[MISSING].append(payload["diagnostics"]["missing"] if predicted else None)
        columns[NOTES].append([_utf8(n) for n in payload["diagnostics"]["notes"]]
                              if predicted else None)
        if EMBEDDING in columns:
            columns[EMBEDDING].append(vector)
    return columns


def check_space_of(ref: ModelRef, space: Mapping[str, Any] | None, *,
                   embeddings: bool) -> dict[str, Any] | None:
    """The embedding space the actors set, checked on the driver against the bundle's
    attributes (None: the fused vector)."""
    if not space:
        return None
    from fashion.model.space import check_space
    from fashion.registry.bundle import read_index

    if not embeddings:
        raise ConfigError("an embedding space applies to the vectors: pass --embeddings too.")
    return check_space(read_index(Path(ref.folder)).attributes, space).model_dump()


def check_model_runs(ref: ModelRef, *, precision: str, runtime: str, device: str) -> str:
    """Refuse on the driver, as one clear error, what every actor's :class:`fashion.Predictor`
    would refuse (an error in an actor's constructor reaches the driver as a Ray traceback):
    a precision the device cannot run, a missing ONNX export or onnxruntime. Returns the
    precision that will run."""
    import torch

    from fashion.predict.artifacts import gate_verdict, onnx_graph
    from fashion.predict.precision import resolve_precision
    from fashion.registry.bundle import read_index

    folder = Path(ref.folder)
    index = read_index(folder)
    validated, refused = gate_verdict(index)
    used = resolve_precision(precision, torch.device(device), runtime=runtime,
                             validated=validated, refused=refused)
    if runtime == "onnxruntime":
        from fashion.predict.export import require

        onnx_graph(index, folder, used)
        require("onnxruntime")
    return used


__all__ = [
    "ModelRef",
    "PredictBatches",
    "check_model_runs",
    "check_space_of",
    "output_fields",
    "prediction_columns",
    "resolve_model",
    "runtime_plugins",
]
