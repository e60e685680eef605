"""Everyday use of the ``assay`` command (issue 17): the entity commands on an embedded
platform (``--data``), a wrong ``--data`` refused rather than made into a new platform, and a
closed pipe ending a command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import ACCOUNT

from assay.cli import main
from assay.local import LocalPlatform


def test_token_create_refuses_a_folder_that_is_not_a_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "typo"
    empty.mkdir()
    assert main(["token", "create", "--data", str(empty), "--account", "alice"]) == 2
    err = capsys.readouterr().err
    assert "is not an Assay platform's directory" in err and str(empty) in err
    assert not (empty / ".assay").exists()  # nothing was made there
    assert "--init" in err
    assert main(["token", "create", "--data", str(empty), "--init", "--account", "a"]) == 0
    assert capsys.readouterr().out.count(".") == 2
    with LocalPlatform(tmp_path / "real", account=ACCOUNT):
        pass
    assert main(["token", "create", "--data", str(tmp_path / "real"), "--account", "a"]) == 0
    assert capsys.readouterr().out.count(".") == 2  # a JWT


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "real", account=ACCOUNT):
        pass
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes (`| head` that ended)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "assay",
                "token",
                "create",
                "--data",
                str(tmp_path / "real"),
                "--account",
                "a",
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == "", done.stderr  # no traceback, no "Exception ignored"


def test_entity_commands_work_on_an_embedded_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import ready_dataset

    from assay.local import mocks

    root = tmp_path / "embedded"
    with LocalPlatform(root, account=ACCOUNT) as platform:
        dataset = ready_dataset(platform, tmp_path / "data", rows=6)
        service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
        evaluation = platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": dataset,
                "inferenceSession": {"inferenceService": service.id},
            }
        ).id
    data = ["--data", str(root)]
    assert main(["datasets", "list", "--status", "Ready", *data]) == 0
    assert dataset in capsys.readouterr().out
    assert main(["evaluations", "get", evaluation, "--json", *data]) == 0
    assert '"Complete"' in capsys.readouterr().out
    assert main(["evaluations", "wait", evaluation, *data]) == 0
    capsys.readouterr()
    assert main(["evaluations", "download", evaluation, str(tmp_path / "out"), *data]) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(Path(p).is_file() and p.endswith(".parquet") for p in printed)
    assert main(["evaluations", "logs", evaluation, *data]) == 0
    assert "ended: Complete" in capsys.readouterr().out
    # a folder that is not a platform is refused, not made into a new one
    assert main(["datasets", "list", "--data", str(tmp_path / "nope")]) == 2
    assert "not an Assay platform" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()
