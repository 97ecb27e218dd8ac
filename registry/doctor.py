"""``fashion doctor``: check a local registry against its hashes and finish what killed writers
left undone.

Checks, in order (each finding names the path and what is wrong):

1. leftovers of killed writers: staging folders and temp files in ``tmp/``, temp tag files
   (``.tags-*.json``) and tag journals of publishes killed after their rename;
2. every blob: its sha256 must equal its file name;
3. every revision: its ``fashion.json`` must hash to its id, and every file must match its
   sha256 (a damaged file is also a damaged blob: revisions share blobs by hard link);
4. every model's tags: ``tags.json`` must parse, every tag must point at an existing revision,
   and a model with revisions must have ``latest``.

``--repair`` does only what has one right answer: removes leftovers, replays journals (the tag
moves the killed publish had written down), restores a damaged blob from an intact copy when a
revision holds one (else removes the blob, so the next publish stores it again), moves damaged
revisions to ``quarantine/`` (nothing is deleted), drops tags pointing at revisions that are
gone, and points a missing ``latest`` at the most recently published intact revision.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion._util.files import sha256_file
from fashion.registry.base import LATEST, decode_name
from fashion.registry.bundle_format import read_index


@dataclass
class Finding:
    """One problem: ``kind`` (leftover, journal, blob, revision, tags), the path, what is wrong,
    and whether it was repaired."""

    kind: str
    path: str
    problem: str
    repaired: bool = False

    def line(self) -> str:
        state = "repaired" if self.repaired else "found"
        return f"[{state}] {self.kind}: {self.path}: {self.problem}"


@dataclass
class DoctorReport:
    root: str
    blobs: int = 0
    revisions: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is left to repair."""
        return all(f.repaired for f in self.findings)

    def summary(self) -> str:
        left = sum(not f.repaired for f in self.findings)
        fixed = len(self.findings) - left
        return (f"{self.root}: {self.blobs} blobs, {self.revisions} revisions checked; "
                f"{len(self.findings)} problems ({fixed} repaired, {left} left)")

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "blobs": self.blobs, "revisions": self.revisions, "ok": self.ok,
                "findings": [f.__dict__ for f in self.findings]}


def run_doctor(registry: Any, *, repair: bool = False) -> DoctorReport:
    """See the module docstring. With ``repair`` the registry's lock is held throughout."""
    report = DoctorReport(str(registry.root))
    if not registry.root.is_dir():
        return report
    if not repair:
        _check(registry, report, repair=False)
        return report
    # the lock replays pending journals on entry: report them before taking it
    for journal in sorted((registry.root / "models").glob("*/.pending-*.json")):
        report.findings.append(Finding("journal", str(journal), "a publish was killed before "
                                       "moving its tags; replayed", repaired=True))
    with registry._lock():
        _check(registry, report, repair=True)
    return report


def _check(registry: Any, report: DoctorReport, *, repair: bool) -> None:

    root = registry.root
    add = report.findings.append
    # 1. leftovers
    staging = root / "tmp"
    for leftover in sorted(staging.iterdir()) if staging.is_dir() else []:
        add(Finding("leftover", str(leftover), "staging left by a killed writer", repaired=repair))
    if repair:
        registry._clear_staging()
    models = root / "models"
    model_dirs = sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    for folder in model_dirs:
        for temp in sorted(folder.glob(".tags-*.json")):
            add(Finding("leftover", str(temp), "temp tag file of a killed writer", repaired=repair))
            if repair:
                temp.unlink(missing_ok=True)
        if not repair:
            for journal in sorted(folder.glob(".pending-*.json")):
                add(Finding("journal", str(journal), "a publish was killed before moving its "
                            "tags; `--repair` replays it"))
    # 2. blobs
    damaged_blobs: dict[str, Path] = {}
    blobs = sorted(registry.blobs.iterdir()) if registry.blobs.is_dir() else []
    for blob in blobs:
        if not blob.is_file():
            continue
        report.blobs += 1
        if sha256_file(blob) != blob.name:
            damaged_blobs[blob.name] = blob
    # 3. revisions
    intact_copies: dict[str, Path] = {}
    damaged_revisions: list[tuple[str, str, str]] = []
    for folder in model_dirs:
        name = decode_name(folder.name)
        for revision_id in registry._revision_ids(name):
            report.revisions += 1
            problem = registry.check_revision(name, revision_id)
            revision = folder / "revisions" / revision_id
            if problem is not None:
                damaged_revisions.append((name, revision_id, problem))
                continue
            index = read_index(revision)  # check_revision has just verified it
            for rel, entry in index.files.items():
                if entry.sha256 in damaged_blobs:
                    file = revision / rel
                    if not os.path.samefile(file, damaged_blobs[entry.sha256]):
                        intact_copies[entry.sha256] = file
    for digest, blob in damaged_blobs.items():
        copy = intact_copies.get(digest)
        fix = "restored from an intact copy" if copy else "removed (the next publish stores it again)"
        add(Finding("blob", str(blob), f"content does not match its sha256; {fix if repair else 'damaged'}",
                    repaired=repair))
        if repair:
            if copy is not None:
                temp = root / f"blob-{uuid.uuid4().hex}.tmp"
                shutil.copyfile(copy, temp)
                os.chmod(temp, 0o444)
                os.replace(temp, blob)
            else:
                blob.unlink(missing_ok=True)
    quarantine = root / "quarantine"
    for name, revision_id, problem in damaged_revisions:
        revision = registry._model_dir(name) / "revisions" / revision_id
        add(Finding("revision", f"local://{name}@{revision_id}",
                    problem + ("; moved to quarantine/" if repair else ""), repaired=repair))
        if repair:
            quarantine.mkdir(parents=True, exist_ok=True)
            os.rename(revision, quarantine / f"{revision.parent.parent.name}@{revision_id}-"
                                             f"{uuid.uuid4().hex[:6]}")
    # 4. tags
    for folder in model_dirs:
        name = decode_name(folder.name)
        ids = registry._revision_ids(name)
        path = folder / "tags.json"
        try:
            tags = registry._read_tags(name)
        except Exception as exc:  # noqa: BLE001 - RegistryError: damaged tags.json
            add(Finding("tags", str(path), f"{exc}".split(";")[0], repaired=repair))
            tags = {}
            if repair:
                path.unlink(missing_ok=True)
        dangling = {t: r for t, r in tags.items() if r not in ids}
        for tag, revision_id in sorted(dangling.items()):
            add(Finding("tags", f"local://{name}@{tag}",
                        f"points at revision {revision_id}, which does not exist"
                        + ("; tag removed" if repair and tag != LATEST else ""), repaired=repair))
        if repair and dangling:
            kept = {t: r for t, r in tags.items() if t not in dangling}
            path.write_text(json.dumps(kept, indent=2, sort_keys=True), encoding="utf-8")
            tags = kept
        if ids and LATEST not in tags:
            newest = max(ids, key=lambda i: (registry._meta(name, i).get("sequence", 0), i))
            add(Finding("tags", f"local://{name}",
                        "has revisions but no 'latest'" + (f"; set to {newest}, the most "
                        "recently published" if repair else ""), repaired=repair))
            if repair:
                registry._set_tags(name, {LATEST: newest})
        elif not ids and tags and repair:
            path.unlink(missing_ok=True)


class DoctorMixin:
    """``doctor()`` for :class:`~fashion.registry.local.LocalRegistry` (mixed in there)."""

    def doctor(self, *, repair: bool = False) -> DoctorReport:
        """Check every blob and revision against its hash, the tags and leftovers of killed
        writers; with ``repair``, fix what has one right answer (see the module docstring)."""
        return run_doctor(self, repair=repair)


__all__ = ["DoctorMixin", "DoctorReport", "Finding", "run_doctor"]
