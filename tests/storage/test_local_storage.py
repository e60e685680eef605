"""Local artifact storage: atomic writes, digests, path safety, listing, deletion, links."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pytest

import assay.storage
from assay import errors
from assay.schema.ids import generate_entity_id
from assay.storage import ArtifactInfo, ArtifactStorage, Chunks, LocalStorage
from assay.storage._base import iter_chunks
from assay.storage._local import TEMP_PREFIX

if TYPE_CHECKING:
    import pyarrow.fs


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "artifacts")


@pytest.fixture
def entity() -> str:
    return generate_entity_id()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_public_names_are_sorted_and_exist() -> None:
    def key(name: str) -> tuple[bool, bool, str]:
        return (not name.isupper(), not name[:1].isupper(), name)

    assert assay.storage.__all__ == sorted(assay.storage.__all__, key=key)
    for name in assay.storage.__all__:
        assert hasattr(assay.storage, name), name
    assert issubclass(LocalStorage, ArtifactStorage)


# -- writing -----------------------------------------------------------------------------------


def test_put_bytes_reports_size_md5_and_sha256(storage: LocalStorage, entity: str) -> None:
    import hashlib

    data = b"hello, audit\n" * 1000
    info = storage.put_bytes(entity, "data/hello.txt", data)
    sha256 = hashlib.sha256(data).hexdigest()
    assert info == ArtifactInfo(
        path="data/hello.txt", size=len(data), md5=md5_of(data), sha256=sha256
    )
    assert storage.sha256(entity, "data/hello.txt") == sha256
    assert storage.hashes(entity, "data/hello.txt") == (md5_of(data), sha256)
    assert storage.read_bytes(entity, "data/hello.txt") == data
    assert (storage.entity_dir(entity) / "data" / "hello.txt").read_bytes() == data
    assert storage.md5(entity, "data/hello.txt") == md5_of(data)


def test_put_stream_from_chunks_and_from_a_file_object(storage: LocalStorage, entity: str) -> None:
    chunks = [b"a" * 1000, bytearray(b"b" * 10), memoryview(b"c" * 5), b""]
    joined = b"".join(bytes(c) for c in chunks)
    info = storage.put_stream(entity, "chunks.bin", chunks)  # type: ignore[arg-type]
    assert (info.size, info.md5) == (len(joined), md5_of(joined))
    # a file without newlines is read in blocks, not by "lines"
    blob = os.urandom(3 * assay.storage.CHUNK_SIZE + 17)
    info = storage.put_stream(entity, "blob.bin", io.BytesIO(blob))
    assert (info.size, info.md5) == (len(blob), md5_of(blob))
    assert storage.read_bytes(entity, "blob.bin") == blob


def test_put_file_streams_a_local_file(storage: LocalStorage, entity: str, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    data = os.urandom(2 * assay.storage.CHUNK_SIZE + 3)
    source.write_bytes(data)
    info = storage.put_file(entity, "copy/source.bin", source)
    assert (info.path, info.size, info.md5) == ("copy/source.bin", len(data), md5_of(data))
    with storage.open(entity, "copy/source.bin") as handle:
        assert handle.read() == data
    with pytest.raises(errors.NotFoundError, match="does not exist"):
        storage.put_file(entity, "missing", tmp_path / "missing.bin")


def test_writes_are_atomic(storage: LocalStorage, entity: str) -> None:
    storage.put_bytes(entity, "model.bin", b"version 1")

    def failing() -> Iterator[bytes]:
        yield b"version 2, first half"
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        storage.put_stream(entity, "model.bin", failing())
    assert storage.read_bytes(entity, "model.bin") == b"version 1"
    assert os.listdir(storage.entity_dir(entity)) == ["model.bin"]  # no temporary left over

    def check_target_while_writing() -> Iterator[bytes]:
        yield b"version 3"
        # mid-write, readers still see the old complete artifact
        assert storage.read_bytes(entity, "model.bin") == b"version 1"
        assert [a.path for a in storage.list(entity)] == ["model.bin"]
        yield b", complete"

    storage.put_stream(entity, "model.bin", check_target_while_writing())
    assert storage.read_bytes(entity, "model.bin") == b"version 3, complete"
    assert os.listdir(storage.entity_dir(entity)) == ["model.bin"]


def test_a_file_cannot_be_written_over_a_directory_or_under_a_file(
    storage: LocalStorage, entity: str
) -> None:
    storage.put_bytes(entity, "a/b", b"x")
    with pytest.raises(errors.ValidationError, match="directory"):
        storage.put_bytes(entity, "a", b"y")
    with pytest.raises(errors.ValidationError, match="is a file"):
        storage.put_bytes(entity, "a/b/c", b"y")


# -- path safety -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "/abs",
        "a/../../b",
        "a/./b",
        "a//b",
        "",
        "C:/windows",
        "a\\b",
        "what?",
        "100%",
        "x#y",
        "con",
        "trailing.",
        " space",
    ],
)
def test_bad_paths_are_refused(storage: LocalStorage, entity: str, path: str) -> None:
    with pytest.raises(errors.ValidationError, match=entity):
        storage.put_bytes(entity, path, b"x")
    with pytest.raises(errors.ValidationError):
        storage.read_bytes(entity, path)
    with pytest.raises(errors.ValidationError):
        storage.exists(entity, path)
    assert not any(storage.root.rglob("*"))


@pytest.mark.parametrize("bad_id", ["..", "../etc", "not-an-id", "A" * 32, ""])
def test_bad_entity_ids_are_refused(storage: LocalStorage, bad_id: str) -> None:
    with pytest.raises(errors.ValidationError, match="entity id"):
        storage.put_bytes(bad_id, "x", b"x")
    with pytest.raises(errors.ValidationError, match="entity id"):
        storage.list(bad_id)
    with pytest.raises(errors.ValidationError, match="entity id"):
        storage.delete_entity(bad_id)


def test_a_symlink_out_of_the_entity_is_refused(
    storage: LocalStorage, entity: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    storage.put_bytes(entity, "ok.txt", b"ok")
    directory = storage.entity_dir(entity)
    (directory / "escape").symlink_to(outside, target_is_directory=True)
    (directory / "secret-link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.put_bytes(entity, "escape/planted.txt", b"x")
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.put_bytes(entity, "escape/new/dir/planted.txt", b"x")
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.put_bytes(entity, "secret-link.txt", b"x")
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.read_bytes(entity, "escape/secret.txt")
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.open(entity, "secret-link.txt")
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert [a.path for a in storage.list(entity)] == ["ok.txt"]


def test_a_directory_replaced_by_a_link_after_a_write_is_refused_at_once(
    storage: LocalStorage, entity: str, tmp_path: Path
) -> None:
    # Nothing about the path is remembered from one call to the next (a write that was
    # allowed before says nothing about the same directory now).
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.put_bytes(entity, "data/part-0.parquet", b"0")
    assert storage.exists(entity, "data/part-0.parquet")
    data = storage.entity_dir(entity) / "data"
    (data / "part-0.parquet").unlink()
    data.rmdir()
    data.symlink_to(outside, target_is_directory=True)
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.put_bytes(entity, "data/part-1.parquet", b"1")
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.local_path(entity, "data/part-1.parquet")
    assert os.listdir(outside) == []


def test_a_linked_entity_directory_is_followed_and_checked(
    storage: LocalStorage, entity: str, tmp_path: Path
) -> None:
    package = tmp_path / "package"
    (package / "src").mkdir(parents=True)
    (package / "src" / "m.py").write_bytes(b"x = 1")
    (tmp_path / "elsewhere").mkdir()
    (package / "away").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    storage.link(entity, package)
    assert storage.read_bytes(entity, "src/m.py") == b"x = 1"
    assert storage.local_path(entity, "src/new.py") == storage.entity_dir(entity) / "src/new.py"
    with pytest.raises(errors.ValidationError, match="outside the entity"):
        storage.put_bytes(entity, "away/planted.py", b"x")


def test_a_symlink_inside_the_entity_is_followed(storage: LocalStorage, entity: str) -> None:
    storage.put_bytes(entity, "real/data.txt", b"data")
    (storage.entity_dir(entity) / "alias.txt").symlink_to(Path("real") / "data.txt")
    assert storage.read_bytes(entity, "alias.txt") == b"data"
    assert [(a.path, a.size) for a in storage.list(entity)] == [
        ("alias.txt", 4),
        ("real/data.txt", 4),
    ]


# -- reading -----------------------------------------------------------------------------------


def test_missing_artifacts_are_not_found(storage: LocalStorage, entity: str) -> None:
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
    assert not storage.exists(entity, "missing/file.txt")
    assert not storage.exists(generate_entity_id(), "dir/file")


def test_verify(storage: LocalStorage, entity: str) -> None:
    info = storage.put_bytes(entity, "weights.bin", b"\x00\x01\x02")
    assert info.md5 is not None
    storage.verify(entity, "weights.bin", info.md5)
    storage.verify(entity, "weights.bin", info.md5.upper())
    wrong = md5_of(b"something else")
    with pytest.raises(errors.DataIntegrityError) as caught:
        storage.verify(entity, "weights.bin", wrong)
    message = str(caught.value)
    for part in (entity, "'weights.bin'", f"expected md5 {wrong}", f"found {info.md5}"):
        assert part in message
    assert caught.value.entity == entity


def test_list_sorted_with_prefix_and_optional_md5(storage: LocalStorage, entity: str) -> None:
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
    with_md5 = storage.list(entity, md5=True)
    assert {a.path: a.md5 for a in with_md5} == {p: md5_of(d) for p, d in files.items()}
    assert [a.path for a in storage.list(entity, "data/")] == [
        "data/part-0.parquet",
        "data/part-1.parquet",
        "data/sub/deep.bin",
    ]
    assert [a.path for a in storage.list(entity, "data")] == [
        "data/part-0.parquet",
        "data/part-1.parquet",
        "data/sub/deep.bin",
        "database.txt",
    ]
    assert [a.path for a in storage.list(entity, "data/part-")] == [
        "data/part-0.parquet",
        "data/part-1.parquet",
    ]
    assert storage.list(entity, "nothing/") == []
    assert storage.list(generate_entity_id()) == []
    with pytest.raises(errors.ValidationError):
        storage.list(entity, "../")


def test_list_skips_writes_in_progress(storage: LocalStorage, entity: str) -> None:
    storage.put_bytes(entity, "done.txt", b"done")
    (storage.entity_dir(entity) / f"{TEMP_PREFIX}0123").write_bytes(b"partial")
    assert [a.path for a in storage.list(entity)] == ["done.txt"]


# -- housekeeping ------------------------------------------------------------------------------


def test_delete_one_artifact(storage: LocalStorage, entity: str) -> None:
    storage.put_bytes(entity, "a/b.txt", b"x")
    storage.put_bytes(entity, "a/c.txt", b"y")
    assert storage.delete(entity, "a/b.txt") is True
    assert storage.delete(entity, "a/b.txt") is False
    assert storage.delete(entity, "a") is False  # a directory is not an artifact
    assert storage.delete(entity, "a/c.txt/d") is False
    assert storage.delete(generate_entity_id(), "a/c.txt") is False
    assert [a.path for a in storage.list(entity)] == ["a/c.txt"]
    with pytest.raises(errors.ValidationError):
        storage.delete(entity, "../a/c.txt")


def test_delete_entity(storage: LocalStorage, entity: str) -> None:
    other = generate_entity_id()
    storage.put_bytes(entity, "a/b.txt", b"x")
    storage.put_bytes(other, "a/b.txt", b"y")
    assert storage.delete_entity(entity) is True
    assert not storage.entity_dir(entity).exists()
    assert storage.list(entity) == []
    assert storage.delete_entity(entity) is False
    assert storage.read_bytes(other, "a/b.txt") == b"y"
    assert sorted(os.listdir(storage.root)) == [other]


def test_link_makes_an_editable_entity(storage: LocalStorage, entity: str, tmp_path: Path) -> None:
    package = tmp_path / "my-package"
    (package / "src").mkdir(parents=True)
    (package / "src" / "module.py").write_text("X = 1\n")
    directory = storage.link(entity, package)
    assert directory == storage.entity_dir(entity)
    assert directory.is_symlink()
    assert storage.read_bytes(entity, "src/module.py") == b"X = 1\n"
    assert [a.path for a in storage.list(entity)] == ["src/module.py"]
    (package / "src" / "module.py").write_text("X = 2\n")  # edits show through
    assert storage.read_bytes(entity, "src/module.py") == b"X = 2\n"
    with pytest.raises(errors.ConflictError, match=entity):
        storage.link(entity, package)
    assert storage.delete_entity(entity) is True
    assert not directory.exists()
    assert (package / "src" / "module.py").exists()  # deleting the link keeps the package


def test_link_needs_an_existing_directory(
    storage: LocalStorage, entity: str, tmp_path: Path
) -> None:
    with pytest.raises(errors.ValidationError, match="not an existing directory"):
        storage.link(entity, tmp_path / "missing")
    storage.put_bytes(entity, "x", b"x")
    package = tmp_path / "pkg"
    package.mkdir()
    with pytest.raises(errors.ConflictError, match="delete_entity"):
        storage.link(entity, package)


def test_local_path_and_arrow_location(storage: LocalStorage, entity: str) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs

    assert storage.local_path(entity, "data/x.parquet") == (
        storage.entity_dir(entity) / "data" / "x.parquet"
    )
    with pytest.raises(errors.ValidationError):
        storage.local_path(entity, "../x")
    filesystem, location = storage.arrow_location(entity, "data")
    assert isinstance(filesystem, pyarrow.fs.LocalFileSystem)
    assert location == str(storage.entity_dir(entity) / "data")
    table = pa.table({"_index_": [0, 1, 2]})
    ds.write_dataset(table, location, filesystem=filesystem, format="parquet")
    assert ds.dataset(location, filesystem=filesystem).to_table().equals(table)
    assert [a.path for a in storage.list(entity, "data/")] == ["data/part-0.parquet"]
    assert storage.arrow_location(entity)[1] == str(storage.entity_dir(entity))
    with pytest.raises(errors.ValidationError):
        storage.arrow_location(entity, "../elsewhere")


class MemoryStorage(ArtifactStorage):
    """The smallest backend: only the abstract methods, to check the shared defaults."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}

    def put_stream(self, id: str, path: str, chunks: Chunks) -> ArtifactInfo:
        data = b"".join(iter_chunks(chunks))
        self.files[(self.check_id(id), self.check_path(id, path))] = data
        return ArtifactInfo(path, len(data), md5_of(data))

    def open(self, id: str, path: str) -> BinaryIO:
        try:
            return io.BytesIO(self.files[(id, self.check_path(id, path))])
        except KeyError:
            raise self.missing(id, path) from None

    def exists(self, id: str, path: str) -> bool:
        return (id, self.check_path(id, path)) in self.files

    def list(self, id: str, prefix: str = "", *, md5: bool = False) -> list[ArtifactInfo]:
        return sorted(
            (
                ArtifactInfo(p, len(d), md5_of(d) if md5 else None)
                for (i, p), d in self.files.items()
                if i == id and p.startswith(self.check_prefix(id, prefix))
            ),
            key=lambda info: info.path,
        )

    def delete(self, id: str, path: str) -> bool:
        return self.files.pop((id, path), None) is not None

    def delete_entity(self, id: str) -> bool:
        doomed = [key for key in self.files if key[0] == id]
        for key in doomed:
            del self.files[key]
        return bool(doomed)

    def arrow_location(self, id: str, prefix: str = "") -> tuple[pyarrow.fs.FileSystem, str]:
        raise NotImplementedError


def test_the_base_class_defaults_work_for_any_backend(entity: str, tmp_path: Path) -> None:
    memory = MemoryStorage()
    source = tmp_path / "source.bin"
    source.write_bytes(b"from a file")
    assert memory.put_bytes(entity, "a.bin", b"bytes").md5 == md5_of(b"bytes")
    assert memory.put_file(entity, "b.bin", source).size == len(b"from a file")
    assert memory.read_bytes(entity, "b.bin") == b"from a file"
    assert memory.md5(entity, "a.bin") == md5_of(b"bytes")
    memory.verify(entity, "a.bin", md5_of(b"bytes"))
    with pytest.raises(errors.DataIntegrityError, match="expected md5"):
        memory.verify(entity, "a.bin", md5_of(b"other"))
    with pytest.raises(errors.NotFoundError, match=r"'c\.bin'"):
        memory.md5(entity, "c.bin")
    assert memory.local_path(entity, "a.bin") is None
    with pytest.raises(errors.ValidationError, match="MemoryStorage does not keep artifacts"):
        memory.link(entity, tmp_path)


def test_digests_are_remembered_while_the_file_is_unchanged_and_verify_reads_again(
    storage: LocalStorage, entity: str
) -> None:
    storage.put_bytes(entity, "data/part-0.parquet", b"a" * 1000)
    assert storage.md5(entity, "data/part-0.parquet") == md5_of(b"a" * 1000)
    file = storage.local_path(entity, "data/part-0.parquet")
    before = file.stat()

    # the same size and times, other bytes (as bit rot would): the remembered digest stands...
    with open(file, "r+b") as handle:
        handle.write(b"b")
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert storage.md5(entity, "data/part-0.parquet") == md5_of(b"a" * 1000)
    # ...but verify reads the bytes, and so does md5 once the file is written again
    with pytest.raises(errors.DataIntegrityError, match="corrupt"):
        storage.verify(entity, "data/part-0.parquet", md5_of(b"a" * 1000))
    storage.put_bytes(entity, "data/part-0.parquet", b"c" * 1000)
    assert storage.md5(entity, "data/part-0.parquet") == md5_of(b"c" * 1000)
    with pytest.raises(errors.NotFoundError):
        storage.md5(entity, "data/missing.parquet")
