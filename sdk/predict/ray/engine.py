"""Catalog scale-out on Ray Data: predict (and embed) many products across workers and machines.

Two entry points:

- :func:`predict_dataset` turns a :class:`ray.data.Dataset` of product rows (``id``, ``images``,
  ``title``, ``description``, ``brand`` and any extra columns) into a Dataset with the predictions
  added. It is :meth:`ray.data.Dataset.map_batches` with a callable class: each actor of the pool
  loads the bundle once; the model URI is resolved (and a Hub model downloaded) once, on the
  driver, and the actors load it from that local folder (on other nodes: from a copy the driver
  put in the object store, written once per node).
- :func:`run_ray_predict` is ``fashion predict MODEL INPUT --out OUT --engine ray``: INPUT is a
  file, folder or glob of CSV/JSONL/Parquet manifests, OUT a folder of Parquet files, one per
  input part (a CSV/JSONL file, or up to ``part_rows`` rows of a Parquet file). Each part is
  written to a temporary file and renamed when complete, so re-running the same command skips
  the parts already done and a run killed at any point finishes with every row exactly once.

Bad rows (a non-text title, an unreadable image) become rows with ``status="rejected"`` and the
``reason``, exactly as ``fashion predict`` rejects them; they never fail the job. Ray is an
optional extra: ``pip install 'fashion-sdk[ray]'``. See docs/scale.md.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashion._util.files import atomic_writer
from fashion.errors import ConfigError, DataError
from fashion.predict.batch import PredictSummary
from fashion.predict.ray.cluster import ray_session, require_ray
from fashion.predict.ray.inputs import (
    PART,
    PART_ROWS,
    RECORD,
    ROW,
    SOURCE,
    ManifestPart,
    expand_inputs,
    input_root,
    manifest_datasource,
    plan_parts,
)
from fashion.predict.ray.worker import (
    STATUS,
    ModelRef,
    PredictBatches,
    check_model_runs,
    check_space_of,
    prediction_columns,
    resolve_model,
    runtime_plugins,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

META_KEY = b"fashion.part"


# ------------------------------------------------------------------------------ resources


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def io_reserve(total_cpus: float) -> float:
    """CPUs kept free for reading: one CPU, or half of a one-CPU cluster."""
    return 1.0 if total_cpus >= 2 else total_cpus / 2


def default_concurrency(total_cpus: float, total_gpus: float = 0.0, num_gpus: float = 0.0) -> int:
    """Workers when none are asked for: one per GPU share, else one per CPU but the reader's."""
    if num_gpus > 0:
        return max(1, int(total_gpus // num_gpus))
    return max(1, int(total_cpus - io_reserve(total_cpus)))


def actor_cpus(total_cpus: float, concurrency: int, requested: float | None = None) -> float:
    """CPUs per map actor, so that reading always has CPUs left.

    Ray schedules the actor pool first; if the actors take every CPU, the read tasks that feed
    them never run and the job hangs (2 actors x 1 CPU on a 2-CPU machine). The default splits
    what is left after :func:`io_reserve` among the actors (at most 1 each); a request that
    leaves no CPU for reading is refused.
    """
    reserve = io_reserve(total_cpus)
    if requested is not None:
        if requested <= 0:
            raise ConfigError("num_cpus per worker must be positive, e.g. 0.5 or 1")
        if requested * concurrency > total_cpus - reserve + 1e-9:
            raise ConfigError(
                f"{concurrency} workers x {requested} CPUs leave no CPU to read the input on a "
                f"{total_cpus:g}-CPU cluster (Ray would wait forever); use at most "
                f"{(total_cpus - reserve) / concurrency:.2f} CPUs per worker or fewer workers."
            )
        return requested
    return round(min(1.0, (total_cpus - reserve) / concurrency), 3)


# ------------------------------------------------------------------------------ Python API



def predict_dataset(
    ds: ray.data.Dataset,
    model_uri: str | Path | ModelRef,
    *,
    batch_size: int = 32,
    concurrency: int | None = None,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    precision: str = "fp32",
    runtime: str = "torch",
    top_k: int = 3,
    embeddings: bool = False,
    embedding_space: Mapping[str, Any] | None = None,
    base_dir: str | Path | None = None,
) -> ray.data.Dataset:
    """Predict every product row of ``ds`` with ``model_uri`` on a pool of Ray actors.

    ``ds`` rows are product records (``id``, ``images`` as a list or a ``|``-separated string of
    paths, absolute or relative to ``base_dir`` (default: the current folder), ``title``,
    ``description``, ``brand``); every other column is carried through. The result adds
    ``status`` (``predicted``/``rejected``), ``reason`` (why a row was rejected), per attribute
    ``<a>_label``, ``<a>_score``, ``<a>_top_k`` (list of ``{label, score}``) and
    ``<a>_abstained``, ``missing`` and ``notes`` (as in ``fashion predict``), and with
    ``embeddings=True`` the product vector ``embedding`` (see :meth:`Predictor.embed`; the
    fused vector, or with ``embedding_space`` attributes emphasized, :mod:`fashion.model.space`).

    ``concurrency`` actors (default: one per CPU but one, or one per ``num_gpus`` share of the
    cluster's GPUs) each load the bundle once; ``num_cpus`` per actor defaults to a share that
    leaves one CPU for reading. Lazy, like every Dataset transform; Ray must be initialized.
    """
    ray = require_ray()
    from ray.data import ActorPoolStrategy

    from fashion.predict.precision import check_choice

    check_choice(precision, runtime)
    if batch_size < 1 or top_k < 1:
        raise ConfigError("batch_size and top_k must be at least 1")
    if num_gpus < 0:
        raise ConfigError("num_gpus per worker must be 0 or more")
    if not ray.is_initialized():
        raise ConfigError("Ray is not initialized; call ray.init() (or ray.init(address=...)) first.")
    resources = ray.cluster_resources()
    total_cpus, total_gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
    if num_gpus > 0 and total_gpus < num_gpus:
        raise ConfigError(
            f"each worker asks for {num_gpus} GPU but the Ray cluster has {total_gpus:g}; "
            "connect to a cluster with GPUs or drop --num-gpus-per-worker."
        )
    workers = concurrency or default_concurrency(total_cpus, total_gpus, num_gpus)
    if workers < 1:
        raise ConfigError("concurrency must be at least 1")
    cpus = actor_cpus(total_cpus, workers, num_cpus)
    if isinstance(model_uri, ModelRef):
        ref = model_uri
    else:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        ref = resolve_model(model_uri, ship=len(alive) > 1)
    device = "cuda" if num_gpus > 0 else "cpu"
    check_model_runs(ref, precision=precision, runtime=runtime, device=device)
    space = check_space_of(ref, embedding_space, embeddings=embeddings)
    return ds.map_batches(
        PredictBatches,
        fn_constructor_kwargs={
            "ref": ref, "precision": precision, "runtime": runtime, "device": device,
            "top_k": top_k, "embeddings": embeddings, "space": space, "plugins": runtime_plugins(),
            "threads": max(1, math.floor(cpus)),
            "base_dir": str(Path(base_dir).resolve()) if base_dir else None,
            "batch_size": batch_size,
        },
        # one block per call: Ray Data would otherwise concatenate blocks of different inputs,
        # and refuse columns whose types differ between files (a CSV's text, a JSONL list)
        batch_size=None,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=num_gpus or None,
    )


# ------------------------------------------------------------------------------ fashion predict --engine ray


@dataclass
class RaySummary(PredictSummary):
    """What ``fashion predict --engine ray`` did: the summary of ``fashion predict`` (rows in =
    predicted + rejected, ``resumed`` rows from the earlier run), plus parts, label counts and
    throughput."""

    resumed_parts: int = 0
    parts: int = 0
    workers: int = 0
    seconds: float = 0.0
    labels: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        done = self.rows_in - self.resumed
        return done / self.seconds if self.seconds > 0 else 0.0

    def add(self, table: pa.Table, attributes: Sequence[str]) -> None:
        if STATUS not in table.column_names:  # an empty part
            return
        statuses = table.column(STATUS).to_pylist()
        self.rows_in += len(statuses)
        self.predicted += statuses.count("predicted")
        self.rejected += statuses.count("rejected")
        for attribute in attributes:
            label, _, _, abstained = prediction_columns(attribute)
            counter = self.labels.setdefault(attribute, Counter())
            for value, gave_up in zip(table.column(label).to_pylist(),
                                      table.column(abstained).to_pylist(), strict=True):
                if gave_up:
                    counter["(abstained)"] += 1
                elif isinstance(value, list):
                    counter.update(value)
                elif value is not None:
                    counter[value] += 1

    def text(self) -> str:
        lines = [self.line()]
        if self.resumed_parts:
            lines.append(f"{self.resumed_parts} of {self.parts} parts were complete from the earlier run")
        for attribute, counts in self.labels.items():
            top = ", ".join(f"{label} {n}" for label, n in counts.most_common() if n)
            lines.append(f"  {attribute}: {top or '-'}")
        lines.append(f"{self.throughput:.1f} products/s ({self.rows_in - self.resumed} rows "
                     f"in {self.seconds:.1f} s on {self.workers} worker{'s' if self.workers != 1 else ''})")
        return "\n".join(lines)


def _complete(path: Path, part: ManifestPart) -> tuple[bool, str | None]:
    """Whether an output file is a finished part (and the model key it was written with)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        info = json.loads((meta.metadata or {}).get(META_KEY, b"{}"))
    except Exception:  # noqa: BLE001 - an unreadable file is not a finished part
        return False, None
    done = info.get("rows") == meta.num_rows and (part.rows is None or part.rows == meta.num_rows)
    return done, info.get("model")


def _write_part(out: Path, name: str, pieces: list[pa.Table], model_key: str) -> pa.Table:
    """Rows of one part in input order, written to a temporary file and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(pieces, promote_options="permissive")
    table = table.sort_by(ROW)
    dropped = [c for c in (SOURCE, PART, PART_ROWS, RECORD) if c in table.column_names]
    table = table.drop_columns(dropped)
    metadata = table.schema.metadata or {}  # the actors' (fashion.vectors): renaming drops it
    table = table.rename_columns(["row" if c == ROW else c for c in table.column_names])
    info = json.dumps({"rows": table.num_rows, "model": model_key}).encode()
    table = table.replace_schema_metadata({**metadata, META_KEY: info})
    with atomic_writer(out / name) as tmp:
        pq.write_table(table, tmp)
    return table


def run_ray_predict(
    model_uri: str | Path,
    input_path: str | Path,
    out: str | Path,
    *,
    address: str | None = None,
    concurrency: int | None = None,
    num_gpus_per_worker: float = 0,
    num_cpus_per_worker: float | None = None,
    embeddings: bool = False,
    embedding_space: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    top_k: int = 3,
    precision: str = "fp32",
    runtime: str = "torch",
    part_rows: int = 50_000,
    block_rows: int = 1_000,
    overwrite: bool = False,
    progress: bool = False,
) -> RaySummary:
    """``fashion predict --engine ray``: every input part to one Parquet file in ``out``."""
    from fashion.data.manifest import check_input_columns
    from fashion.data.outputs import check_output_paths

    ray = require_ray()
    out = Path(out)
    files = expand_inputs(input_path)
    # OUT is refused before anything is read when it is, holds or lies in an input (or the bundle)
    sources = [Path(input_path)] if Path(input_path).exists() else list(files)
    check_output_paths([*sources, *_local_bundle(model_uri)], folders={"--out": out})
    for file in files:
        check_input_columns(file)
    parts = plan_parts(files, input_root(input_path, files), part_rows)
    with ray_session(address):
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = progress
        if not progress:
            import logging

            logging.getLogger("ray.data").setLevel(logging.WARNING)
        out.mkdir(parents=True, exist_ok=True)
        for stale in [*out.glob(".*.tmp-*"), *out.glob(".*.tmp")]:  # left by a killed run
            stale.unlink(missing_ok=True)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        ref = resolve_model(model_uri, ship=len(alive) > 1)
        resources = ray.cluster_resources()
        workers = concurrency or default_concurrency(
            float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0)), num_gpus_per_worker)
        summary = RaySummary(parts=len(parts), workers=workers)
        todo = []
        for part in parts:
            target = out / part.name
            if target.exists():
                done, key = _complete(target, part)
                if done and key != ref.key and not overwrite:
                    raise ConfigError(
                        f"{target} holds predictions of another model; pass --overwrite to "
                        "replace them or choose another --out folder."
                    )
                if done and not overwrite:
                    summary.resumed_parts += 1
                    continue
            todo.append(part)
        attributes = _read_resumed(out, [p for p in parts if p not in todo], summary)
        summary.resumed = summary.rows_in
        t0 = time.perf_counter()
        if todo:
            ds = ray.data.read_datasource(manifest_datasource(todo, block_rows),
                                          num_cpus=io_reserve(cluster_cpus()))
            predicted = predict_dataset(
                ds, ref, batch_size=batch_size, concurrency=workers, num_cpus=num_cpus_per_worker,
                num_gpus=num_gpus_per_worker, precision=precision, runtime=runtime, top_k=top_k,
                embeddings=embeddings, embedding_space=embedding_space,
            )
            _collect(predicted, out, ref.key, todo, summary, attributes)
        summary.seconds = time.perf_counter() - t0
        return summary


def _local_bundle(model_uri: str | Path) -> list[Path]:
    """The bundle folder MODEL names, when it is one on this machine (an input OUT must spare)."""
    path = Path(model_uri)
    return [path] if "://" not in str(model_uri) and path.is_dir() else []


def _attributes(columns: Sequence[str]) -> list[str]:
    """The attributes whose prediction columns are among ``columns``."""
    names = set(columns)
    return [c.removesuffix("_abstained") for c in columns
            if c.endswith("_abstained") and c.removesuffix("_abstained") + "_label" in names]


def _read_resumed(out: Path, parts: Sequence[ManifestPart], summary: RaySummary) -> list[str] | None:
    """Count the rows of parts finished by an earlier run (reading only the status and label
    columns); their attributes."""
    import pyarrow.parquet as pq

    attributes: list[str] | None = None
    for part in parts:
        found = _attributes(pq.read_schema(out / part.name).names)
        attributes = attributes or found or None
        wanted = [STATUS] + [c for a in found for c in prediction_columns(a)[::3]]
        table = pq.read_table(out / part.name, columns=wanted) if found else pq.read_table(
            out / part.name)
        summary.add(table, found)
    return attributes


def _collect(ds: Any, out: Path, model_key: str, todo: Sequence[ManifestPart], summary: RaySummary,
             attributes: list[str] | None) -> None:
    """Stream the predicted blocks to the driver; write each part once all its rows are in."""
    import pyarrow.compute as pc

    pending: dict[str, list[Any]] = {}
    counts: Counter[str] = Counter()
    expected = {p.name: p.rows for p in todo}
    sources = {p.name: p.source for p in todo}
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if not attributes:
            attributes = _attributes(batch.column_names)
        for name in pc.unique(batch.column(PART)).to_pylist():
            piece = batch.filter(pc.equal(batch.column(PART), name))
            pending.setdefault(name, []).append(piece)
            counts[name] += piece.num_rows
            total = piece.column(PART_ROWS)[0].as_py()
            if expected[name] is not None and expected[name] != total:
                raise DataError(f"{name}: read {total} rows where the Parquet footer says "
                                f"{expected[name]}; the input file changed during the run.")
            if counts[name] > total:
                raise DataError(f"{name} ({sources[name]}): {counts[name]} rows came back for the "
                                f"{total} rows read, so rows were returned twice inside Ray (a "
                                "retried task); the part was not written. Run the same command "
                                "again to redo it.")
            if counts[name] == total:
                table = _write_part(out, name, pending.pop(name), model_key)
                summary.add(table, attributes)
    # A part without rows never produces a block: write it empty, so a re-run skips it too.
    for part in todo:
        if counts[part.name] == 0:
            import pyarrow as pa

            empty = pa.table({ROW: pa.array([], type=pa.int64()), SOURCE: pa.array([], pa.string()),
                              PART: pa.array([], pa.string()), PART_ROWS: pa.array([], pa.int64())})
            _write_part(out, part.name, [empty], model_key)
    if pending:
        missing = "; ".join(f"{name} ({sources[name]}): {counts[name]} of "
                            f"{pending[name][0].column(PART_ROWS)[0].as_py()} rows"
                            for name in sorted(pending))
        raise DataError(
            f"the Ray job ended before every row of some parts came back: {missing}. Those parts "
            f"were not written; the {len(todo) - len(pending)} other parts are complete in "
            f"{out}. Rows are lost inside Ray when a worker or the object store fails (see the "
            "Ray logs, /tmp/ray/session_latest/logs on the head node); running the same command "
            "again redoes only the unwritten parts."
        )


__all__ = [
    "ModelRef",
    "PredictBatches",
    "RaySummary",
    "actor_cpus",
    "check_model_runs",
    "expand_inputs",
    "predict_dataset",
    "require_ray",
    "resolve_model",
    "run_ray_predict",
]
