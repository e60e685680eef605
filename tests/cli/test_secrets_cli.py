"""``assay secrets set|list|delete``: the value comes from standard input (or a prompt), never
from the command line; on a server (``Client.secrets``) and on an embedded platform
(``--data``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests.local.test_remote import ALICE, Server, server

from assay.cli import main
from assay.local import LocalPlatform

__all__ = ["server"]  # the fixture, shared with tests/local/test_remote.py


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_secrets_on_a_server(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_API_ENDPOINT", server.url)
    monkeypatch.setenv("ASSAY_API_TOKEN", server.token(ALICE))
    assert run(capsys, monkeypatch, "s3cret\n", "secrets", "set", "moderator-key")[0] == 0
    assert server.core.secrets is not None
    assert server.core.secrets.get(ALICE, "moderator-key") == "s3cret"  # one newline dropped
    assert run(capsys, monkeypatch, "", "secrets", "list")[1] == "moderator-key\n"
    # the value is never an argument: a second positional is refused by the parser
    with pytest.raises(SystemExit):
        main(["secrets", "set", "moderator-key", "s3cret"])
    status, _, err = run(capsys, monkeypatch, "", "secrets", "set", "empty")
    assert status == 2 and "no value was given" in err
    status, _, err = run(capsys, monkeypatch, "x", "secrets", "list", "--account", "bob")
    assert status == 2 and "may not manage the secrets of account 'bob'" in err
    assert run(capsys, monkeypatch, "", "secrets", "delete", "moderator-key")[0] == 0
    status, _, err = run(capsys, monkeypatch, "", "secrets", "delete", "moderator-key")
    assert status == 2 and "no secret 'moderator-key'" in err


def test_secrets_of_an_embedded_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = str(tmp_path / "platform")
    argv = ["secrets", "set", "key", "--data", data, "--account", "team"]
    assert run(capsys, monkeypatch, "v4lue", *argv)[0] == 0
    with LocalPlatform(data, account="team") as platform:
        assert platform.secrets.get("key") == "v4lue"
