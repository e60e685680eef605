"""Choosing the ``ray`` executor: a bad ``--ray-address`` fails at once with an error that
names the setting and the fix (Ray itself retries for minutes), wherever it is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.ray.cluster import free_port

from assay import errors
from assay.cli import main
from assay.local import LocalPlatform
from assay.server.settings import ServerSettings
from assay.server.state import build_core

# a hang is the failure these tests guard against: fail in seconds, not Ray's minutes
pytestmark = pytest.mark.timeout(60)


def test_a_closed_port_fails_at_once_naming_the_setting_and_the_fix(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(errors.ValidationError) as caught:
        LocalPlatform(tmp_path / "p", executor="ray", ray_address=address)
    message = str(caught.value)
    assert f"no Ray cluster answers at {address}" in message
    assert "LocalPlatform(ray_address=...)" in message
    assert "ray start --head" in message and "fix the address" in message


def test_an_address_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError, match="is not the address of a Ray cluster"):
        LocalPlatform(tmp_path / "p", executor="ray", ray_address="my-cluster")
    with pytest.raises(errors.ValidationError, match="applies to executor='ray' only"):
        LocalPlatform(tmp_path / "q", executor="processes", ray_address="127.0.0.1:6379")


def test_the_server_names_its_flag_and_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    code = main(
        [
            "serve",
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--data",
            str(tmp_path / "data"),
            "--single-user",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert f"no Ray cluster answers at {address} (--ray-address / ASSAY_RAY_ADDRESS)" in err
    settings = ServerSettings.from_env(
        {"ASSAY_EXECUTOR": "ray", "ASSAY_RAY_ADDRESS": address, "ASSAY_SINGLE_USER": "1"},
        data_dir=tmp_path / "data",
    )
    assert settings.executor == "ray" and settings.ray_address == address
    with pytest.raises(errors.ValidationError, match="ASSAY_RAY_ADDRESS"):
        build_core(settings)
