"""What comes back from a sandboxed job: only regular files inside its folder, never what a
link it made points to (assay.sandbox.regular_files, read_regular)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assay import sandbox


def test_links_out_of_the_output_folder_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"the key")
    output = tmp_path / "output"
    (output / "sub").mkdir(parents=True)
    (output / "data.parquet").write_bytes(b"rows")
    (output / "sub" / "more.txt").write_bytes(b"more")
    os.symlink(secret, output / "leak.txt")
    os.symlink(tmp_path, output / "everything")
    os.mkfifo(output / "fifo")
    found = {name: path.read_bytes() for name, path in sandbox.regular_files(output)}
    assert found == {"data.parquet": b"rows", "sub/more.txt": b"more"}


def test_result_files_are_read_only_when_regular_and_small(tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_bytes(b'{"message": "the key"}')
    os.symlink(secret, tmp_path / "error.json")
    with pytest.raises(ValueError, match="not a regular file"):
        sandbox.read_regular(tmp_path / "error.json")
    (tmp_path / "big.json").write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match="larger than 100 bytes"):
        sandbox.read_regular(tmp_path / "big.json", limit=100)
    assert sandbox.read_regular(tmp_path / "missing.json") is None
    (tmp_path / "result.json").write_bytes(b"{}")
    assert sandbox.read_regular(tmp_path / "result.json") == b"{}"
