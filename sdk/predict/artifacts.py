"""Optimized artifacts in a bundle: ONNX files listed (with sha256) in ``fashion.json`` and the
accuracy gate's verdict, under the index's ``optimizations`` key::

    "optimizations": {
      "onnx": {"fp32": {"file": "onnx/model.onnx", "inputs": [...], "outputs": [...], ...},
               "int8": {"file": "onnx/model.int8.onnx", ...}},
      "gate": {"max_loss": 0.5, "data": [...], "validated": ["torch:int8", ...],
               "refused": [...], "paths": {...}}
    }

The files are ordinary bundle files: verified on load, published and fetched with the bundle.
The record is parsed strictly when the index is read (:mod:`fashion.registry.optimizations`): a
damaged one is set aside and never used; :func:`onnx_graph` then refuses with what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fashion.errors import BundleError
from fashion.registry.optimizations import ONNX_FILES, RUNS_ON, optimizations_problem


def onnx_file(precision: str) -> str:
    return ONNX_FILES[precision]


def artifact_of(runtime: str, precision: str) -> str:
    """The ONNX artifact (``fp32``, ``int8``, ``int8-static``) the path ``runtime:precision`` runs."""
    return RUNS_ON.get(f"{runtime}:{precision}", precision)


def update_bundle(directory: str | Path, *, onnx: Mapping[str, Mapping[str, Any]] | None = None,
                  gate: Mapping[str, Any] | None = None, remove: Sequence[str] = ()) -> Any:
    """List new files (already written in the folder) in ``fashion.json`` with their sha256 and
    record ONNX graph descriptions and/or the gate verdict; the index is replaced atomically.
    The rest of the bundle is verified first, so a damaged bundle is never re-signed."""
    from fashion._util.files import atomic_write_text, sha256_file
    from fashion.registry.bundle_format import (
        HASHED_FROM,
        INDEX_NAME,
        FileEntry,
        dump_index,
        read_index,
        verify_bundle,
    )

    directory = Path(directory)
    index = read_index(directory)  # a damaged optimizations record is dropped: it is rebuilt here
    optimizations = dict(index.optimizations)
    for precision, entry in (onnx or {}).items():
        stale = optimizations.get("onnx", {}).get(precision, {}).get("file")
        for rel in (stale, entry.get("file")):  # the file was just written over
            if rel:
                index.files.pop(rel, None)
    verify_bundle(directory, index)
    for precision in remove:  # a refused export leaves the bundle, and so do its verdicts
        entry = optimizations.get("onnx", {}).pop(precision, None)
        if entry:
            index.files.pop(entry["file"], None)
            (directory / entry["file"]).unlink(missing_ok=True)
        if gate is None and "gate" in optimizations:
            optimizations["gate"] = _without(optimizations["gate"],
                                             {k for k, p in RUNS_ON.items() if p == precision})
    if onnx:
        graphs = dict(optimizations.get("onnx", {}))
        for precision, entry in onnx.items():
            rel = entry["file"]
            path = directory / rel
            if not path.is_file():
                raise BundleError(f"{path} was not written; export it again.")
            index.files[rel] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
            graphs[precision] = dict(entry)
        optimizations["onnx"] = graphs
        if "gate" in optimizations:  # a new artifact voids the earlier verdict on it
            optimizations["gate"] = _without(optimizations["gate"],
                                             {k for k, p in RUNS_ON.items() if p in onnx})
    if gate is not None:
        optimizations["gate"] = dict(gate)
    index.files = dict(sorted(index.files.items()))
    problem = optimizations_problem(optimizations, list(index.attributes), index.files)
    if problem is not None:  # what readers would set aside is never written
        raise BundleError(f"refusing to record optimizations in {directory / INDEX_NAME}: {problem}")
    index.optimizations = optimizations
    if index.format_version == HASHED_FROM - 1:
        index.format_version = HASHED_FROM  # format 3 + the index hash is format 4
    atomic_write_text(directory / INDEX_NAME, dump_index(index))
    return index


def onnx_graph(index: Any, directory: Path, precision: str) -> tuple[Path, dict[str, Any]]:
    """The ONNX file and graph description of ``precision`` in a loaded bundle."""
    if getattr(index, "optimizations_problem", None):
        raise BundleError(f"{index.optimizations_problem}. Until then, run it with runtime torch.")
    graphs = index.optimizations.get("onnx", {})
    if precision not in graphs:
        have = ", ".join(sorted(graphs)) or "none"
        how = (f"fashion optimize {directory} --precision int8-static" if precision == "int8-static"
               else f"fashion export {directory} --format onnx --precision {precision}")
        raise BundleError(
            f"bundle {directory} has no {precision} ONNX model (it has: {have}); create it with "
            f"`{how}`."
        )
    entry = graphs[precision]
    if entry["file"] not in index.files:
        raise BundleError(
            f"bundle {directory}: {entry['file']} is not listed in fashion.json; export it again."
        )
    return directory / entry["file"], entry


def gate_paths(index: Any) -> dict[str, dict[str, Any]]:
    """The gate's record of each path it judged (scores, CPU, speed), by ``runtime:precision``."""
    gate = getattr(index, "optimizations", {}).get("gate") or {}
    return dict(gate.get("paths", {}))


def gate_verdict(index: Any) -> tuple[list[str], list[str]]:
    """``(validated, refused)`` path keys (``runtime:precision``) the bundle's gate recorded."""
    gate = getattr(index, "optimizations", {}).get("gate") or {}
    return list(gate.get("validated", [])), list(gate.get("refused", []))


def _without(gate: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    out = dict(gate)
    out["paths"] = {k: v for k, v in gate.get("paths", {}).items() if k not in keys}
    for field in ("validated", "refused"):
        out[field] = [k for k in gate.get(field, []) if k not in keys]
    return out
