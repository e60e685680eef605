"""S3 artifact storage against a real S3-compatible server on loopback (moto in server mode):
the behaviours every storage shares, run against LocalStorage and S3Storage alike, then what
is S3's own (objects and their digests, multipart uploads, local copies, presigned URLs) and
the clear errors of a bad setting."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.s3_server import CREDENTIALS, S3Env, s3_endpoint, s3_env

from assay import errors
from assay.schema.ids import generate_entity_id
from assay.storage import (
    ArtifactInfo,
    ArtifactStorage,
    LocalStorage,
    S3Location,
    S3Storage,
    open_storage,
)
from assay.storage._s3 import PART_SIZE

__all__ = ["s3_endpoint", "s3_env"]  # the fixtures, brought into scope


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "artifacts")
    env: S3Env = request.getfixturevalue("s3_env")
    return S3Storage(env.url("audits/assay"), cache_dir=tmp_path / "cache")


@pytest.fixture
def s3(s3_env: S3Env, tmp_path: Path) -> S3Storage:
    return S3Storage(s3_env.url("audits/assay"), cache_dir=tmp_path / "cache")


@pytest.fixture
def entity() -> str:
    return generate_entity_id()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def leftovers(storage: ArtifactStorage, entity: str) -> list[str]:
    """What a failed write may have left: temporary files, or unfinished multipart uploads."""
    if isinstance(storage, LocalStorage):
        return sorted(os.listdir(storage.entity_dir(entity)))
    assert isinstance(storage, S3Storage)
    client: Any = S3Env(storage.endpoint_url or "", storage.location.bucket).client()
    uploads = client.list_multipart_uploads(Bucket=storage.location.bucket).get("Uploads") or []
    return [u["Key"] for u in uploads]


# -- what every storage does -------------------------------------------------------------------


def test_put_bytes_reports_size_md5_and_sha256(storage: ArtifactStorage, entity: str) -> None:
    data = b"hello, audit\n" * 1000
    info = storage.put_bytes(entity, "data/hello.txt", data)
    sha256 = hashlib.sha256(data).hexdigest()
    assert info == ArtifactInfo(
        path="data/hello.txt", size=len(data), md5=md5_of(data), sha256=sha256
    )
    assert storage.sha256(entity, "data/hello.txt") == sha256
    assert storage.hashes(entity, "data/hello.txt") == (md5_of(data), sha256)
    assert storage.read_bytes(entity, "data/hello.txt") == data
    assert storage.md5(entity, "data/hello.txt") == md5_of(data)
    assert storage.exists(entity, "data/hello.txt")


def test_put_stream_from_chunks_a_file_object_and_in_parts(
    storage: ArtifactStorage, entity: str, tmp_path: Path
) -> None:
    chunks = [b"a" * 1000, bytearray(b"b" * 10), memoryview(b"c" * 5), b""]
    joined = b"".join(bytes(c) for c in chunks)
    info = storage.put_stream(entity, "chunks.bin", chunks)  # type: ignore[arg-type]
    assert (info.size, info.md5) == (len(joined), md5_of(joined))
    # larger than one part: S3 stores it with a multipart upload
    blob = os.urandom(2 * PART_SIZE + 17)
    info = storage.put_stream(entity, "blob.bin", io.BytesIO(blob))
    assert (info.size, info.md5) == (len(blob), md5_of(blob))
    assert info.sha256 == hashlib.sha256(blob).hexdigest()
    assert storage.md5(entity, "blob.bin") == md5_of(blob)
    with storage.open(entity, "blob.bin") as handle:
        assert handle.read(10) == blob[:10]
        assert handle.read() == blob[10:]
    source = tmp_path / "source.bin"
    source.write_bytes(blob[:1234])
    assert storage.put_file(entity, "copy/source.bin", source).md5 == md5_of(blob[:1234])
    with pytest.raises(errors.NotFoundError, match="does not exist"):
        storage.put_file(entity, "missing", tmp_path / "missing.bin")


@pytest.mark.parametrize("size", [100, PART_SIZE + 100])
def test_writes_are_atomic(storage: ArtifactStorage, entity: str, size: int) -> None:
    storage.put_bytes(entity, "model.bin", b"version 1")

    def failing() -> Iterator[bytes]:
        yield b"2" * size  # past PART_SIZE: S3 has begun a multipart upload
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        storage.put_stream(entity, "model.bin", failing())
    assert storage.read_bytes(entity, "model.bin") == b"version 1"
    assert leftovers(storage, entity) == (
        ["model.bin"] if isinstance(storage, LocalStorage) else []
    )

    def check_target_while_writing() -> Iterator[bytes]:
        yield b"3" * size
        # mid-write, readers still see the old complete artifact
        assert storage.read_bytes(entity, "model.bin") == b"version 1"
        assert [a.path for a in storage.list(entity)] == ["model.bin"]
        yield b", complete"

    storage.put_stream(entity, "model.bin", check_target_while_writing())
    assert storage.read_bytes(entity, "model.bin") == b"3" * size + b", complete"


def test_a_file_cannot_be_written_over_a_directory_or_under_a_file(
    storage: ArtifactStorage, entity: str
) -> None:
    storage.put_bytes(entity, "a/b", b"x")
    with pytest.raises(errors.ValidationError, match="directory"):
        storage.put_bytes(entity, "a", b"y")
    with pytest.raises(errors.ValidationError, match="is a file"):
        storage.put_bytes(entity, "a/b/c", b"y")
    assert [a.path for a in storage.list(entity)] == ["a/b"]


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "", "what?", "x#y", "con", " space"])
def test_bad_paths_are_refused(storage: ArtifactStorage, entity: str, path: str) -> None:
    with pytest.raises(errors.ValidationError, match=entity):
        storage.put_bytes(entity, path, b"x")
    for call in (storage.read_bytes, storage.exists, storage.delete):
        with pytest.raises(errors.ValidationError):
            call(entity, path)
    assert storage.list(entity) == []


@pytest.mark.parametrize("bad_id", ["..", "../etc", "not-an-id", "A" * 32, ""])
def test_bad_entity_ids_are_refused(storage: ArtifactStorage, bad_id: str) -> None:
    for call in (
        lambda: storage.put_bytes(bad_id, "x", b"x"),
        lambda: storage.read_bytes(bad_id, "x"),
        lambda: storage.list(bad_id),
        lambda: storage.delete_entity(bad_id),
        lambda: storage.arrow_location(bad_id),
    ):
        with pytest.raises(errors.ValidationError, match="entity id"):
            call()


def test_missing_artifacts_are_not_found(storage: ArtifactStorage, entity: str) -> None:
    for read in (storage.open, storage.read_bytes, storage.md5):
        with pytest.raises(errors.NotFoundError, match=rf"{entity}.*'missing/file.txt'"):
            read(entity, "missing/file.txt")
    with pytest.raises(errors.NotFoundError):
        storage.verify(entity, "missing/file.txt", md5_of(b""))
    storage.put_bytes(entity, "dir/file", b"x")
    with pytest.raises(errors.NotFoundError, match="'dir'"):
        storage.open(entity, "dir")
    with pytest.raises(errors.NotFoundError):
        storage.open(entity, "dir/file/below")
    assert storage.exists(entity, "dir/file")
    assert not storage.exists(entity, "dir")
    assert not storage.exists(generate_entity_id(), "dir/file")


def test_verify(storage: ArtifactStorage, entity: str) -> None:
    info = storage.put_bytes(entity, "weights.bin", b"\x00\x01\x02")
    assert info.md5 is not None
    storage.verify(entity, "weights.bin", info.md5)
    storage.verify(entity, "weights.bin", info.md5.upper())
    wrong = md5_of(b"something else")
    with pytest.raises(errors.DataIntegrityError) as caught:
        storage.verify(entity, "weights.bin", wrong)
    for part in (entity, "'weights.bin'", f"expected md5 {wrong}", f"found {info.md5}"):
        assert part in str(caught.value)


def test_list_sorted_with_prefix_and_optional_md5(storage: ArtifactStorage, entity: str) -> None:
    files = {
        "z.txt": b"z",
        "data/part-1.parquet": b"11",
        "data/part-0.parquet": b"0",
        "data/sub/deep.bin": b"deep",
        "database.txt": b"db",
        ".hidden": b"h",
    }
    for path, data in files.items():
        storage.put_bytes(entity, path, data)
    listed = storage.list(entity)
    assert [a.path for a in listed] == sorted(files)
    assert all(a.md5 is None for a in listed)
    assert {a.path: a.size for a in listed} == {p: len(d) for p, d in files.items()}
    assert {a.path: a.md5 for a in storage.list(entity, md5=True)} == {
        p: md5_of(d) for p, d in files.items()
    }
    assert [a.path for a in storage.list(entity, "data/")] == [
        "data/part-0.parquet",
        "data/part-1.parquet",
        "data/sub/deep.bin",
    ]
    assert [a.path for a in storage.list(entity, "data")][-1] == "database.txt"
    assert storage.list(entity, "nothing/") == []
    assert storage.list(generate_entity_id()) == []
    with pytest.raises(errors.ValidationError):
        storage.list(entity, "../")


def test_delete_one_artifact_and_whole_entities(storage: ArtifactStorage, entity: str) -> None:
    other = generate_entity_id()
    storage.put_bytes(entity, "a/b.txt", b"x")
    storage.put_bytes(entity, "a/c.txt", b"y")
    storage.put_bytes(other, "a/b.txt", b"z")
    assert storage.delete(entity, "a/b.txt") is True
    assert storage.delete(entity, "a/b.txt") is False
    assert storage.delete(entity, "a") is False  # a directory is not an artifact
    assert storage.delete(generate_entity_id(), "a/c.txt") is False
    assert [a.path for a in storage.list(entity)] == ["a/c.txt"]
    assert storage.delete_entity(entity) is True
    assert storage.list(entity) == []
    assert storage.delete_entity(entity) is False
    assert storage.read_bytes(other, "a/b.txt") == b"z"
    # a path deleted can be written again, even as a file where a directory was
    storage.put_bytes(entity, "a", b"now a file")
    assert storage.read_bytes(entity, "a") == b"now a file"


def test_arrow_location_reads_and_writes_parquet(storage: ArtifactStorage, entity: str) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    filesystem, location = storage.arrow_location(entity, "data")
    table = pa.table({"_index_": list(range(1000)), "text": [f"row {i}" for i in range(1000)]})
    ds.write_dataset(table, location, filesystem=filesystem, format="parquet")
    assert ds.dataset(location, filesystem=filesystem).to_table().equals(table)
    assert [a.path for a in storage.list(entity, "data/")] == ["data/part-0.parquet"]
    # a Parquet artifact stored by the storage streams back through Arrow, page by page
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=100)
    storage.put_bytes(entity, "out/part.parquet", sink.getvalue().to_pybytes())
    filesystem, root = storage.arrow_location(entity)
    with filesystem.open_input_file(f"{root}/out/part.parquet") as handle:
        batches = list(pq.ParquetFile(handle).iter_batches(batch_size=250))
    assert len(batches) >= 4 and pa.Table.from_batches(batches).equals(table)
    with pytest.raises(errors.ValidationError):
        storage.arrow_location(entity, "../elsewhere")


def test_local_copy_holds_the_files_and_fetches_only_what_changed(
    storage: ArtifactStorage, entity: str
) -> None:
    storage.put_bytes(entity, "pkg/mod.py", b"X = 1\n")
    storage.put_bytes(entity, "pkg/data.bin", b"\x00" * 100)
    root = storage.local_copy(entity)
    assert (root / "pkg" / "mod.py").read_bytes() == b"X = 1\n"
    assert (root / "pkg" / "data.bin").read_bytes() == b"\x00" * 100
    before = (root / "pkg" / "data.bin").stat()
    storage.put_bytes(entity, "pkg/mod.py", b"X = 2\n")
    again = storage.local_copy(entity, ["pkg/mod.py", "pkg/data.bin"])
    assert again == root
    assert (root / "pkg" / "mod.py").read_bytes() == b"X = 2\n"
    after = (root / "pkg" / "data.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # kept
    assert storage.local_copy(entity, ()) == root
    with pytest.raises(errors.ValidationError):
        storage.local_copy(entity, ["../x"])
    if isinstance(storage, S3Storage):
        assert root.is_relative_to(storage.cache_dir)
        with pytest.raises(errors.NotFoundError, match=r"'pkg/missing\.py'"):
            storage.local_copy(entity, ["pkg/missing.py"])
        (root / "pkg" / "mod.py").write_bytes(b"damaged")  # the copy is checked, not trusted
        storage.local_copy(entity, ["pkg/mod.py"])
        assert (root / "pkg" / "mod.py").read_bytes() == b"X = 2\n"


# -- what is S3's own --------------------------------------------------------------------------


def test_objects_live_under_the_prefix_with_the_digests_written(
    s3: S3Storage, s3_env: S3Env, entity: str
) -> None:
    data = b"payload"
    s3.put_bytes(entity, "data/part-0.parquet", data)
    client: Any = s3_env.client()
    key = f"audits/assay/{entity}/data/part-0.parquet"
    assert s3.key(entity, "data/part-0.parquet") == key
    head = client.head_object(Bucket=s3_env.bucket, Key=key)
    assert head["Metadata"] == {
        "assay-md5": md5_of(data),
        "assay-sha256": hashlib.sha256(data).hexdigest(),
    }
    assert (
        repr(s3)
        == f"S3Storage('s3://{s3_env.bucket}/audits/assay', endpoint_url={s3_env.endpoint!r})"
    )
    assert s3.local_dir(entity) is None and s3.local_path(entity, "x") is None
    with pytest.raises(errors.ValidationError, match="does not keep artifacts on this machine"):
        s3.link(entity, ".")


def test_verify_reads_the_bytes_not_the_digests_written_beside_them(
    s3: S3Storage, s3_env: S3Env, entity: str
) -> None:
    info = s3.put_bytes(entity, "weights.bin", b"original")
    assert info.md5 is not None
    client: Any = s3_env.client()
    key = s3.key(entity, "weights.bin")
    # someone with access to the bucket changes the bytes and keeps the old metadata
    client.put_object(
        Bucket=s3_env.bucket,
        Key=key,
        Body=b"tampered",
        Metadata={"assay-md5": info.md5, "assay-sha256": info.sha256 or ""},
    )
    assert s3.md5(entity, "weights.bin") == info.md5  # the metadata, for listings
    with pytest.raises(errors.DataIntegrityError, match=f"found {md5_of(b'tampered')}"):
        s3.verify(entity, "weights.bin", info.md5)
    assert s3.sha256(entity, "weights.bin") == hashlib.sha256(b"tampered").hexdigest()


def test_presigned_urls_name_one_object_one_method_and_expire(s3: S3Storage, entity: str) -> None:
    s3.put_bytes(entity, "data/a.bin", b"downloadable")
    url, headers = s3.signed_url(entity, "data/a.bin", "GET", lifetime=120) or ("", {})
    assert headers == {}
    parsed = httpx.URL(url)
    assert parsed.path.endswith(f"/audits/assay/{entity}/data/a.bin")
    assert parsed.params["X-Amz-Expires"] == "120"
    assert parsed.params["response-content-disposition"] == "attachment"
    reply = httpx.get(url)
    assert reply.status_code == 200 and reply.content == b"downloadable"
    assert reply.headers["content-type"] == "application/octet-stream"

    data = b"uploaded by a client"
    url, headers = s3.signed_url(entity, "up/b.bin", "PUT", lifetime=60, md5=md5_of(data)) or (
        "",
        {},
    )
    assert "content-md5" in httpx.URL(url).params["X-Amz-SignedHeaders"].split(";")
    assert reply.status_code == 200
    reply = httpx.put(url, content=data, headers=headers)
    assert reply.status_code == 200, reply.text
    assert s3.read_bytes(entity, "up/b.bin") == data
    assert LocalStorage(Path(s3.cache_dir)).signed_url(entity, "x", "GET", lifetime=1) is None
    with pytest.raises(errors.ValidationError, match="GET or PUT"):
        s3.signed_url(entity, "up/b.bin", "DELETE", lifetime=60)


def test_a_second_storage_object_sees_what_the_first_wrote(
    s3: S3Storage, s3_env: S3Env, entity: str, tmp_path: Path
) -> None:
    """Another process opens the same bucket: digests of multipart objects are not in the
    metadata, so it reads them; everything else is the same."""
    blob = os.urandom(PART_SIZE + 1)
    s3.put_bytes(entity, "big.bin", blob)
    other = S3Storage(s3_env.url("audits/assay"), cache_dir=tmp_path / "other")
    assert other.md5(entity, "big.bin") == md5_of(blob)
    assert [a.path for a in other.list(entity)] == ["big.bin"]


# -- opening: a bad setting is one clear error -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("s3:/bucket", "must start with s3://"),
        ("s3://", "names no bucket"),
        ("s3://Upper-Case", "lowercase"),
        ("s3://ab", "3 to 63"),
        ("s3://bucket/../up", "key prefix"),
        ("s3://bucket/a?b", "key prefix"),
    ],
)
def test_malformed_urls_name_the_setting_and_the_form(url: str, rule: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        S3Location.parse(url, setting="--storage")
    message = str(caught.value)
    assert message.startswith(f"--storage {url!r}") and rule in message
    assert "expected s3://BUCKET or s3://BUCKET/PREFIX" in message
    assert S3Location.parse("s3://my.bucket-1/a/b/").prefix == "a/b/"
    assert S3Location.parse("s3://my-bucket").url == "s3://my-bucket"


def test_a_missing_bucket_says_how_to_make_it(s3_env: S3Env) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        S3Storage("s3://no-such-bucket-here/x", setting="LocalPlatform(storage=...)")
    message = str(caught.value)
    assert "LocalPlatform(storage=...) 's3://no-such-bucket-here/x'" in message
    assert "'no-such-bucket-here' does not exist" in message
    assert f"aws s3 mb s3://no-such-bucket-here --endpoint-url {s3_env.endpoint}" in message


def test_an_unreachable_endpoint_fails_fast_naming_the_variable(
    s3_env: S3Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.server.loopback import free_port

    monkeypatch.setenv("ASSAY_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(errors.ValidationError) as caught:
        S3Storage(s3_env.url())
    assert time.monotonic() - started < 60  # a few quick tries, never minutes of retries
    assert "cannot reach http://127.0.0.1:" in str(caught.value)
    assert "check ASSAY_S3_ENDPOINT_URL" in str(caught.value)
    assert caught.value.field == "ASSAY_S3_ENDPOINT_URL"
    monkeypatch.setenv("ASSAY_S3_ENDPOINT_URL", "localhost:9000")
    with pytest.raises(errors.ValidationError, match=r"ASSAY_S3_ENDPOINT_URL 'localhost:9000'"):
        S3Storage(s3_env.url())


def test_no_credentials_says_which_variables_to_set(
    s3_env: S3Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in CREDENTIALS:
        if name != "AWS_DEFAULT_REGION":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(errors.ValidationError) as caught:
        S3Storage(s3_env.url())
    assert "no AWS credentials found" in str(caught.value)
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in str(caught.value)


def test_open_storage_picks_the_backend(s3_env: S3Env, tmp_path: Path) -> None:
    local = open_storage(None, root=tmp_path / "root")
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "root").resolve()
    elsewhere = open_storage(str(tmp_path / "elsewhere"), root=tmp_path / "root")
    assert isinstance(elsewhere, LocalStorage)
    assert elsewhere.root == (tmp_path / "elsewhere").resolve()
    bucket = open_storage(s3_env.url("p"), root=tmp_path / "root")
    assert isinstance(bucket, S3Storage)
    assert bucket.cache_dir == (tmp_path / "root" / ".assay" / "s3-cache").resolve()
    with pytest.raises(errors.ValidationError, match=r"scheme 'gs' is not supported.*s3://"):
        open_storage("gs://bucket", root=tmp_path, setting="--storage")
