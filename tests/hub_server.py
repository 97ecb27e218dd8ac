"""A loopback Hugging Face Hub for tests: the subset of the API huggingface_hub 2.4 uses.

Repos live in memory (commits -> {path: bytes}). Uploads are "regular" (base64 inside the
NDJSON commit body, no LFS, no Xet). Like the real Hub, ``preupload`` returns the git blob id
of each file already at the parent revision, so the client drops unchanged files from the
commit; ``HubState.uploads`` records which paths each commit actually carried.

Routes (repo ids are ``namespace/name``):

- ``POST /api/repos/create``, ``POST /api/validate-yaml``
- ``POST /api/models/{repo}/preupload/{rev}``, ``POST /api/models/{repo}/commit/{rev}``
- ``GET /api/models``, ``GET /api/models/{repo}[/revision/{rev}]``
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``, ``/refs``, ``/commits/{rev}``
- ``POST /api/models/{repo}/tag/{rev}``, ``DELETE /api/models/{repo}/tag/{tag}``
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Commit:
    id: str
    parent: str | None
    files: dict[str, bytes]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and revision in self.commits:
            sha = revision
        return self.commits.get(sha) if sha else None


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class HubState:
    """Everything the server stores; tests read ``uploads`` and ``requests``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.repos: dict[str, Repo] = {}
        self.uploads: list[tuple[str, str, list[str]]] = []  # (repo, commit, paths sent)
        self.requests: list[tuple[str, str]] = []
        self._counter = 0

    def new_commit(self, repo: Repo, parent: str | None, files: dict[str, bytes], title: str,
                   message: str) -> Commit:
        self._counter += 1
        digest = hashlib.sha1(f"{repo.id}:{parent}:{self._counter}:{title}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_id(files[path]).encode())
        commit = Commit(digest.hexdigest(), parent, files, title, message, _now())
        repo.commits[commit.id] = commit
        return commit

    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self.repos[repo_id]

    def commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    # ------------------------------------------------------------------ plumbing

    @property
    def state(self) -> HubState:
        return self.server.state

    def _body(self) -> bytes:
        return self._payload

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self._payload = self.rfile.read(length) if length else b""  # always drain the body
        with self.state.lock:
            self.state.requests.append((method, url.path))
        try:
            if self.server.require_token and not self.headers.get("authorization"):
                raise HubError(401, None, "Invalid credentials in Authorization header")
            self._route(method, parts, query)
        except HubError as exc:
            headers = {"X-Error-Code": exc.code} if exc.code else {}
            headers["X-Error-Message"] = exc.message
            if exc.commit:
                headers["X-Repo-Commit"] = exc.commit
            body = json.dumps({"error": exc.message}).encode()
            self._send(exc.status, body, headers, head=method == "HEAD")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ routes

    def _route(self, method: str, parts: list[str], query: dict[str, str]) -> None:
        state = self.state
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo()
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._validate_yaml()
        if method == "GET" and parts == ["api", "models"]:
            return self._list_models(query)
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            with state.lock:
                repo = state.repo(repo_id)
                if method == "GET" and not rest:
                    return self._model_info(repo, state.commit(repo, "main"))
                if method == "GET" and rest[0] == "revision" and len(rest) == 2:
                    return self._model_info(repo, state.commit(repo, rest[1]))
                if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
                    return self._tree(repo, rest[1], "/".join(rest[2:]), query)
                if method == "GET" and rest == ["refs"]:
                    return self._refs(repo)
                if method == "GET" and rest[0] == "commits" and len(rest) == 2:
                    return self._commits(repo, rest[1])
                if method == "POST" and rest[0] == "preupload" and len(rest) == 2:
                    return self._preupload(repo, rest[1])
                if method == "POST" and rest[0] == "commit" and len(rest) == 2:
                    return self._commit(repo, rest[1])
                if method == "POST" and rest[0] == "tag" and len(rest) == 2:
                    return self._tag(repo, rest[1])
                if method == "DELETE" and rest[0] == "tag" and len(rest) == 2:
                    if repo.tags.pop(rest[1], None) is None:
                        raise HubError(404, "RevisionNotFound", f"tag {rest[1]} not found")
                    return self._json(200, {})
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            with state.lock:
                repo = state.repo("/".join(parts[:2]))
                commit = state.commit(repo, parts[3])
            return self._resolve(method, repo, commit, "/".join(parts[4:]))
        raise HubError(404, None, f"no route for {method} /{'/'.join(parts)}")

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        namespace = payload.get("organization") or "user"
        repo_id = f"{namespace}/{payload['name']}"
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._json(409, {"error": "You already created this model repo",
                                        "url": f"{self.server.url}/{repo_id}"})
            repo = Repo(repo_id)
            first = self.state.new_commit(repo, None, {".gitattributes": GITATTRIBUTES},
                                          "initial commit", "")
            repo.branches["main"] = first.id
            self.state.repos[repo_id] = repo
        self._json(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self) -> None:
        content = json.loads(self._body())["content"]
        errors = []
        if content.startswith("---"):
            try:
                meta = yaml.safe_load(content.split("---", 2)[1])
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a mapping"})
            except (yaml.YAMLError, IndexError) as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _info(self, repo: Repo, commit: Commit) -> dict[str, Any]:
        return {
            "id": repo.id, "modelId": repo.id, "author": repo.id.split("/")[0],
            "sha": commit.id, "lastModified": commit.date, "private": False,
            "tags": [], "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    @staticmethod
    def _card_tags(commit: Commit) -> set[str]:
        """library_name and tags from the README front matter (what `filter=` matches)."""
        text = commit.files.get("README.md", b"").decode("utf-8", "replace")
        if not text.startswith("---"):
            return set()
        try:
            meta = yaml.safe_load(text.split("---", 2)[1]) or {}
        except (yaml.YAMLError, IndexError):
            return set()
        return {str(meta.get("library_name"))} | {str(t) for t in meta.get("tags") or []}

    def _list_models(self, query: dict[str, str]) -> None:
        with self.state.lock:
            rows = []
            for repo in self.state.repos.values():
                head = repo.commits[repo.branches["main"]]
                if query.get("author") and not repo.id.startswith(query["author"] + "/"):
                    continue
                if query.get("search") and query["search"] not in repo.id:
                    continue
                if query.get("filter") and query["filter"] not in self._card_tags(head):
                    continue
                rows.append(self._info(repo, head))
        self._json(200, rows)

    def _model_info(self, repo: Repo, commit: Commit) -> None:
        self._json(200, self._info(repo, commit))

    def _tree(self, repo: Repo, revision: str, prefix: str, query: dict[str, str]) -> None:
        commit = self.state.commit(repo, revision)
        recursive = query.get("recursive", "false").lower() in ("1", "true")
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base):].split("/")
            for depth in range(1, len(rest)):
                if not recursive and depth > 1:
                    break
                folder = base + "/".join(rest[:depth])
                entries.setdefault(folder, {"type": "directory", "oid": "0" * 40, "size": 0,
                                            "path": folder})
            if recursive or len(rest) == 1:
                entries[path] = {"type": "file", "oid": git_blob_id(content),
                                 "size": len(content), "path": path}
        if base and not entries:
            raise HubError(404, "EntryNotFound", f"{prefix} does not exist", commit.id)
        self._json(200, list(entries.values()))

    def _refs(self, repo: Repo) -> None:
        def ref(kind: str, name: str, sha: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}

        self._json(200, {
            "branches": [ref("heads", n, s) for n, s in repo.branches.items()],
            "tags": [ref("tags", n, s) for n, s in repo.tags.items()],
            "converts": [],
        })

    def _commits(self, repo: Repo, revision: str) -> None:
        commit: Commit | None = self.state.commit(repo, revision)
        rows = []
        while commit is not None:
            rows.append({"id": commit.id, "authors": [{"user": "fashion"}], "date": commit.date,
                         "title": commit.title, "message": commit.message})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(200, rows)

    def _preupload(self, repo: Repo, revision: str) -> None:
        commit = self.state.commit(repo, revision)
        files = json.loads(self._body())["files"]
        self._json(200, {
            "files": [
                {
                    "path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                    "oid": git_blob_id(commit.files[f["path"]]) if f["path"] in commit.files else None,
                }
                for f in files
            ],
            "commitOid": commit.id,
        })

    def _commit(self, repo: Repo, revision: str) -> None:
        if revision not in repo.branches:
            raise HubError(404, "RevisionNotFound", f"{revision} is not a branch")
        parent = repo.commits[repo.branches[revision]]
        files = dict(parent.files)
        header: dict[str, Any] = {}
        sent: list[str] = []
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
                if value.get("parentCommit") and value["parentCommit"] != parent.id:
                    raise HubError(412, None, "parent commit is not the head of the branch")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, None, "only base64 file content is supported")
                files[value["path"]] = base64.b64decode(value["content"])
                sent.append(value["path"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(folder)}
            else:
                raise HubError(400, None, f"unsupported commit operation {key!r} (LFS is off)")
        commit = self.state.new_commit(repo, parent.id, files, header.get("summary", ""),
                                       header.get("description", ""))
        repo.branches[revision] = commit.id
        self.state.uploads.append((repo.id, commit.id, sent))
        self._json(200, {"commitOid": commit.id,
                         "commitUrl": f"{self.server.url}/{repo.id}/commit/{commit.id}",
                         "pullRequestUrl": None})

    def _tag(self, repo: Repo, revision: str) -> None:
        commit = self.state.commit(repo, revision)
        tag = json.loads(self._body())["tag"]
        if tag in repo.tags:
            raise HubError(409, None, f"tag {tag} already exists")
        repo.tags[tag] = commit.id
        self._json(200, {})

    def _resolve(self, method: str, repo: Repo, commit: Commit, path: str) -> None:
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {commit.id}", commit.id)
        content = commit.files[path]
        headers = {"X-Repo-Commit": commit.id, "ETag": f'"{git_blob_id(content)}"'}
        self._send(200, content, headers, "application/octet-stream", head=method == "HEAD")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    require_token: bool
    url: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        self.connections.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut kept-alive client connections too, so a stopped server is really unreachable."""
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HubServer:
    """``with HubServer() as hub: ... hub.url``: a Hub on 127.0.0.1 in a background thread."""

    def __init__(self, *, require_token: bool = False) -> None:
        self.state = HubState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._server.require_token = require_token
        host, port = self._server.server_address[:2]
        self.url = self._server.url = f"http://{host}:{port}"
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._server.drop_connections()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # python -m tests.hub_server: serve until Ctrl-C
    import time

    with HubServer() as hub:
        print(hub.url, flush=True)
        while True:
            time.sleep(3600)
