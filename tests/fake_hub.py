"""A fake Hugging Face Hub on loopback: serves local directories as model repositories.

It answers the calls ``huggingface_hub.snapshot_download`` makes (read from the installed
``huggingface_hub`` 2.x source), so a Model with a ``HuggingFaceHub`` source can be fetched in
a test without the network:

- ``GET /api/models/{repo}/revision/{revision}`` → ``{"id", "sha", "siblings": [{"rfilename"}]}``
  (the revision is a branch name or the commit sha);
- ``GET /api/models/{repo}/tree/{revision}[/{path}]?recursive=...`` → ``[{"type": "file",
  "path", "size", "oid"}, {"type": "directory", "path", "oid"}, ...]`` (one page);
- ``HEAD|GET /{repo}/resolve/{revision}/{path}`` → the file, with ``X-Repo-Commit``, ``ETag``
  (the file's git blob sha1) and ``Content-Length``;
- errors as the Hub sends them: ``404`` with ``X-Error-Code: RepoNotFound``,
  ``RevisionNotFound`` or ``EntryNotFound``.

Use::

    with FakeHub() as hub:
        hub.add_repo("org/tiny", directory)          # branch "main"
        monkeypatch.setenv("HF_ENDPOINT", hub.url)

``hub.requests`` lists ``(method, path)`` of every request served.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub"]


def _blob_sha(data: bytes) -> str:
    """The git blob sha1 of ``data`` (what the Hub sends as a file's ETag and oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class _Repo:
    directory: Path
    branches: dict[str, str] = field(default_factory=dict)
    """Branch name → commit sha."""

    def files(self) -> dict[str, Path]:
        return {
            p.relative_to(self.directory).as_posix(): p
            for p in sorted(self.directory.rglob("*"))
            if p.is_file()
        }

    def commit(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.branches.values() else None


class _Error(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class FakeHub:
    """Serves repositories added with :meth:`add_repo` on ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: no connection outlives stop()
            def do_GET(self) -> None:
                hub._serve(self, head=False)

            def do_HEAD(self) -> None:
                hub._serve(self, head=True)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- set-up ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_repo(self, repo_id: str, directory: Path, *, branch: str = "main") -> str:
        """Serve the files under ``directory`` as ``repo_id`` on ``branch``; returns the
        commit sha (derived from the files, so the same files give the same sha)."""
        repo = self.repos.setdefault(repo_id, _Repo(Path(directory)))
        digest = hashlib.sha1(usedforsecurity=False)
        for path, file in repo.files().items():
            digest.update(path.encode() + b"\0" + file.read_bytes())
        sha = digest.hexdigest()
        repo.branches[branch] = sha
        return sha

    def start(self) -> FakeHub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        split = urlsplit(handler.path)
        with self._lock:
            self.requests.append((handler.command, split.path))
        try:
            status, headers, body = self._route(split.path, parse_qs(split.query), head=head)
        except _Error as error:
            status, body = error.status, json.dumps({"error": error.message}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if "Content-Length" not in headers:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _route(
        self, path: str, query: dict[str, list[str]], *, head: bool
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            for marker, answer in (("/revision/", self._info), ("/tree/", self._tree)):
                if marker in rest:
                    repo_id, _, tail = rest.partition(marker)
                    revision, _, inner = tail.partition("/")
                    repo, commit = self._resolve(repo_id, unquote(revision))
                    payload = answer(repo_id, repo, commit, unquote(inner), query)
                    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()
        if "/resolve/" in path:
            repo_id, _, tail = path.lstrip("/").partition("/resolve/")
            revision, _, name = tail.partition("/")
            repo, commit = self._resolve(repo_id, unquote(revision))
            file = repo.files().get(unquote(name))
            if file is None:
                raise _Error(404, "EntryNotFound", f"{name} does not exist on {revision}")
            data = file.read_bytes()
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
                "ETag": f'"{_blob_sha(data)}"',
                "X-Repo-Commit": commit,
            }
            return 200, headers, b"" if head else data
        raise _Error(404, None, f"no route {path}")

    def _resolve(self, repo_id: str, revision: str) -> tuple[_Repo, str]:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _Error(404, "RepoNotFound", "Repository not found")
        commit = repo.commit(revision)
        if commit is None:
            raise _Error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, commit

    def _info(
        self, repo_id: str, repo: _Repo, commit: str, inner: str, query: dict[str, list[str]]
    ) -> Any:
        siblings = [{"rfilename": p} for p in repo.files()]
        return {"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings}

    def _tree(
        self, repo_id: str, repo: _Repo, commit: str, inner: str, query: dict[str, list[str]]
    ) -> Any:
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        prefix = f"{inner.strip('/')}/" if inner.strip("/") else ""
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, file in repo.files().items():
            if not path.startswith(prefix):
                continue
            relative = path[len(prefix) :]
            if "/" in relative and not recursive:
                folders.add(prefix + relative.split("/")[0])
                continue
            parts = relative.split("/")[:-1]
            folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            data = file.read_bytes()
            entries.append(
                {"type": "file", "path": path, "size": len(data), "oid": _blob_sha(data)}
            )
        folder_entries = [
            {
                "type": "directory",
                "path": f,
                "oid": hashlib.sha1(f.encode(), usedforsecurity=False).hexdigest(),
            }
            for f in sorted(folders)
        ]
        return folder_entries + entries
