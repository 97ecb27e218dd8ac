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
lists the sha256 of every other file), so equal bundles get equal ids. A publish stages the
revision in ``tmp/`` and renames it into place, so a killed publish leaves no partial revision.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fashion.errors import ModelNotFoundError, RegistryError
from fashion.registry.base import ModelSummary, Revision, check_name, check_tag
from fashion.registry.bundle import MANIFEST_NAME, sha256_file, verify_bundle

_META = ".revision.json"
LATEST = "latest"


def fashion_home() -> Path:
    return Path(os.environ.get("FASHION_HOME") or Path.home() / ".cache" / "fashion").expanduser()


def _encode(name: str) -> str:
    return name.replace("/", "--")


def _decode(folder: str) -> str:
    return folder.replace("--", "/")


class LocalRegistry:
    """Revisions and tags of named models in a folder; safe for concurrent publishers."""

    scheme = "local"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else fashion_home() / "registry"

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    def _model_dir(self, name: str) -> Path:
        return self.root / "models" / _encode(check_name(name))

    def _uri(self, name: str, revision: str) -> str:
        return f"local://{name}@{revision}"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ publish

    def publish(
        self, bundle_dir: str | Path, name: str, *, tag: str | None = None, message: str | None = None
    ) -> Revision:
        """Store ``bundle_dir`` as a revision of ``name``; move ``latest`` (and ``tag``) to it."""
        bundle_dir = Path(bundle_dir)
        check_name(name)
        if tag is not None:
            check_tag(tag)
        manifest = verify_bundle(bundle_dir)
        files = sorted(manifest.files) + [MANIFEST_NAME]
        revision = sha256_file(bundle_dir / MANIFEST_NAME)[:16]
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock():
            self._clear_staging()
            target = self._model_dir(name) / "revisions" / revision
            if not target.is_dir():
                stage = self.root / "tmp" / uuid.uuid4().hex
                stage.mkdir(parents=True)
                for rel in files:
                    expected = manifest.files[rel].sha256 if rel in manifest.files else None
                    blob = self._store_blob(bundle_dir / rel, expected)
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(blob, stage / rel)
                sequence = len(self._revision_ids(name))  # publish order (under the lock)
                meta = {"id": revision, "name": name, "created": created, "message": message,
                        "sequence": sequence}
                (stage / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(stage, target)
            moved = [LATEST] + ([tag] if tag and tag != LATEST else [])
            self._set_tags(name, {t: revision for t in moved})
        return Revision(name=name, id=revision, uri=self._uri(name, revision),
                        tags=self._tags_of(name, revision), created=created, message=message)

    def tag(self, name: str, revision: str, tag: str) -> Revision:
        """Point ``tag`` at ``revision`` (an id, a unique id prefix or another tag)."""
        check_tag(tag)
        with self._lock():
            revision_id = self._resolve(name, revision)
            self._set_tags(name, {tag: revision_id})
        return self._revision(name, revision_id)

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
        if blob.is_file():
            return blob
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
        os.replace(temp, blob)
        return blob

    def _tags_path(self, name: str) -> Path:
        return self._model_dir(name) / "tags.json"

    def _read_tags(self, name: str) -> dict[str, str]:
        path = self._tags_path(name)
        if not path.is_file():
            return {}
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def _set_tags(self, name: str, changes: dict[str, str]) -> None:
        tags = self._read_tags(name)
        tags.update(changes)
        path = self._tags_path(name)
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
                f"Publish one with `fashion push BUNDLE {name}`."
            )
        tags = self._read_tags(name)
        if revision in tags:
            return tags[revision]
        matches = [i for i in ids if i.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
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

    def fetch(self, name: str, revision: str | None = None) -> Path:
        """The folder of a revision (``latest`` by default); it is a loadable bundle."""
        return self._model_dir(name) / "revisions" / self._resolve(name, revision)

    def list_models(self) -> list[ModelSummary]:
        models = self.root / "models"
        out = []
        for folder in sorted(models.iterdir()) if models.is_dir() else []:
            name = _decode(folder.name)
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
        path = self.fetch(name, revision) / MANIFEST_NAME
        return json.loads(path.read_text(encoding="utf-8"))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a filesystem without hard links: a copy is still correct
        shutil.copyfile(source, target)


__all__ = ["LATEST", "LocalRegistry", "fashion_home"]
