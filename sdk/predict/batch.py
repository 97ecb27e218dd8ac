"""The batch engine of ``fashion predict``: stream a CSV/JSONL/Parquet manifest through a
:class:`~fashion.predict.predictor.Predictor`.

Batches keep memory flat; every input row ends as one prediction line or one rejected line
(rows in = predicted + rejected); ``--resume`` continues an interrupted run; output paths go
through the one guard of every writer
(:func:`fashion.data.outputs.check_output_paths`). ``--engine ray`` hands the same records to
:mod:`fashion.predict.ray.engine`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from torch.utils.data import IterableDataset, get_worker_info

from fashion._util.faults import fault_point
from fashion.data.outputs import check_output_paths
from fashion.errors import ConfigError, DataError
from fashion.model.inputs import Batch, Product, ProductError
from fashion.model.network import FashionModel
from fashion.predict.predictor import Predictor, _quiet_worker, check_top_k
from fashion.predict.prefetch import prefetch

_FIELD = re.compile(r"field '(\w+)'")


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


def prepare_rows(model: FashionModel, rows: Sequence[Any], manifest: Path) -> tuple[
    Batch | None, list[int], list[dict[str, Any]]
]:
    """Turn manifest rows into one batch; bad rows become rejects and the rest still run."""
    from fashion.model.inputs import check_has_input, row_to_product

    products: list[Product] = []
    numbers: list[int] = []
    rejects: list[dict[str, Any]] = []
    for row in rows:
        try:
            product = check_has_input(row_to_product(row, manifest), f"{manifest}:{row.line or row.row}")
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
        from fashion.data.manifest import iter_manifest

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
                yield prepare_rows(self.model, chunk, self.manifest)


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
    from fashion.data.manifest import check_input_columns, count_rows

    manifest, out = Path(manifest), Path(out)
    # OUT "." has no name to derive from; check_output_paths then refuses the folder OUT
    rejects_path = (Path(rejects) if rejects else
                    out.with_name(out.stem + ".rejects.jsonl") if out.name else out / "rejects.jsonl")
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    check_top_k(top_k)
    outputs = {"--out": out, "--rejects": rejects_path}
    inputs: dict[str, Path] = {"input manifest": manifest}
    if predictor.bundle is not None and predictor.bundle.path is not None:
        inputs["model"] = Path(predictor.bundle.path)
    check_output_paths(inputs, outputs)
    _check_existing(outputs, resume=resume, overwrite=overwrite)
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
    from fashion._util.progress import progress

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


def _check_existing(outputs: Mapping[str, Path], *, resume: bool, overwrite: bool) -> None:
    """An existing non-empty output is replaced only with ``overwrite`` or continued with ``resume``."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one of them.")
    if not resume and not overwrite:
        for name, path in outputs.items():
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


__all__ = [
    "PredictSummary",
    "prepare_rows",
    "run_predict",
]
