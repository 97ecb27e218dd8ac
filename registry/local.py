"""A model registry in a local folder (``$FASHION_HOME/registry``, default ~/.cache/fashion).

Layout::

    registry/
      .lock                          fcntl lock held while publishing or tagging
      tmp/                           staging; cleared by the next publisher
      blobs/<sha256>                 every file once, read-only, by content
      models/<org>--<name>/
        tags.json                    {"latest": "<revision>", "v1": "<revision>"}
        revisions/<revision>/        a bundle folder; files are hard links to blobs/
          .revision.json             id, created, message

A revision id is the first 16 hex digits of the sha256 of the bundle's ``fashion.json`` (which
lists the sha256 of every other file), so equal bundles get equal ids, and every read
(:meth:`LocalRegistry.fetch`, hence loading, ``fashion pull`` and ``fashion show``) checks that
the revision still hashes to its id and its files to their sha256: an edited or damaged revision
is refused, never loaded. A publish stages the revision in ``tmp/`` and renames it into place,
so a killed publish leaves no partial revision; the tag moves it intends are written to a journal
(``models/<name>/.pending-<revision>.json``) first and replayed by the next writer (or
``fashion doctor --repair``), so a publish killed after its rename still moves ``latest``. An
existing blob is re-hashed before it is reused: a damaged one is replaced, never linked into a
new revision. :meth:`LocalRegistry.doctor` checks all of this for the whole registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fashion._util.faults import fault_point
from fashion._util.files import link_or_copy, sha256_file
from fashion.errors import BundleError, ModelNotFoundError, RegistryError
from fashion.registry.base import (
    LATEST,
    ModelSummary,
    Revision,
    check_name,
    check_tag,
    decode_name,
    encode_name,
)
from fashion.registry.bundle_format import INDEX_NAME, verify_bundle, verify_for_publish
from fashion.registry.doctor import DoctorMixin

_META = ".revision.json"


def fashion_home() -> Path:
    return Path(os.environ.get("FASHION_HOME") or Path.home() / ".cache" / "fashion").expanduser()


class LocalRegistry(DoctorMixin):
    """Revisions and tags of named models in a folder; safe for concurrent publishers."""

    scheme = "local"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else fashion_home() / "registry"
        self._held = False  # this object holds the writers' lock (flock is per open file)

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    def _model_dir(self, name: str) -> Path:
        return self.root / "models" / encode_name(check_name(name))

    def _uri(self, name: str, revision: str) -> str:
        return f"local://{name}@{revision}"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """The writers' lock; pending tag journals of killed publishes are replayed first.

        An OS error while writing (a read-only ``FASHION_HOME``, a full disk, a name too long
        for the filesystem) becomes a :class:`RegistryError` naming the registry folder.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".lock", "a+") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                self._held = True
                try:
                    self._replay_journals()
                    yield
                finally:
                    self._held = False
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        except OSError as exc:
            raise RegistryError(
                f"cannot write to the local registry {self.root}: {exc.strerror or exc}"
                f"{f' ({exc.filename})' if exc.filename else ''}. Set FASHION_HOME to a writable "
                "folder with free space."
            ) from None

    # ------------------------------------------------------------------ publish

    def publish(
        self, bundle_dir: str | Path, name: str, *, tag: str | None = None, message: str | None = None
    ) -> Revision:
        """Store ``bundle_dir`` as a revision of ``name``; move ``latest`` (and ``tag``) to it."""
        bundle_dir = Path(bundle_dir)
        check_name(name)
        if tag is not None:
            check_tag(tag)
        index = verify_for_publish(bundle_dir)
        files = sorted(index.files) + [INDEX_NAME]
        revision = sha256_file(bundle_dir / INDEX_NAME)[:16]
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock():
            self._clear_staging()
            target = self._model_dir(name) / "revisions" / revision
            stage: Path | None = None
            if target.is_dir() and self.check_revision(name, revision) is not None:
                # the same revision, damaged since: set it aside and store it afresh
                (self.root / "tmp").mkdir(parents=True, exist_ok=True)
                os.rename(target, self.root / "tmp" / f"damaged-{uuid.uuid4().hex}")
            if not target.is_dir():
                stage = self.root / "tmp" / uuid.uuid4().hex
                stage.mkdir(parents=True)
                for rel in files:
                    expected = index.files[rel].sha256 if rel in index.files else None
                    blob = self._store_blob(bundle_dir / rel, expected)
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(blob, stage / rel)
                sequence = len(self._revision_ids(name))  # publish order (under the lock)
                meta = {"id": revision, "name": name, "created": created, "message": message,
                        "sequence": sequence}
                (stage / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
                target.parent.mkdir(parents=True, exist_ok=True)
            moved = [LATEST] + ([tag] if tag and tag != LATEST else [])
            journal = self._journal(name, revision)
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(json.dumps({t: revision for t in moved}), encoding="utf-8")
            if stage is not None:
                os.rename(stage, target)
            fault_point("push.renamed")
            self._set_tags(name, {t: revision for t in moved})
            journal.unlink(missing_ok=True)
        return Revision(name=name, id=revision, uri=self._uri(name, revision),
                        tags=self._tags_of(name, revision), created=created, message=message)

    def tag(self, name: str, revision: str, tag: str) -> Revision:
        """Point ``tag`` at ``revision`` (an id, a unique id prefix or another tag)."""
        check_tag(tag)
        with self._lock():
            revision_id = self._resolve(name, revision)
            self._set_tags(name, {tag: revision_id})
        return self._revision(name, revision_id)

    def _journal(self, name: str, revision: str) -> Path:
        return self._model_dir(name) / f".pending-{revision}.json"

    def _replay_journals(self) -> list[str]:
        """Finish the tag moves of publishes killed after their rename (lock held)."""
        done = []
        models = self.root / "models"
        for journal in sorted(models.glob("*/.pending-*.json")) if models.is_dir() else []:
            name = decode_name(journal.parent.name)
            revision = journal.name[len(".pending-"):-len(".json")]
            try:
                moves = dict(json.loads(journal.read_text(encoding="utf-8")))
            except (ValueError, TypeError, UnicodeDecodeError):
                moves = {}
            if moves and (journal.parent / "revisions" / revision).is_dir():
                self._set_tags(name, {str(t): str(r) for t, r in moves.items()})
                done.append(f"{name}@{revision}: moved {', '.join(sorted(moves))}")
            journal.unlink(missing_ok=True)
        return done

    def _finish_interrupted_publish(self, name: str, tags: dict[str, str]) -> dict[str, str]:
        """A read that finds no ``latest`` while a publish's tag journal is pending: replay it
        (what the next writer would do, under the writers' lock) and return the tags."""
        if self._held or not any(self._model_dir(name).glob(".pending-*.json")):
            return tags
        try:
            with self._lock():  # replays every pending journal
                pass
        except RegistryError:
            return tags  # a read-only registry: the error names `fashion doctor --repair`
        return self._read_tags(name)

    def _clear_staging(self) -> None:
        """Remove what killed publishers left behind (only called with the lock held)."""
        staging = self.root / "tmp"
        if staging.is_dir():
            for leftover in staging.iterdir():
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    def _store_blob(self, source: Path, expected: str | None) -> Path:
        """Copy ``source`` into ``blobs/`` by content (once) and return the blob path."""
        digest = expected or sha256_file(source)
        blob = self.blobs / digest
        if blob.is_file() and sha256_file(blob) == digest:
            return blob
        fault_point("push.blob")
        self.blobs.mkdir(parents=True, exist_ok=True)
        temp = self.root / "tmp" / f"blob-{uuid.uuid4().hex}"
        temp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, temp)
        if sha256_file(temp) != digest:
            temp.unlink()
            raise RegistryError(
                f"{source} changed while it was being published; publish the bundle again."
            )
        os.chmod(temp, 0o444)
        os.replace(temp, blob)  # over a damaged blob too: new revisions get a good copy
        return blob

    def _tags_path(self, name: str) -> Path:
        return self._model_dir(name) / "tags.json"

    def _read_tags(self, name: str) -> dict[str, str]:
        path = self._tags_path(name)
        if not path.is_file():
            return {}
        try:
            tags = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
                raise ValueError("not an object of tag -> revision")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(
                f"{path} is damaged ({exc}); run `fashion doctor --repair` to rebuild the tags."
            ) from None
        return {str(k): v for k, v in tags.items()}

    def _set_tags(self, name: str, changes: dict[str, str]) -> None:
        try:
            tags = self._read_tags(name)
        except RegistryError:
            tags = {}  # rebuilt from the moves at hand (doctor restores `latest`)
        tags.update(changes)
        path = self._tags_path(name)
        for leftover in path.parent.glob(".tags-*.json"):  # from writers killed mid-write
            leftover.unlink(missing_ok=True)
        temp = path.with_name(f".tags-{uuid.uuid4().hex}.json")
        temp.write_text(json.dumps(tags, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(temp, path)

    def _tags_of(self, name: str, revision: str) -> list[str]:
        return sorted(t for t, r in self._read_tags(name).items() if r == revision)

    # ------------------------------------------------------------------ read

    def _revision_ids(self, name: str) -> list[str]:
        folder = self._model_dir(name) / "revisions"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def _resolve(self, name: str, revision: str | None) -> str:
        revision = revision or LATEST
        ids = self._revision_ids(name)
        if not ids:
            known = ", ".join(m.name for m in self.list_models()) or "none"
            raise ModelNotFoundError(
                f"no model named {name!r} in the local registry {self.root} (models: {known}). "
                "To look in another folder, set FASHION_HOME to the folder that holds registry/; "
                "for the Hub use hf://org/name (or --registry hf). Publish one with "
                f"`fashion push BUNDLE {name}`."
            )
        tags = self._read_tags(name)
        if revision == LATEST and LATEST not in tags:
            tags = self._finish_interrupted_publish(name, tags)
        if revision in tags:
            return tags[revision]
        matches = [i for i in ids if i.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
        if revision == LATEST:
            raise ModelNotFoundError(
                f"model {name!r} in the local registry {self.root} has revisions "
                f"({', '.join(ids)}) but no 'latest' tag: a publish was interrupted before it "
                "moved its tags. Run `fashion doctor --repair` (it points latest at the most "
                f"recently published revision), or name a revision: local://{name}@REVISION."
            )
        raise ModelNotFoundError(
            f"model {name!r} has no revision or tag {revision!r} "
            f"(tags: {', '.join(sorted(tags)) or 'none'}; see `fashion models` or "
            f"list_revisions({name!r}))."
        )

    def _meta(self, name: str, revision_id: str) -> dict[str, Any]:
        path = self._model_dir(name) / "revisions" / revision_id / _META
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _revision(self, name: str, revision_id: str) -> Revision:
        meta = self._meta(name, revision_id)
        return Revision(name=name, id=revision_id, uri=self._uri(name, revision_id),
                        tags=self._tags_of(name, revision_id), created=meta.get("created"),
                        message=meta.get("message"))

    def fetch(self, name: str, revision: str | None = None, *, verify: bool = True) -> Path:
        """The folder of a revision (``latest`` by default), checked against its id (the hash of
        its ``fashion.json``) and, with ``verify``, every file against its sha256."""
        revision_id = self._resolve(name, revision)
        folder = self._model_dir(name) / "revisions" / revision_id
        problem = self.check_revision(name, revision_id, files=verify)
        if problem is not None:
            raise BundleError(
                f"local://{name}@{revision_id} in the local registry {self.root} is damaged: "
                f"{problem}. It is refused, not loaded. Run `fashion doctor --repair` to set it "
                "aside, then publish the bundle again (`fashion push BUNDLE "
                f"{name}`)."
            )
        return folder

    def check_revision(self, name: str, revision_id: str, *, files: bool = True) -> str | None:
        """Why the revision is damaged, or ``None`` when it hashes to its id (and, with
        ``files``, every file matches its sha256 in ``fashion.json``)."""
        folder = self._model_dir(name) / "revisions" / revision_id
        index = folder / INDEX_NAME
        if not index.is_file():
            return f"its {INDEX_NAME} is missing"
        if sha256_file(index)[:16] != revision_id:
            return (f"its {INDEX_NAME} was changed after publishing (it no longer hashes to "
                    "the revision id)")
        if files:
            try:
                verify_bundle(folder)
            except BundleError as exc:
                return str(exc).split(". ")[0].replace(f"bundle {folder}: ", "")
        return None

    def list_models(self) -> list[ModelSummary]:
        models = self.root / "models"
        out = []
        for folder in sorted(models.iterdir()) if models.is_dir() else []:
            name = decode_name(folder.name)
            ids = self._revision_ids(name)
            if not ids:
                continue
            tags = self._read_tags(name)
            latest = tags.get(LATEST)
            updated = self._revision(name, latest).created if latest else None
            out.append(ModelSummary(name=name, uri=f"local://{name}", latest=latest, tags=tags,
                                    revisions=len(ids), updated=updated))
        return out

    def list_revisions(self, name: str) -> list[Revision]:
        """Every revision of ``name``, oldest first, with the tags pointing at it."""
        ids = self._revision_ids(name)
        if not ids:
            self._resolve(name, None)  # raises ModelNotFoundError
        order = {i: self._meta(name, i).get("sequence", 0) for i in ids}
        return [self._revision(name, i) for i in sorted(ids, key=lambda i: (order[i], i))]

    def show(self, name: str, revision: str | None = None) -> dict[str, Any]:
        path = self.fetch(name, revision, verify=False) / INDEX_NAME
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def delete(self, name: str, revision: str) -> list[str]:
        """Remove one revision (an id, a unique id prefix or a tag); return the tags that pointed
        at it. ``latest`` moves to the newest revision left; blobs stay until :meth:`gc`."""
        with self._lock():
            revision_id = self._resolve(name, revision)
            tags = self._read_tags(name)
            dropped = sorted(t for t, r in tags.items() if r == revision_id)
            left = [r for r in self.list_revisions(name) if r.id != revision_id]
            kept = {t: r for t, r in tags.items() if r != revision_id}
            if LATEST in dropped and left:
                kept[LATEST] = left[-1].id
            folder = self._model_dir(name) / "revisions" / revision_id
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            os.rename(folder, self.root / "tmp" / f"deleted-{uuid.uuid4().hex}")  # atomic
            if left:
                path = self._tags_path(name)
                temp = path.with_name(f".tags-{uuid.uuid4().hex}.json")
                temp.write_text(json.dumps(kept, indent=2, sort_keys=True), encoding="utf-8")
                os.replace(temp, path)
            else:
                shutil.rmtree(self._model_dir(name), ignore_errors=True)
            self._clear_staging()
        return dropped

    def gc(self) -> tuple[int, int]:
        """Remove blobs no revision uses; return (files removed, bytes freed)."""
        with self._lock():
            used: set[str] = set()
            models = self.root / "models"
            for index in models.glob(f"*/revisions/*/{INDEX_NAME}") if models.is_dir() else []:
                used.add(sha256_file(index))
                try:
                    files = json.loads(index.read_text(encoding="utf-8")).get("files", {})
                    used.update(entry["sha256"] for entry in files.values())
                except (ValueError, KeyError, TypeError, AttributeError):
                    return 0, 0  # a damaged revision: keep every blob (see `fashion doctor`)
            removed, freed = 0, 0
            for blob in self.blobs.iterdir() if self.blobs.is_dir() else []:
                if blob.name not in used:
                    freed += blob.stat().st_size
                    blob.unlink()
                    removed += 1
        return removed, freed



__all__ = ["LocalRegistry", "fashion_home"]
