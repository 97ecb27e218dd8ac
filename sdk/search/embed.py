"""``fashion embed``: stream a manifest through a Predictor into a vectors file (Parquet).

The contract of ``fashion predict`` (:func:`fashion.predict.batch.run_predict`, whose row
reading, rejects, progress and output guard this reuses): every input row ends as one vector
row or one rejected line (rows in = embedded + rejected); ``--resume`` continues an interrupted
run. One forward per batch gives the attributes and the vector
(:meth:`~fashion.predict.predictor.Predictor.run_batch` with ``embeddings=True``).

Parquet files cannot be appended to, so a run writes its rows as part files, each renamed into
``OUT.parts/`` once complete (a kill loses at most the rows not yet in a part, which a resumed
run embeds again); the last step joins the parts into OUT (atomically) and removes the folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashion._util.faults import fault_point
from fashion._util.files import atomic_writer
from fashion._util.progress import progress
from fashion.errors import ConfigError, DataError
from fashion.predict.batch import _check_existing, _Chunks, _read_done, _write_lines, prepare_rows
from fashion.predict.predictor import Predictor, l2_normalize
from fashion.predict.prefetch import prefetch
from fashion.search.vectors import VectorsInfo, read_info, read_rows, records_table, vectors_info

PART_ROWS = 1024  # rows per part file (FASHION_EMBED_PART_ROWS): what a kill can cost


@dataclass
class EmbedSummary:
    rows_in: int = 0
    embedded: int = 0
    rejected: int = 0
    resumed: int = 0  # rows already done by an earlier run

    def line(self) -> str:
        text = f"{self.rows_in} rows in = {self.embedded} embedded + {self.rejected} rejected"
        return text + (f" ({self.resumed} from the earlier run)" if self.resumed else "")


class _RowsWithImages(_Chunks):
    """The prepared batches of ``fashion predict``, with each row's first image (a thumbnail)."""

    def __iter__(self) -> Iterator[tuple[Any, list[int], list[dict[str, Any]], dict[int, str]]]:  # type: ignore[override]
        from fashion.model.inputs import row_to_product

        for chunk in self.chunks():
            images: dict[int, str] = {}
            for row in chunk:
                try:
                    first = row_to_product(row, self.manifest).images[:1]
                except DataError:
                    continue  # the row is rejected by prepare_rows with its reason
                if first and isinstance(first[0], str):
                    images[row.row] = first[0]
            yield (*prepare_rows(self.model, chunk, self.manifest), images)


def parts_folder(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _done_parts(parts: Path, info: VectorsInfo) -> tuple[list[Path], set[int]]:
    """The complete part files of an interrupted run, and the rows they hold."""
    files = sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []
    rows: set[int] = set()
    for path in files:
        if read_info(path).model_revision != info.model_revision:
            raise ConfigError(f"{path} holds vectors of another model revision; it cannot be "
                              "resumed with this model. Run again with --overwrite.")
        rows |= read_rows(path)
    return files, rows


def run_embed(
    predictor: Predictor,
    manifest: str | Path,
    out: str | Path,
    *,
    rejects: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    top_k: int = 1,
) -> EmbedSummary:
    """Stream ``manifest`` through ``predictor``; vectors and attributes to ``out`` (Parquet),
    unreadable rows to ``rejects`` (JSONL, default ``OUT``'s stem + ``.rejects.jsonl``)."""
    from fashion.data.manifest import check_input_columns, count_rows
    from fashion.data.outputs import check_output_paths

    manifest, out = Path(manifest), Path(out)
    rejects_path = (Path(rejects) if rejects else
                    out.with_name(out.stem + ".rejects.jsonl") if out.name else out / "rejects.jsonl")
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    parts = parts_folder(out)
    inputs: dict[str, Path] = {"input manifest": manifest}
    if predictor.bundle is not None and predictor.bundle.path is not None:
        inputs["model"] = Path(predictor.bundle.path)
    check_output_paths(inputs, {"--out": out, "--rejects": rejects_path},
                       folders={"the part folder": parts})
    outputs = {"--out": out, "--rejects": rejects_path}
    if not resume and not overwrite and parts.is_dir() and any(parts.iterdir()):
        raise ConfigError(f"{parts} holds the parts of an interrupted run; pass --resume to "
                          "continue it or --overwrite to start over.")
    _check_existing(outputs, resume=resume, overwrite=overwrite)
    check_input_columns(manifest)
    info = vectors_info(predictor)
    if overwrite:
        shutil.rmtree(parts, ignore_errors=True)
        out.unlink(missing_ok=True)
    done_out = set()
    if resume and out.is_file():
        if read_info(out).model_revision != info.model_revision:
            raise ConfigError(f"--out {out} holds vectors of another model revision; run again "
                              "with --overwrite (or another --out) for this model.")
        done_out = read_rows(out)
    files, done_parts = _done_parts(parts, info) if resume else ([], set())
    done_rejected, n_rejected = _read_done(rejects_path) if resume else (set(), 0)
    done = done_out | done_parts | done_rejected
    summary = EmbedSummary(embedded=len(done_out | done_parts), rejected=n_rejected,
                           resumed=len(done))
    parts.mkdir(parents=True, exist_ok=True)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    rows_in = count_rows(manifest)
    buffer: list[dict[str, Any]] = []
    part_rows = int(os.environ.get("FASHION_EMBED_PART_ROWS", "") or PART_ROWS)

    def flush() -> None:
        if buffer:
            files.append(_write_part(parts, len(files), info, buffer))
            buffer.clear()
            fault_point("embed.part")

    source = prefetch(_RowsWithImages(predictor.model, manifest, done, batch_size))
    with open(rejects_path, "a" if resume else "w", encoding="utf-8") as reject_file, \
            progress("embed", total=max(0, rows_in - len(done))) as bar:
        for batch, numbers, bad, images in source:
            _write_lines(reject_file, bad)
            summary.rejected += len(bad)
            if batch is not None:
                results = predictor.run_batch(batch, top_k=top_k, embeddings=True)
                vectors = l2_normalize([r.embedding for r in results])
                for number, result, vector in zip(numbers, results, vectors, strict=True):
                    buffer.append({"id": result.id, "row": number, "vector": vector,
                                   "image": images.get(number),
                                   "attributes": {a: (p.label, float(p.score))
                                                  for a, p in result.attributes.items()}})
                summary.embedded += len(results)
                if len(buffer) >= part_rows:
                    flush()
            bar.update(len(bad) + (len(numbers) if batch is not None else 0))
        flush()
    _join(out, info, ([out] if done_out else []) + files)
    shutil.rmtree(parts, ignore_errors=True)
    summary.rows_in = rows_in
    return summary


def _write_part(parts: Path, number: int, info: VectorsInfo, records: list[dict[str, Any]]) -> Path:
    import pyarrow.parquet as pq

    path = parts / f"part-{number:06d}.parquet"
    with atomic_writer(path) as tmp:
        pq.write_table(records_table(info, records), tmp)
    return path


def _join(out: Path, info: VectorsInfo, sources: list[Path]) -> None:
    """The rows of ``sources`` in order into ``out``, atomically, one part in memory at a time."""
    import pyarrow.parquet as pq

    from fashion.search.vectors import iter_tables, schema

    target = schema(info)
    with atomic_writer(out) as tmp:
        with pq.ParquetWriter(tmp, target) as writer:
            for source in sources:
                for table in iter_tables(source):
                    if table.num_rows:
                        writer.write_table(table.cast(target))


__all__ = ["EmbedSummary", "parts_folder", "run_embed"]
