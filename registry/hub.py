"""A model registry on the Hugging Face Hub (or any Hub-compatible endpoint).

One publish = one commit with the bundle's files (``create_commit``, which is what
``upload_folder`` does, kept to a single commit; the Hub skips files whose content did not
change) and the deletion of files the previous revision had, then an optional tag. Fetching is ``snapshot_download`` into the
Hugging Face cache, so a model fetched once loads offline afterwards.

Environment: ``HF_ENDPOINT`` (another Hub, e.g. a mirror), ``HF_TOKEN``, ``HF_HUB_OFFLINE=1``
(use the cache only, like ``local_files_only=True``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fashion.errors import ModelNotFoundError, RegistryError
from fashion.registry.base import ModelSummary, Revision, check_name, check_tag
from fashion.registry.bundle_format import INDEX_NAME, verify_for_publish

_TRUE = {"1", "true", "yes", "on"}


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


PROBE_TIMEOUT_S = 3.0
"""How long listing waits for the Hub endpoint to accept a connection before saying it cannot."""


def endpoint_unreachable(url: str, timeout: float) -> str | None:
    """``None`` when a TCP connection to ``url``'s host opens within ``timeout`` seconds (name
    lookup included), else why not."""
    import socket
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return f"{url!r} is not a URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc))

    thread = threading.Thread(target=probe, name="fashion-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no connection within {timeout:g} s"
    return outcome[0]


class HubRegistry:
    """Models as Hub repos (``org/name``); revisions are commits, tags are git tags."""

    scheme = "hf"

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
        self.token = token or os.environ.get("HF_TOKEN") or None
        self.cache_dir = str(Path(cache_dir).expanduser()) if cache_dir is not None else None
        self.local_files_only = bool(local_files_only) or _offline_env()

    def __repr__(self) -> str:
        return f"HubRegistry(endpoint={self.where!r})"

    @property
    def where(self) -> str:
        from huggingface_hub import constants

        return self.endpoint or constants.ENDPOINT

    @property
    def api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    @contextlib.contextmanager
    def _errors(self, name: str, revision: str | None = None) -> Iterator[None]:
        """Turn huggingface_hub / network errors into RegistryError messages that say what to do."""
        import httpx2
        from huggingface_hub import errors as hf_errors
        from huggingface_hub.utils import OfflineModeIsEnabled

        what = f"{name}@{revision}" if revision else name
        try:
            yield
        except hf_errors.RevisionNotFoundError:
            raise ModelNotFoundError(
                f"model {name!r} on {self.where} has no revision or tag {revision!r}; list them "
                f"with `fashion models --registry hf` or HubRegistry().list_revisions({name!r})."
            ) from None
        except hf_errors.RepositoryNotFoundError:
            raise ModelNotFoundError(
                f"no model repo {name!r} on {self.where} (or it is private and the token cannot "
                "read it). Check the name, set HF_TOKEN, or push it with `fashion push`."
            ) from None
        except hf_errors.LocalEntryNotFoundError as exc:
            raise RegistryError(
                f"cannot fetch {what}: the Hub at {self.where} could not be reached (or offline "
                f"mode is on) and nothing is cached{self._cache_hint()}. Check the endpoint "
                "(HF_ENDPOINT) and your network; once fetched, local_files_only=True "
                "(HF_HUB_OFFLINE=1) loads it from the cache. Or load a local path / local:// "
                f"model instead. ({str(exc).splitlines()[0]})"
            ) from None
        except (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled) as exc:
            raise RegistryError(
                f"cannot reach the Hub at {self.where} for {what}: {exc}. Check the endpoint "
                "(HF_ENDPOINT) and your network; to read what is cached use "
                "local_files_only=True (HF_HUB_OFFLINE=1) or a local path."
            ) from None
        except hf_errors.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = (" Set a token with write access (HF_TOKEN or --token)." if status in (401, 403)
                    else "")
            raise RegistryError(
                f"the Hub at {self.where} refused the request for {what} "
                f"(HTTP {status}).{hint} {str(exc).splitlines()[0]}"
            ) from None

    def _cache_hint(self) -> str:
        return f" in {self.cache_dir}" if self.cache_dir else ""

    def _refuse_offline(self, action: str) -> None:
        if self.local_files_only:
            raise RegistryError(
                f"cannot {action} with local_files_only=True (or HF_HUB_OFFLINE=1): it needs the "
                f"Hub at {self.where}. Unset HF_HUB_OFFLINE or use the local registry."
            )

    def _refuse_unreachable(self, action: str) -> None:
        """Fail in seconds, not after the HTTP client's retries, when the endpoint does not even
        accept a connection (no network, wrong HF_ENDPOINT)."""
        problem = endpoint_unreachable(self.where, PROBE_TIMEOUT_S)
        if problem is not None:
            raise RegistryError(
                f"cannot {action}: the Hub at {self.where} cannot be reached ({problem}). Check "
                "the endpoint (HF_ENDPOINT) and your network, or use the local registry "
                "(`--registry local`)."
            )

    # ------------------------------------------------------------------ publish

    def publish(
        self, bundle_dir: str | Path, name: str, *, tag: str | None = None, message: str | None = None
    ) -> Revision:
        """One commit with the bundle's files (unchanged ones are skipped by the Hub), then tag."""
        bundle_dir = Path(bundle_dir)
        check_name(name)
        if tag is not None:
            check_tag(tag)
        self._refuse_offline("publish")
        index = verify_for_publish(bundle_dir)
        files = sorted(index.files) + [INDEX_NAME]
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        api = self.api
        with self._errors(name):
            api.create_repo(name, repo_type="model", exist_ok=True)
            stale = set(api.list_repo_files(name)) - set(files) - {".gitattributes"}
            operations: list[Any] = [CommitOperationDelete(path_in_repo=p) for p in sorted(stale)]
            operations += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(bundle_dir / rel))
                           for rel in files]
            # What upload_folder does, as one commit always: with hf_xet installed upload_folder
            # may split a large folder into several commits, and a bundle must appear at once.
            info = api.create_commit(
                name, operations=operations,
                commit_message=message or f"fashion: publish {len(index.attributes)} attributes",
            )
            if tag is not None:
                with contextlib.suppress(Exception):
                    api.delete_tag(name, tag=tag)  # tags move, like the local registry's
                api.create_tag(name, tag=tag, revision=info.oid)
        return Revision(name=name, id=info.oid, uri=f"hf://{name}@{info.oid}",
                        tags=[tag] if tag else [], message=message)

    def tag(self, name: str, revision: str, tag: str) -> Revision:
        check_tag(tag)
        self._refuse_offline("tag")
        api = self.api
        with self._errors(name, revision):
            sha = api.model_info(name, revision=revision).sha
            with contextlib.suppress(Exception):
                api.delete_tag(name, tag=tag)
            api.create_tag(name, tag=tag, revision=sha)
        return Revision(name=name, id=sha, uri=f"hf://{name}@{sha}", tags=[tag])

    # ------------------------------------------------------------------ read

    def fetch(self, name: str, revision: str | None = None) -> Path:
        """Download (or find in the cache) a revision; return the snapshot folder."""
        from huggingface_hub import snapshot_download

        check_name(name)
        with self._errors(name, revision):
            folder = snapshot_download(
                repo_id=name,
                revision=revision,
                cache_dir=self.cache_dir,
                local_files_only=self.local_files_only,
                endpoint=self.endpoint,
                token=self.token,
            )
        return Path(folder)

    def list_models(self, author: str | None = None, search: str | None = None) -> list[ModelSummary]:
        """Models tagged ``fashion`` (their model card has ``library_name: fashion``)."""
        self._refuse_offline("list models")
        self._refuse_unreachable("list models")
        with self._errors(author or "models"):
            infos = list(self.api.list_models(filter="fashion", author=author, search=search))
        return [
            ModelSummary(
                name=i.id, uri=f"hf://{i.id}", latest=i.sha,
                updated=i.last_modified.isoformat() if i.last_modified else None,
            )
            for i in infos
        ]

    def list_revisions(self, name: str) -> list[Revision]:
        """Commits of the main branch, oldest first, with the tags pointing at each."""
        self._refuse_offline("list revisions")
        self._refuse_unreachable("list revisions")
        api = self.api
        with self._errors(name):
            commits = api.list_repo_commits(name)
            refs = api.list_repo_refs(name)
        tags: dict[str, list[str]] = {}
        for ref in [*refs.branches, *refs.tags]:
            tags.setdefault(ref.target_commit, []).append(ref.name)
        return [
            Revision(name=name, id=c.commit_id, uri=f"hf://{name}@{c.commit_id}",
                     tags=sorted(tags.get(c.commit_id, [])),
                     created=c.created_at.isoformat() if c.created_at else None, message=c.title)
            for c in reversed(commits)
        ]

    def show(self, name: str, revision: str | None = None) -> dict[str, Any]:
        from huggingface_hub import hf_hub_download

        check_name(name)
        with self._errors(name, revision):
            path = hf_hub_download(
                repo_id=name, filename=INDEX_NAME, revision=revision, cache_dir=self.cache_dir,
                local_files_only=self.local_files_only, endpoint=self.endpoint, token=self.token,
            )
        return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["HubRegistry"]
