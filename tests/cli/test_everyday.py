"""The everyday commands (``assay <kind> list|get|delete|wait|download|logs``, ``assay scores
list``) against a real server on loopback, through ``main(argv)``: tables, ``--json`` that
parses, filters, exit statuses, and errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.client.test_audit import ROWS, md5, write_dataset
from tests.local.test_remote import ALICE, Audit, Server, audit, server

from assay import errors
from assay.cli import main
from assay.client import Client

__all__ = ["audit", "server"]  # the fixtures, shared with tests/local/test_remote.py


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client() as made:
        yield made


@pytest.fixture
def connected(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The server's URL and a token in ASSAY_API_ENDPOINT / ASSAY_API_TOKEN."""
    monkeypatch.setenv("ASSAY_API_ENDPOINT", server.url)
    monkeypatch.setenv("ASSAY_API_TOKEN", server.token())
    return server


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    assert err.startswith("assay: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# -- help ----------------------------------------------------------------------------------


def test_help_at_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (["--help"], "ASSAY_API_TOKEN"),
        (["datasets", "--help"], "download"),
        (["measurements", "--help"], "logs"),
        (["evaluations", "list", "--help"], "ASSAY_API_ENDPOINT"),
        (["evaluations", "wait", "--help"], "--timeout"),
        (["scores", "list", "--help"], "--inference-service"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert expected in capsys.readouterr().out, argv
    assert main(["datasets"]) == 0  # no action: the kind's help
    assert "ACTION" in capsys.readouterr().out


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\nfrom assay.cli import main\ntry:\n    main(['datasets', 'list', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(','.join(m for m in ('httpx', 'pydantic', 'pyarrow', 'assay.client') "
        "if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stderr.strip() == ""


# -- list, get -------------------------------------------------------------------------------


def test_list_as_a_table_and_as_json(
    connected: Server, audit: Audit, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "datasets", "list", "--name", "prompts")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "REASON", "CREATED"]
    assert [r.split()[:4] for r in rows] == [[audit.dataset, "prompts", "Ready", "-"]]
    assert rows[0].index("Ready") == header.index("STATUS")  # aligned

    status, out, _ = run(capsys, "evaluations", "list", "--status", "Complete", "--json")
    assert status == 0
    listed = json.loads(out)
    assert [e["id"] for e in listed] == [audit.evaluation]
    assert listed[0] == client.evaluations.get(audit.evaluation).to_wire()


def test_list_filters(
    connected: Server, audit: Audit, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client.modules.label(audit.module, {"team": "red"})
    try:
        for labels in (["team=red"], ["team"], ["team=blue", "--label", "team=red"]):
            status, out, _ = run(capsys, "modules", "list", "--label", *labels, "--json")
            assert (status, [m["id"] for m in json.loads(out)]) == (0, [audit.module]), labels
        status, out, err = run(capsys, "modules", "list", "--label", "team=blue")
        assert (status, out, err) == (0, "", "no modules found\n")
    finally:
        client.modules.label(audit.module, {"team": None})
    status, out, _ = run(capsys, "methods", "list", "--limit", "1", "--json")
    assert status == 0 and len(json.loads(out)) == 1
    status, out, _ = run(capsys, "methods", "list", "--account", "nobody", "--json")
    assert (status, json.loads(out)) == (0, [])


def test_get_shows_the_main_fields_or_the_whole_entity(
    connected: Server, audit: Audit, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "measurements", "get", audit.measurement)
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert status == 0
    assert fields["id"] == audit.measurement and fields["status"] == "Complete"
    assert fields["kind"] == "Measurement" and fields["account"] == ALICE
    status, out, _ = run(capsys, "measurements", "get", audit.measurement, "--json")
    assert json.loads(out) == client.measurements.get(audit.measurement).to_wire()


def test_the_endpoint_and_token_flags_win_over_the_environment(
    server: Server,
    audit: Audit,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ASSAY_API_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("ASSAY_API_TOKEN", "not-a-token")
    argv = ["--endpoint", server.url, "--token", server.token()]
    status, out, _ = run(capsys, "datasets", "get", audit.dataset, "--json", *argv)
    assert status == 0 and json.loads(out)["id"] == audit.dataset


# -- wait, download, logs, delete, scores ----------------------------------------------------


def test_wait_exit_status_says_how_it_ended(
    connected: Server,
    audit: Audit,
    client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "evaluations", "wait", audit.evaluation, "--timeout", "10")
    assert status == 0 and "Complete" in out.splitlines()[1]
    status, out, _ = run(capsys, "evaluations", "wait", audit.evaluation, "--json")
    assert status == 0 and json.loads(out)["status"] == "Complete"

    broken = client.datasets.create(
        {
            "account": ALICE,
            "name": "broken",
            "artifacts": [{"kind": "parquet", "path": "x.parquet"}],
            "schema": {"arrowSchema": client.datasets.get(audit.dataset).schema_.arrowSchema},
        }
    )
    client.datasets.put_artifact(broken.id, "x.parquet", b"not parquet")
    client.datasets.finalize(broken.id)
    status, out, err = run(capsys, "datasets", "wait", broken.id, "--timeout", "30")
    assert status == 1 and "Error" in out
    assert err.startswith(f"assay: Dataset {broken.id} ended Error") and "Parquet" in err

    waiting = client.datasets.create_arrow_dataset(
        write_dataset(tmp_path / "waiting"), account=ALICE, name="waiting"
    )
    status, _, err = run(capsys, "datasets", "wait", waiting.id, "--timeout", "0.2")
    assert status == 2 and "still Created" in one_error_line(err)


def test_download_prints_the_files(
    connected: Server, audit: Audit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "module"
    status, out, err = run(capsys, "modules", "download", audit.module, str(dest))
    assert status == 0
    files = sorted(Path(line) for line in out.splitlines())
    assert [p.relative_to(dest).as_posix() for p in files] == [
        "case.ipynb",
        "lengthaudit/__init__.py",
    ]
    assert all(md5(p) == md5(audit.package / p.relative_to(dest)) for p in files)
    assert err == f"downloaded 2 files of Module {audit.module} into {dest}\n"


def test_logs_prints_what_the_method_printed(
    connected: Server, audit: Audit, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "measurements", "logs", audit.measurement)
    assert status == 0 and f"measured {ROWS} rows" in out
    with pytest.raises(SystemExit):  # only measurements and safety cases keep logs
        main(["datasets", "logs", audit.dataset])
    capsys.readouterr()


def test_scores_list(
    connected: Server, audit: Audit, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "scores", "list", "--analysis", audit.safetycase)
    header, row = out.splitlines()
    assert status == 0 and header.split() == ["ANALYSIS", "NAME", "VALUE", "TEXT"]
    assert row.split()[:2] == [audit.safetycase, "mean_length"]
    status, out, _ = run(capsys, "scores", "list", "--name", "mean_length", "--json")
    expected = [s.to_wire() for s in client.safetycases.scores(audit.safetycase)]
    assert (status, json.loads(out)) == (0, expected)
    status, out, err = run(capsys, "scores", "list", "--evaluation", "0" * 32)
    assert (status, out, err) == (0, "", "no scores found\n")


def test_delete(
    connected: Server, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="doomed")
    status, out, _ = run(capsys, "datasets", "delete", dataset.id)
    assert (status, out) == (0, f"Dataset {dataset.id} deleted\n")
    assert client.datasets.get(dataset.id).status == "Deleted"


# -- errors ------------------------------------------------------------------------------------


def test_errors_are_one_line_with_status_2(
    connected: Server, audit: Audit, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "datasets", "get", "f" * 32)
    assert status == 2 and "f" * 32 in one_error_line(err)
    status, _, err = run(capsys, "evaluations", "get", audit.dataset)  # another kind's id
    assert status == 2 and one_error_line(err)
    status, _, err = run(capsys, "datasets", "list", "--status", "Finished")
    assert status == 2 and "Complete" in one_error_line(err)  # the valid choices
    status, _, err = run(capsys, "datasets", "list", "--label", "=red")
    assert status == 2 and "KEY=VALUE" in one_error_line(err)
    status, _, err = run(capsys, "datasets", "list", "--token", "not.a.token")
    assert status == 2 and one_error_line(err)
    with pytest.raises(errors.NotFoundError):  # --debug: the exception, with its traceback
        main(["datasets", "get", "f" * 32, "--debug"])
    capsys.readouterr()
    for argv in (
        ["datasets", "list", "--limit", "0"],
        ["datasets", "wait", "x", "--timeout", "-1"],
    ):
        with pytest.raises(SystemExit) as info:  # argparse: usage and status 2
            main(argv)
        assert info.value.code == 2
        assert "expected" in capsys.readouterr().err


def test_without_a_server_it_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASSAY_API_ENDPOINT", raising=False)
    monkeypatch.delenv("ASSAY_API_TOKEN", raising=False)
    status, _, err = run(capsys, "evaluations", "list")
    assert status == 2 and "ASSAY_API_ENDPOINT" in one_error_line(err)
    status, _, err = run(capsys, "evaluations", "list", "--endpoint", "http://127.0.0.1:9")
    assert status == 2 and "ASSAY_API_TOKEN" in one_error_line(err)
