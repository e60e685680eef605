"""Artifact transfers through signed URLs: uploads (``GET /R/{id}/upload/{path}``, then PUT
the bytes) and downloads (``GET /R/{id}/downlinks``, then GET each URL).

- Uploads send ``Content-Length`` and stream the file; the server's answer carries the md5 it
  computed, which must be the md5 of what was sent. A URL of the storage itself (an S3
  presigned URL) answers with no digest: the storage checks the ``Content-MD5`` header that
  was signed with the URL, and finalize checks the stored bytes.
- Downloads stream into a temporary file next to the target and move it into place only once
  its md5 matches the digest the server declared (an interrupted or corrupt download never
  leaves a file that looks complete). A failed transfer is tried again from the start, within
  the client's retry budget.
- :meth:`Artifacts.cached` keeps downloaded files in a cache directory, one directory per
  entity, and downloads a file again only when its recorded md5 differs from the server's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

import httpx

from assay import errors
from assay.client._progress import ProgressCallback, TransferProgress
from assay.client._retries import RetryMode
from assay.client._transport import Transport

__all__ = [
    "CHUNK_SIZE",
    "MANIFEST",
    "Artifacts",
    "Link",
    "UploadSource",
    "default_cache_dir",
    "file_md5",
]

CHUNK_SIZE = 1 << 20
#: The file of a cached entity's directory that records the md5 of each file.
MANIFEST = ".assay-cache.json"

#: What ``put_artifact`` accepts: bytes, a file path, a binary file, or byte chunks.
UploadSource = bytes | Path | IO[bytes] | Iterable[bytes]


def default_cache_dir() -> Path:
    """``ASSAY_CACHE_DIR``, else ``$XDG_CACHE_HOME/assay/client``, else
    ``~/.cache/assay/client``."""
    given = os.environ.get("ASSAY_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "assay" / "client"


class Link:
    """One downloadable artifact: its path, md5 (None if the server gave none) and URL."""

    def __init__(self, data: dict[str, Any]) -> None:
        artifact = data.get("artifact") or {}
        signed = data.get("signedURL") or {}
        self.path: str = str(artifact.get("path", ""))
        self.kind: str | None = artifact.get("kind")
        self.md5: str | None = (artifact.get("digest") or {}).get("md5")
        self.url: str = str(signed.get("url", ""))
        self.method: str = str(signed.get("method") or "GET")
        self.headers: dict[str, str] = dict(signed.get("headers") or {})


def file_md5(path: Path) -> str:
    """The md5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _fresh(recorded: Any, link: Link, target: Path) -> bool:
    """True when the cached ``target`` is the file ``link`` names: the md5 recorded when it
    was downloaded is the server's, and its size has not changed since."""
    if not isinstance(recorded, dict) or link.md5 is None or recorded.get("md5") != link.md5:
        return False
    try:
        return target.stat().st_size == recorded.get("size")
    except OSError:
        return False


def _safe_target(root: Path, path: str, what: str) -> Path:
    """``root / path``, refusing a path that would leave ``root`` (from a broken server)."""
    from assay.schema.paths import validate_artifact_path

    try:
        validate_artifact_path(path, entity=what)
    except errors.ValidationError as exc:
        raise errors.PlatformError(f"the server listed an unsafe artifact path: {exc}") from None
    return root.joinpath(*path.split("/"))


class Artifacts:
    """Uploads and downloads of one client."""

    def __init__(
        self, transport: Transport, *, progress: ProgressCallback | None, cache_dir: Path
    ) -> None:
        self._transport = transport
        self._progress = progress
        self.cache_dir = cache_dir

    # -- downloads -----------------------------------------------------------------------

    def links(self, resource: str, kind: str, id: str) -> list[Link]:
        """The entity's downloadable artifacts (hidden bookkeeping files are not listed)."""
        data = self._transport.json("GET", f"/{resource}/{id}/downlinks", kind=kind, id=id)
        return [Link(item) for item in data]

    def download(
        self,
        resource: str,
        kind: str,
        id: str,
        dest: Path,
        *,
        wanted: Callable[[Link], bool] | None = None,
    ) -> list[Path]:
        """Download the entity's artifacts (those ``wanted``) under ``dest``; returns the
        files, in the server's order."""
        out = []
        for link in self.links(resource, kind, id):
            if wanted is None or wanted(link):
                target = _safe_target(dest, link.path, f"{kind} {id}")
                self.fetch(link, target, id)
                out.append(target)
        return out

    def cached(
        self,
        resource: str,
        kind: str,
        id: str,
        *,
        wanted: Callable[[Link], bool] | None = None,
    ) -> list[Path]:
        """Like :meth:`download`, into the cache directory, skipping files already there
        with the server's md5."""
        root = self.entity_cache(id)
        manifest_path = root / MANIFEST
        try:
            manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
        out = []
        for link in self.links(resource, kind, id):
            if wanted is not None and not wanted(link):
                continue
            target = _safe_target(root, link.path, f"{kind} {id}")
            if not _fresh(manifest.get(link.path), link, target):
                md5 = self.fetch(link, target, id)
                manifest[link.path] = {"md5": md5, "size": target.stat().st_size}
                _write_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
            out.append(target)
        return out

    def entity_cache(self, id: str) -> Path:
        """The cache directory of one entity of this server."""
        host = httpx.URL(self._transport.endpoint)
        server = f"{host.host}_{host.port or ('443' if host.scheme == 'https' else '80')}"
        return self.cache_dir / server / id

    def fetch(self, link: Link, target: Path, entity: str) -> str:
        """Download one artifact to ``target`` (atomically, md5 checked); returns its md5."""
        target.parent.mkdir(parents=True, exist_ok=True)
        attempts = self._transport.retries.start()
        while True:
            try:
                return self._fetch_once(link, target, entity)
            except (httpx.TransportError, _Truncated) as exc:
                if attempts.wait():
                    continue
                raise errors.UnavailableError(
                    f"the download of {link.path!r} of {entity} failed: {exc} "
                    f"({attempts.describe()}); try again"
                ) from None

    def _fetch_once(self, link: Link, target: Path, entity: str) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        response = self._transport.send(
            link.method,
            link.url,
            headers=link.headers,
            signed=True,
            stream=True,
            mode=RetryMode.IDEMPOTENT,
        )
        try:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            self._report("download", entity, link.path, 0, total)
            with tmp.open("wb") as f:
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    f.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    self._report("download", entity, link.path, done, total)
            if total is not None and done != total:
                raise _Truncated(f"received {done:,} of {total:,} bytes")
            actual = digest.hexdigest()
            if link.md5 is not None and actual != link.md5:
                raise errors.DataIntegrityError(
                    f"{entity}: the download of {link.path!r} has md5 {actual}, but the server "
                    f"declared {link.md5}; the file was not kept — download it again, and report "
                    "it if it persists",
                    field="digest",
                    entity=entity,
                )
            os.replace(tmp, target)
            return actual
        finally:
            response.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def read(self, link: Link) -> bytes:
        """The bytes of one artifact (small files: logs)."""
        response = self._transport.send(
            link.method, link.url, headers=link.headers, signed=True, mode=RetryMode.IDEMPOTENT
        )
        return response.content

    # -- uploads -------------------------------------------------------------------------

    def upload(self, resource: str, kind: str, id: str, path: str, source: UploadSource) -> str:
        """PUT one declared artifact to its signed URL; returns the md5 the server computed
        (which must be the md5 of what was sent)."""
        with _sized(source) as (size, chunks):
            signed = self._transport.json(
                "GET", f"/{resource}/{id}/upload/{quote(path, safe='/')}", kind=kind, id=id
            )
            sent: list[str] = []

            def body() -> Iterator[bytes]:
                digest = hashlib.md5(usedforsecurity=False)
                done = 0
                self._report("upload", id, path, 0, size)
                for chunk in chunks():
                    digest.update(chunk)
                    done += len(chunk)
                    self._report("upload", id, path, done, size)
                    yield chunk
                sent.append(digest.hexdigest())

            headers = {**(signed.get("headers") or {}), "Content-Length": str(size)}
            reply = self._transport.send(
                str(signed.get("method") or "PUT"),
                str(signed["url"]),
                content=body,
                headers=headers,
                signed=True,
                mode=RetryMode.IDEMPOTENT,
                kind=kind,
                id=id,
            )
        try:
            stored = str(reply.json()["digest"]["md5"])
        except (ValueError, KeyError, TypeError):
            if sent and not reply.content and reply.headers.get("ETag"):
                # the storage's own URL (an S3 presigned PUT) answers with no digest: the
                # storage checked the signed Content-MD5, and finalize reads the bytes again
                return sent[-1]
            raise errors.PlatformError(
                f"{kind} {id}: the storage's answer to the upload of {path!r} has no md5 digest "
                f"({reply.text[:200]!r})"
            ) from None
        if sent and sent[-1] != stored:
            raise errors.DataIntegrityError(
                f"{kind} {id}: {path!r} was sent with md5 {sent[-1]}, but the server stored "
                f"md5 {stored}; upload it again",
                field="digest",
                entity=id,
            )
        return stored

    def _report(self, direction: Any, entity: str, path: str, done: int, total: int | None) -> None:
        if self._progress is not None:
            self._progress(TransferProgress(direction, entity, path, done, total))


class _Truncated(Exception):
    """A download that ended before its Content-Length."""


@contextlib.contextmanager
def _sized(source: UploadSource) -> Iterator[tuple[int, Callable[[], Iterator[bytes]]]]:
    """The size of ``source`` and a function that yields its chunks afresh (for retries);
    byte chunks of unknown length are spooled to a temporary file first."""
    if isinstance(source, bytes):
        data = source

        def from_bytes() -> Iterator[bytes]:
            for start in range(0, len(data), CHUNK_SIZE):
                yield data[start : start + CHUNK_SIZE]

        yield len(data), from_bytes
        return
    if isinstance(source, os.PathLike | str):
        path = Path(source)
        if not path.is_file():
            raise errors.ValidationError(
                f"{str(path)!r} is not a file; give the path of the file to upload",
                field="data",
                value=str(path),
            )

        def from_file() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    yield chunk

        yield path.stat().st_size, from_file
        return
    seekable = getattr(source, "seekable", None)
    if hasattr(source, "read") and callable(seekable) and seekable():
        handle = cast("IO[bytes]", source)
        start = handle.tell()
        size = handle.seek(0, os.SEEK_END) - start

        def from_handle() -> Iterator[bytes]:
            handle.seek(start)
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk

        yield size, from_handle
        return
    # a stream or chunks of unknown length: spool, so the size is known and tries repeat
    with tempfile.TemporaryFile() as spool:
        if hasattr(source, "read"):
            reader = cast("IO[bytes]", source)
            while chunk := reader.read(CHUNK_SIZE):
                spool.write(chunk)
        else:
            for chunk in source:
                spool.write(chunk)
        spool.seek(0)
        with _sized(spool) as sized:
            yield sized


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
