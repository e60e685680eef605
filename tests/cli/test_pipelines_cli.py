"""``assay pipelines list|get|versions|logs|export|counters|deploy|undeploy`` against a real
server on loopback, through ``main(argv)``: one pipeline over a mock service, with a few rows
inferred; tables, ``--json`` that parses, the more-records note, and errors as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_everyday import one_error_line, run
from tests.local.test_remote import ALICE, Server, server

from assay.cli import main
from assay.client import Client
from assay.local import mocks

__all__ = ["server"]  # the fixture, shared with tests/local/test_remote.py

NAME = "assistant"
ROWS = 5


@pytest.fixture(scope="module")
def deployed(server: Server) -> Iterator[Client]:
    """The pipeline NAME deployed twice (version 2 running: the writer step and a validation
    that flags ``q0``), ``ROWS`` rows inferred through it; a client of its account."""
    with server.client() as client:
        writer = client.inferenceservices.create_mock(
            mocks.TextCompletion, account=ALICE, name="writer", kwargs={"seed": 1}
        )
        pipeline = client.pipelines.create(NAME).add_model_step(writer)
        pipeline.deploy()
        pipeline.add_validations(first="in.text == 'q0'").deploy()
        pipeline.infer([{"text": f"q{i}"} for i in range(ROWS)])
        yield client


@pytest.fixture
def connected(
    server: Server, deployed: Client, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    """The server's URL and a token in ASSAY_API_ENDPOINT / ASSAY_API_TOKEN."""
    monkeypatch.setenv("ASSAY_API_ENDPOINT", server.url)
    monkeypatch.setenv("ASSAY_API_TOKEN", server.token())
    yield deployed


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (["--help"], "assay pipelines list"),
        (["pipelines", "--help"], "from Python"),
        (["pipelines", "deploy", "--help"], "NEW definition"),
        (["pipelines", "logs", "--help"], "--anomalies"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert expected in " ".join(capsys.readouterr().out.split()), argv
    assert main(["pipelines"]) == 0  # no action: the help
    assert "ACTION" in capsys.readouterr().out


def test_list_get_versions(connected: Client, capsys: pytest.CaptureFixture[str]) -> None:
    service = connected.pipelines.get(NAME).inference_service.id
    status, out, _ = run(capsys, "pipelines", "list")
    header, row = out.splitlines()
    assert status == 0 and header.split() == [
        "NAME",
        "DEPLOYED",
        "VERSIONS",
        "INFERENCE",
        "SERVICE",
    ]
    assert row.split() == [NAME, "2", "2", service]
    status, out, _ = run(capsys, "pipelines", "list", "--json")
    listed = json.loads(out)
    assert status == 0 and [p["name"] for p in listed] == [NAME]
    assert listed[0]["deployedVersion"] == 2 and listed[0]["inferenceService"] == service
    status, out, err = run(capsys, "pipelines", "list", "--account", "nobody")
    assert (status, out, err) == (0, "", "no pipelines found\n")

    status, out, _ = run(capsys, "pipelines", "get", NAME)
    assert status == 0
    fields = dict(line.split(None, 1) for line in out.splitlines()[:7])
    assert fields["name"] == NAME and fields["account"] == ALICE and fields["deployed"] == "2"
    assert fields["service"] == service
    steps = out.splitlines()[7:]
    assert steps[0] == "steps of version 2:" and len(steps) == 3 and "writer" in steps[1]
    status, out, _ = run(capsys, "pipelines", "get", NAME, "--json")
    got = json.loads(out)
    assert status == 0 and got["latestVersion"] == 2 and len(got["steps"]) == 2

    status, out, _ = run(capsys, "pipelines", "versions", NAME)
    header, *rows = out.splitlines()
    assert status == 0 and header.split() == ["VERSION", "CREATED", "STEPS", "DEPLOYED"]
    assert [r.split()[:1] + r.split()[2:] for r in rows] == [["1", "1", "-"], ["2", "2", "yes"]]
    status, out, _ = run(capsys, "pipelines", "versions", NAME, "--json")
    assert [v["version"] for v in json.loads(out)] == [1, 2]


def test_logs(connected: Client, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "pipelines", "logs", NAME)
    assert (status, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["TIME", "IN.TEXT"]
    assert len(rows) == ROWS and "OUT.TEXT" in header.split()
    status, out, err = run(capsys, "pipelines", "logs", NAME, "--limit", "2", "--json")
    assert status == 0 and err == "2 shown, more exist: --limit or --all\n"
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and all("anomaly.count" in line for line in lines)
    status, out, err = run(capsys, "pipelines", "logs", NAME, "--all", "--anomalies", "--json")
    assert (status, err) == (0, "")
    assert [json.loads(line)["in.text"] for line in out.splitlines()] == ["q0"]
    status, out, _ = run(capsys, "pipelines", "logs", NAME, "--columns", "in", "--valid")
    header, *rows = out.splitlines()
    assert header.split() == ["TIME", "IN.TEXT"] and len(rows) == ROWS - 1
    status, out, err = run(capsys, "pipelines", "logs", NAME, "--start", "2999-01-01")
    assert (status, out, err) == (0, "", "no log records found\n")
    with pytest.raises(SystemExit) as info:
        main(["pipelines", "logs", NAME, "--end", "yesterday"])
    assert info.value.code == 2 and "ISO 8601" in capsys.readouterr().err


def test_export_and_counters(
    connected: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "pipelines", "export", NAME, str(tmp_path / "out"))
    files = [Path(line) for line in out.splitlines()]
    assert status == 0 and files and all(f.suffix == ".jsonl" for f in files)
    assert sum(len(f.read_text().splitlines()) for f in files) == ROWS and err.strip()
    status, out, _ = run(
        capsys, "pipelines", "export", NAME, str(tmp_path / "arrow"), "--arrow", "--valid"
    )
    assert status == 0 and all(Path(line).suffix == ".arrow" for line in out.splitlines())
    status, out, _ = run(capsys, "pipelines", "counters", NAME)
    counters = dict(line.split() for line in out.splitlines())
    assert status == 0 and int(counters["written"]) >= ROWS
    status, out, _ = run(capsys, "pipelines", "counters", NAME, "--json")
    assert json.loads(out)["written"] >= ROWS


def test_deploy_a_stored_version_and_undeploy(
    connected: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "pipelines", "deploy", NAME, "--version", "1")
    assert (status, out) == (0, f"pipeline {NAME!r} version 1 deployed (1 replica)\n")
    deployed = connected.pipelines.get(NAME).deployed_version
    assert deployed is not None and deployed.version == 1
    status, out, _ = run(capsys, "pipelines", "undeploy", NAME)
    assert (status, out) == (0, f"pipeline {NAME!r} undeployed\n")
    assert connected.pipelines.get(NAME).deployed_version is None


def test_errors_are_one_line(connected: Client, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "pipelines", "get", "nosuch")
    assert status == 2 and "nosuch" in one_error_line(err)
    status, _, err = run(capsys, "pipelines", "deploy", NAME, "--version", "9")
    assert status == 2 and one_error_line(err)
    with pytest.raises(SystemExit) as info:
        main(["pipelines", "export", NAME, "x", "--limit-size", "lots"])
    assert info.value.code == 2 and "100 MiB" in capsys.readouterr().err
