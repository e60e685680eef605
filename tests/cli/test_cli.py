from __future__ import annotations

from pathlib import Path

import pytest

from assay.cli import main
from assay.local import LocalPlatform


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("assay ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "demo"
    assert main(["demo", "--data", str(data)]) == 0
    first = capsys.readouterr().out
    assert "data set" in first and "Ready" in first and "__pycache__ left out" in first
    with LocalPlatform(storage_root=data) as platform:
        datasets = platform.datasets.query(account="demo")
        methods = platform.methods.query(account="demo")
        assert [d.status for d in datasets] == ["Ready"]
        assert [m.status for m in methods] == ["Ready"]
        counts = len(platform.models.query())

    assert main(["demo", "--data", str(data)]) == 0
    second = capsys.readouterr().out
    assert second.count("reusing") == 4
    with LocalPlatform(storage_root=data) as platform:
        assert len(platform.models.query()) == counts
        assert len(platform.datasets.query()) == 1


def test_user_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", str(tmp_path / "d"), "--account", "not valid!"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assay: error: ") and err.count("\n") == 1 and "Traceback" not in err
