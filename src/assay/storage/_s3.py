"""Artifact storage in an S3-compatible bucket: ``s3://<bucket>/<prefix>/<entity id>/<path>``.

One object per artifact. A write is one ``PutObject`` (up to :data:`PART_SIZE` bytes) or a
multipart upload (parts of :data:`PART_SIZE`), both atomic in S3: readers see the old object
or the new one, and a failed multipart upload is aborted. md5 and sha256 are computed while
the bytes stream out, as :class:`~assay.storage.LocalStorage` computes them, and sent along:
``Content-MD5`` on every request (the storage refuses bytes that changed on the way) and, for
a single ``PutObject``, as object metadata, so that listing digests later costs a ``HEAD``,
not a read. :meth:`S3Storage.verify` always reads the bytes.

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
a profile, a role), the region from ``AWS_DEFAULT_REGION``, and an S3-compatible server's URL
from ``ASSAY_S3_ENDPOINT_URL``. Opening the storage checks all of them with one ``HEAD`` of
the bucket and fails at once with a message naming the setting to fix. See
``docs/design/storage-s3.md``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from assay import errors, provenance
from assay.schema.paths import validate_artifact_path

from ._base import CHUNK_SIZE, ArtifactInfo, ArtifactStorage, Chunks, iter_chunks, md5_hasher

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["ENDPOINT_VARIABLE", "PART_SIZE", "S3Location", "S3Storage"]

#: The environment variable with the URL of an S3-compatible server (MinIO, Ceph, moto...).
ENDPOINT_VARIABLE = "ASSAY_S3_ENDPOINT_URL"
#: Bytes of one part of a multipart upload; a smaller artifact is one ``PutObject``.
PART_SIZE = 8 << 20
#: Object metadata keys of the digests the platform computed while writing.
_MD5_KEY, _SHA256_KEY = "assay-md5", "assay-sha256"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
#: The cache's record of which object version each copied file is (``<cache>/.etags/...``).
_ETAGS = ".etags"


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (``""`` or ending in ``/``), parsed from ``s3://b/p``."""

    bucket: str
    """The bucket's name."""
    prefix: str
    """The prefix of every key, ``""`` or ``a/b/``."""

    @classmethod
    def parse(cls, url: str, *, setting: str = "storage") -> S3Location:
        """The location of ``s3://BUCKET[/PREFIX]``; ValidationError naming ``setting``
        (where the URL came from) otherwise."""

        def bad(rule: str) -> errors.ValidationError:
            return errors.ValidationError(
                f"{setting} {url!r} is not an S3 storage URL: {rule}; expected "
                "s3://BUCKET or s3://BUCKET/PREFIX (e.g. s3://audits/assay)",
                field=setting,
                value=url,
            )

        if not isinstance(url, str) or not url.startswith("s3://"):
            raise bad("it must start with s3://")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise bad("it names no bucket")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise bad(
                f"the bucket name {bucket!r} must be 3 to 63 lowercase letters, digits, '-' "
                "or '.', starting and ending with a letter or digit"
            )
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_artifact_path(prefix, field="prefix")
            except errors.ValidationError as exc:
                raise bad(f"the key prefix {prefix!r} is not usable ({exc})") from None
        return cls(bucket, f"{prefix}/" if prefix else "")

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (no trailing slash)."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


class S3Storage(ArtifactStorage):
    """Artifacts in an S3-compatible bucket, under ``url`` (``s3://bucket/prefix``).

    ``cache_dir`` is the folder on this machine that holds the copies :meth:`local_copy`
    makes (for analyses and replicas, which read files); default: one in the temporary
    directory. ``endpoint_url`` (default ``ASSAY_S3_ENDPOINT_URL``) is an S3-compatible
    server's URL; ``region`` defaults to ``AWS_DEFAULT_REGION``. ``setting`` names where the
    URL came from, for error messages. Opening checks the bucket (``check=False`` skips it).

    Safe for concurrent use by threads and processes; the last write of a path wins.
    """

    #: Digests remembered for objects written without digest metadata (multipart uploads).
    DIGESTS_REMEMBERED = 4096

    def __init__(
        self,
        url: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        setting: str = "storage",
        check: bool = True,
    ) -> None:
        self._location = S3Location.parse(url, setting=setting)
        self._setting = setting
        endpoint = endpoint_url if endpoint_url is not None else os.environ.get(ENDPOINT_VARIABLE)
        self._endpoint = _check_endpoint(endpoint.strip() if endpoint else None, setting, url)
        self._region = (
            region
            or os.environ.get("AWS_DEFAULT_REGION")
            or os.environ.get("AWS_REGION")
            or "us-east-1"
        )
        if cache_dir is None:
            digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
            cache_dir = Path(tempfile.gettempdir()) / f"assay-s3-cache-{digest}"
        self._cache = Path(cache_dir).expanduser().resolve()
        self._session = _session(self.url, setting)
        self._client = self._make_client(attempts=5, connect_timeout=10.0, read_timeout=120.0)
        self._digests: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._directories: set[str] = set()  # keys known to be "directories" (have children)
        self._files: set[str] = set()  # keys this object wrote as files
        self._arrow: tuple[tuple[str, str, str | None], pyarrow.fs.S3FileSystem] | None = None
        if check:
            self.check()

    # -- about ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The storage's ``s3://bucket/prefix``."""
        return self._location.url

    @property
    def location(self) -> S3Location:
        """The bucket and key prefix."""
        return self._location

    @property
    def endpoint_url(self) -> str | None:
        """The S3-compatible server's URL (None: AWS S3)."""
        return self._endpoint

    @property
    def cache_dir(self) -> Path:
        """The folder of the copies :meth:`local_copy` makes."""
        return self._cache

    def __repr__(self) -> str:
        where = f", endpoint_url={self._endpoint!r}" if self._endpoint else ""
        return f"S3Storage({self.url!r}{where})"

    def key(self, id: str, path: str) -> str:
        """The object key of ``path`` of entity ``id`` (both checked)."""
        return f"{self._location.prefix}{self.check_id(id)}/{self.check_path(id, path)}"

    def check(self) -> None:
        """Check that the bucket exists and the credentials may use it: ValidationError
        naming the setting to fix (never a boto traceback)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        quick = self._make_client(attempts=2, connect_timeout=3.0, read_timeout=10.0)
        where = self._endpoint or f"AWS S3 (region {self._region})"
        try:
            quick.head_bucket(Bucket=self._location.bucket)
        except NoCredentialsError:
            raise _no_credentials(self.url, self._setting) from None
        except ClientError as exc:
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchBucket") or status == 404:
                fix = (
                    f"create it (aws s3 mb s3://{self._location.bucket}"
                    + (f" --endpoint-url {self._endpoint}" if self._endpoint else "")
                    + f") or name an existing bucket in {self._setting}"
                )
                raise errors.ValidationError(
                    f"{self._setting} {self.url!r}: the bucket {self._location.bucket!r} does "
                    f"not exist at {where}; {fix}",
                    field=self._setting,
                    value=self.url,
                ) from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise errors.ValidationError(
                    f"{self._setting} {self.url!r}: {where} refused access to the bucket "
                    f"{self._location.bucket!r} ({code}); check AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, and that they may read and write the bucket",
                    field=self._setting,
                    value=self.url,
                ) from None
            if code in ("301", "PermanentRedirect", "400") and self._endpoint is None:
                raise errors.ValidationError(
                    f"{self._setting} {self.url!r}: the bucket is not in region "
                    f"{self._region!r} ({code}); set AWS_DEFAULT_REGION to the bucket's region",
                    field=self._setting,
                    value=self.url,
                ) from None
            raise errors.ValidationError(
                f"{self._setting} {self.url!r}: {where} answered {code} to a check of the "
                f"bucket ({_message(exc)}); check the bucket and {ENDPOINT_VARIABLE}",
                field=self._setting,
                value=self.url,
            ) from None
        except BotoCoreError as exc:
            variable = ENDPOINT_VARIABLE if self._endpoint else "the network"
            raise errors.ValidationError(
                f"{self._setting} {self.url!r}: cannot reach {where} ({exc}); check "
                f"{variable} (is the server running at that address?)",
                field=ENDPOINT_VARIABLE if self._endpoint else self._setting,
                value=self._endpoint or self.url,
            ) from None

    # -- writing -------------------------------------------------------------------------------

    def put_stream(self, id: str, path: str, chunks: Chunks) -> ArtifactInfo:
        key = self.key(id, path)
        self._check_tree(id, path, key)
        md5, size = md5_hasher(), 0
        sha256 = hashlib.sha256() if provenance.ENABLED else None
        buffer = bytearray()
        upload: str | None = None
        parts: list[dict[str, Any]] = []
        bucket = self._location.bucket
        try:
            for chunk in iter_chunks(chunks):
                md5.update(chunk)
                if sha256 is not None:
                    sha256.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    if upload is None:
                        upload = self._call("start an upload of", key, "create_multipart_upload")[
                            "UploadId"
                        ]
                    parts.append(self._part(key, upload, len(parts) + 1, bytes(buffer[:PART_SIZE])))
                    del buffer[:PART_SIZE]
            digests = {_MD5_KEY: md5.hexdigest()}
            if sha256 is not None:
                digests[_SHA256_KEY] = sha256.hexdigest()
            if upload is None:
                data = bytes(buffer)
                self._call(
                    "write",
                    key,
                    "put_object",
                    Body=data,
                    ContentMD5=_b64(md5.digest()),
                    Metadata=digests,
                )
            else:
                if buffer:
                    parts.append(self._part(key, upload, len(parts) + 1, bytes(buffer)))
                reply = self._call(
                    "finish the upload of",
                    key,
                    "complete_multipart_upload",
                    UploadId=upload,
                    MultipartUpload={"Parts": parts},
                )
                upload = None
                self._remember(key, str(reply.get("ETag", "")), digests[_MD5_KEY])
        except BaseException:
            if upload is not None:
                with contextlib.suppress(Exception):
                    self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            raise
        self._note_directories(key)
        return ArtifactInfo(
            path=path,
            size=size,
            md5=md5.hexdigest(),
            sha256=sha256.hexdigest() if sha256 is not None else None,
        )

    def _part(self, key: str, upload: str, number: int, data: bytes) -> dict[str, Any]:
        reply = self._call(
            "upload a part of",
            key,
            "upload_part",
            UploadId=upload,
            PartNumber=number,
            Body=data,
            ContentMD5=_b64(hashlib.md5(data, usedforsecurity=False).digest()),
        )
        return {"ETag": reply["ETag"], "PartNumber": number}

    def _check_tree(self, id: str, path: str, key: str) -> None:
        """Refuse what a directory tree cannot hold (as :class:`LocalStorage` does, so that
        :meth:`local_copy` can always copy an entity): a file where a directory of that name
        has files, or under a file. Not atomic with the write (S3 has no directories): two
        writers racing may still make both; the checks are for mistakes, not races."""
        with self._lock:
            if key in self._files:
                return  # written here as a file, so no directory of its name (checked then)
        segments = path.split("/")
        entity = key[: len(key) - len(path)]
        for k in range(1, len(segments)):
            parent = entity + "/".join(segments[:k])
            if parent in self._directories:
                continue
            if self._head(parent) is not None:
                raise errors.ValidationError(
                    f"entity {id}: cannot write {path!r}: one of its parent directories is a file",
                    field="path",
                    value=path,
                    entity=id,
                )
        listed = self._call(
            "list", key + "/", "list_objects_v2", Prefix=key + "/", MaxKeys=1, key_argument=False
        )
        if listed.get("KeyCount", 0) or listed.get("Contents"):
            raise errors.ValidationError(
                f"entity {id}: cannot write {path!r}: a directory of that name exists",
                field="path",
                value=path,
                entity=id,
            )

    def _note_directories(self, key: str) -> None:
        """Remember that ``key`` is a file and its parents are directories: the next write
        under them needs no requests to check the tree (a delete forgets them)."""
        parts = key.split("/")
        with self._lock:
            if len(self._directories) > 65536 or len(self._files) > 65536:
                self._directories.clear()
                self._files.clear()
            for k in range(1, len(parts)):
                self._directories.add("/".join(parts[:k]))
            self._files.add(key)

    # -- reading -------------------------------------------------------------------------------

    def open(self, id: str, path: str) -> BinaryIO:
        key = self.key(id, path)
        reply = self._get(key)
        if reply is None:
            raise self.missing(id, path)
        return io.BufferedReader(_ObjectReader(reply["Body"]), CHUNK_SIZE)

    def exists(self, id: str, path: str) -> bool:
        return self._head(self.key(id, path)) is not None

    def list(self, id: str, prefix: str = "", *, md5: bool = False) -> list[ArtifactInfo]:
        self.check_prefix(id, prefix)
        found = sorted(self._objects(id, prefix))
        return [
            ArtifactInfo(path=path, size=size, md5=self.md5(id, path) if md5 else None)
            for path, size, _ in found
        ]

    def md5(self, id: str, path: str) -> str:
        """The hex md5 of the object: the digest the platform wrote beside it (metadata of the
        same atomic write), or remembered for its version, or else read from its bytes.
        :meth:`verify` never uses the first two."""
        key = self.key(id, path)
        head = self._head(key)
        if head is None:
            raise self.missing(id, path)
        written = (head.get("Metadata") or {}).get(_MD5_KEY)
        if isinstance(written, str) and _HEX32.match(written):
            return written
        etag = str(head.get("ETag", ""))
        with self._lock:
            known = self._digests.get((key, etag))
        if known is not None:
            return known
        reply = self._get(key)
        if reply is None:
            raise self.missing(id, path)
        hasher = md5_hasher()
        with io.BufferedReader(_ObjectReader(reply["Body"]), CHUNK_SIZE) as handle:
            for block in iter_chunks(handle):
                hasher.update(block)
        digest = hasher.hexdigest()
        self._remember(key, str(reply.get("ETag", "")), digest)
        return digest

    def arrow_location(self, id: str, prefix: str = "") -> tuple[pyarrow.fs.FileSystem, str]:
        """pyarrow's S3 file system (with this storage's endpoint, region and credentials)
        and ``bucket/prefix/<id>[/<prefix>]``: Parquet is read from the bucket as a stream of
        ranged reads, never downloaded whole first."""
        self.check_prefix(id, prefix)
        location = f"{self._location.bucket}/{self._location.prefix}{self.check_id(id)}"
        if prefix.strip("/"):
            location += "/" + self.check_path(id, prefix.strip("/"))
        return self._arrow_filesystem(), location

    # -- local copies and URLs -----------------------------------------------------------------

    def local_copy(self, id: str, paths: Iterable[str] | None = None) -> Path:
        """A folder of ``cache_dir`` with the artifacts of entity ``id`` (all, or ``paths``)
        as files. A file is downloaded only when the object changed since it was copied
        (its ETag and size differ); each arrives by rename, whole. NotFoundError for a path
        in ``paths`` that has no object."""
        directory = self._cache / self.check_id(id)
        directory.mkdir(parents=True, exist_ok=True)
        wanted = None if paths is None else [self.check_path(id, p) for p in paths]
        if wanted is not None and not wanted:
            return directory
        objects = {path: (size, etag) for path, size, etag in self._objects(id, "")}
        for path in wanted if wanted is not None else sorted(objects):
            if path not in objects:
                raise self.missing(id, path)
            size, etag = objects[path]
            target = directory / path
            stamp = self._cache / _ETAGS / id / path
            if _copied(target, stamp, size, etag):
                continue
            self._download(id, path, target)
            _write_atomically(stamp, etag.encode())
        return directory

    def signed_url(
        self, id: str, path: str, method: str, *, lifetime: float, md5: str | None = None
    ) -> tuple[str, dict[str, str]] | None:
        """An S3 presigned URL (SigV4) for ``GET`` or ``PUT`` of the object, valid for
        ``lifetime`` seconds. A ``PUT`` of a known ``md5`` signs ``Content-MD5`` too: the
        storage refuses other bytes. A ``GET`` answers as an attachment of type
        ``application/octet-stream`` (never rendered by a browser)."""
        key = self.key(id, path)
        method = method.upper()
        params: dict[str, Any] = {"Bucket": self._location.bucket, "Key": key}
        headers: dict[str, str] = {}
        if method == "GET":
            operation = "get_object"
            params["ResponseContentDisposition"] = "attachment"
            params["ResponseContentType"] = "application/octet-stream"
        elif method == "PUT":
            operation = "put_object"
            if md5 is not None and _HEX32.match(md5.strip().lower()):
                headers["Content-MD5"] = _b64(bytes.fromhex(md5.strip().lower()))
                params["ContentMD5"] = headers["Content-MD5"]
        else:
            raise errors.ValidationError(
                f"no signed URL for {method} (GET or PUT)", field="method", value=method
            )
        url = self._client.generate_presigned_url(
            operation, Params=params, ExpiresIn=max(1, int(lifetime)), HttpMethod=method
        )
        return str(url), headers

    # -- housekeeping --------------------------------------------------------------------------

    def delete(self, id: str, path: str) -> bool:
        key = self.key(id, path)
        if self._head(key) is None:
            return False
        self._call("delete", key, "delete_object")
        self._forget(key)
        return True

    def delete_entity(self, id: str) -> bool:
        keys = [self.key(id, path) for path, _, _ in self._objects(id, "")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "delete",
                f"{self._location.prefix}{id}/",
                "delete_objects",
                Delete={"Objects": batch, "Quiet": True},
                key_argument=False,
            )
        self._forget(f"{self._location.prefix}{id}/")
        _rmtree(self._cache / self.check_id(id))
        _rmtree(self._cache / _ETAGS / id)
        return bool(keys)

    # -- internals -----------------------------------------------------------------------------

    def _make_client(self, *, attempts: int, connect_timeout: float, read_timeout: float) -> Any:
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if self._endpoint else "auto"},
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return self._session.client(
            "s3", endpoint_url=self._endpoint, region_name=self._region, config=config
        )

    def _call(
        self, what: str, key: str, operation: str, *, key_argument: bool = True, **kwargs: Any
    ) -> Any:
        """``operation`` of the client on ``key``, its failures as Assay errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        if key_argument:
            kwargs["Key"] = key
        try:
            return getattr(self._client, operation)(Bucket=self._location.bucket, **kwargs)
        except ClientError as exc:
            self._fail(what, key, exc)
        except BotoCoreError as exc:
            self._fail(what, key, exc)

    def _fail(self, what: str, key: str, exc: Exception) -> NoReturn:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = f"s3://{self._location.bucket}/{key}"
        if isinstance(exc, NoCredentialsError):
            raise _no_credentials(self.url, self._setting) from None
        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            detail = f"{_code(exc)}: {_message(exc)}"
            if status in (429, 500, 502, 503, 504):
                raise errors.UnavailableError(
                    f"S3 storage: could not {what} {where} ({detail}); try again", retry_after=1.0
                ) from None
            raise errors.PlatformError(
                f"S3 storage: could not {what} {where} ({detail}); check the bucket and the "
                "credentials' permissions"
            ) from None
        raise errors.UnavailableError(
            f"S3 storage: could not {what} {where}: {exc}; check that "
            f"{self._endpoint or 'S3'} is reachable, then try again",
            retry_after=1.0,
        ) from None

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply: dict[str, Any] = self._client.head_object(Bucket=self._location.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            self._fail("read", key, exc)
        except BotoCoreError as exc:
            self._fail("read", key, exc)
        return reply

    def _get(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply: dict[str, Any] = self._client.get_object(Bucket=self._location.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            self._fail("read", key, exc)
        except BotoCoreError as exc:
            self._fail("read", key, exc)
        return reply

    def _objects(self, id: str, prefix: str) -> Iterator[tuple[str, int, str]]:
        """``(path, size, etag)`` of the objects of entity ``id`` whose path starts with
        ``prefix``, in key order."""
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self._location.prefix}{self.check_id(id)}/"
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self._location.bucket, Prefix=base + prefix):
                for item in page.get("Contents") or ():
                    path = str(item["Key"])[len(base) :]
                    if path and not path.endswith("/"):  # a console's "folder" marker is none
                        yield path, int(item["Size"]), str(item.get("ETag", ""))
        except (ClientError, BotoCoreError) as exc:
            self._fail("list", base + prefix, exc)

    def _forget(self, key: str) -> None:
        """Forget what was remembered of the tree at and below ``key`` (deleted)."""
        with self._lock:
            self._files = {k for k in self._files if not k.startswith(key)}
            self._directories = {k for k in self._directories if not k.startswith(key)}

    def _remember(self, key: str, etag: str, md5: str) -> None:
        if not etag:
            return
        with self._lock:
            self._digests.pop((key, etag), None)
            self._digests[(key, etag)] = md5
            while len(self._digests) > self.DIGESTS_REMEMBERED:
                del self._digests[next(iter(self._digests))]

    def _download(self, id: str, path: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".assay-tmp-{secrets.token_hex(8)}"
        try:
            with self.open(id, path) as source, open(temp, "wb") as out:
                for block in iter_chunks(source):
                    out.write(block)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _arrow_filesystem(self) -> pyarrow.fs.S3FileSystem:
        """pyarrow's S3 file system with this storage's credentials (made again when they
        were refreshed: a role's credentials expire)."""
        import pyarrow.fs

        credentials = self._session.get_credentials()
        if credentials is None:
            raise _no_credentials(self.url, self._setting)
        frozen = credentials.get_frozen_credentials()
        stamp = (str(frozen.access_key), str(frozen.secret_key), frozen.token)
        with self._lock:
            if self._arrow is not None and self._arrow[0] == stamp:
                return self._arrow[1]
        options: dict[str, Any] = {
            "access_key": stamp[0],
            "secret_key": stamp[1],
            "session_token": stamp[2],
            "region": self._region,
            "connect_timeout": 10.0,
            "request_timeout": 120.0,
            "allow_bucket_creation": False,
            "allow_bucket_deletion": False,
        }
        if self._endpoint:
            scheme, _, address = self._endpoint.partition("://")
            options.update(scheme=scheme, endpoint_override=address.rstrip("/"))
        filesystem = pyarrow.fs.S3FileSystem(**options)
        with self._lock:
            self._arrow = (stamp, filesystem)
        return filesystem


class _ObjectReader(io.RawIOBase):
    """A raw binary stream over an object's body (botocore's ``StreamingBody``)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


def _session(url: str, setting: str) -> Any:
    try:
        import boto3
    except ImportError:
        raise errors.ValidationError(
            f"{setting} {url!r}: S3 storage needs boto3; install it with pip install 'assay[s3]'",
            field=setting,
            value=url,
        ) from None
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise _no_credentials(url, setting)
    return session


def _no_credentials(url: str, setting: str) -> errors.ValidationError:
    return errors.ValidationError(
        f"{setting} {url!r}: no AWS credentials found for the bucket; set AWS_ACCESS_KEY_ID "
        "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run where a role provides them)",
        field="AWS_ACCESS_KEY_ID",
        value=url,
    )


def _check_endpoint(endpoint: str | None, setting: str, url: str) -> str | None:
    if not endpoint:
        return None
    if not re.match(r"^https?://[^/\s?#]+/?$", endpoint):
        raise errors.ValidationError(
            f"{ENDPOINT_VARIABLE} {endpoint!r} (the S3 server of {setting} {url!r}) is not a "
            "server URL: expected http://HOST:PORT or https://HOST, with no path",
            field=ENDPOINT_VARIABLE,
            value=endpoint,
        )
    return endpoint.rstrip("/")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "") or "")


def _message(exc: Any) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Message") or error.get("Code") or exc)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _copied(target: Path, stamp: Path, size: int, etag: str) -> bool:
    """Whether ``target`` is a copy of the object version ``etag`` of ``size`` bytes."""
    try:
        return target.stat().st_size == size and stamp.read_bytes() == etag.encode()
    except OSError:
        return False


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".assay-tmp-{secrets.token_hex(8)}"
    temp.write_bytes(data)
    os.replace(temp, path)


def _rmtree(path: Path) -> None:
    """Remove the folder ``path`` if it exists (a copy in the cache)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
