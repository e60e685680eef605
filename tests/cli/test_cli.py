from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class DemoRun:
    """One run of ``assay demo``: its data directory, exit status, output and wall time."""

    data: Path
    code: int
    out: str
    seconds: float


def _entities(platform: LocalPlatform) -> int:
    groups = (
        platform.datasets,
        platform.evaluations,
        platform.inferenceservices,
        platform.inferencesessions,
        platform.measurements,
        platform.methods,
        platform.models,
        platform.modules,
        platform.safetycases,
    )
    return sum(len(group.query()) for group in groups)


def run_demo(*argv: str) -> DemoRun:
    data = Path(argv[argv.index("--data") + 1])
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["demo", *argv])
    return DemoRun(data, code, out.getvalue(), time.perf_counter() - started)


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The audit, run once for the tests of this module."""
    return run_demo("--data", str(tmp_path_factory.mktemp("demo") / "data"))


def _table_row(out: str, title: str) -> list[str]:
    """The cells after ``title`` of the table row (or header) that starts with it."""
    (line,) = [line for line in out.splitlines() if line.lstrip("↑↓ ").startswith(title)]
    return re.split(r"\s{2,}", line.split(title, 1)[1].strip())


@pytest.mark.slow
def test_demo_audits_two_classifiers(first_demo: DemoRun) -> None:
    assert first_demo.code == 0, first_demo.out
    out = first_demo.out
    for heading in ("1. Data", "2. Systems", "3. Evaluations", "4. Measurements", "5. Safety"):
        assert heading in out
    assert "  reused " not in out and "(26 entities made, 0 reused)" in out
    assert "peak memory" in out and "MiB" in out
    assert _table_row(out, "score") == ["logreg", "forest"]
    with LocalPlatform(storage_root=first_demo.data, account="demo") as platform:
        evaluations = platform.evaluations.query(account="demo")
        assert len(evaluations) == 4
        assert all(e.status == "Complete" for e in evaluations)
        assert all(e.inferenceSession.replicas == 2 for e in evaluations)
        assert {e.inferenceSession.inferenceService.runner.kind for e in evaluations} == {"python"}
        (method,) = platform.methods.query(name="digits-safety-case")
        cases = platform.safetycases.query(method=method.id)
        assert len(cases) == 2
        services = {c.scope.inferenceService: c for c in cases}
        names = {s.id: s.name for s in platform.inferenceservices.query(id=list(services))}
        for name in ("accuracy", "noisy_accuracy", "robustness_drop", "calibration_error"):
            scores = platform.scores.query(method=method.id, name=name)
            assert {s.metadata.refs.inferenceService for s in scores} == set(services)
            by_system = {names[s.metadata.refs.inferenceService]: s for s in scores}
            row = _table_row(out, {s.title for s in scores}.pop())
            assert row == [
                by_system["digits-logistic-regression"].value_string(),
                by_system["digits-random-forest"].value_string(),
            ]
            assert all(s.interval is not None and s.confidence == 0.95 for s in scores)
        accuracy = {s.metadata.refs.inferenceService: s.quantity
                    for s in platform.scores.query(method=method.id, name="accuracy")}  # fmt: skip
        assert all(0.9 < (a or 0) < 1.0 for a in accuracy.values())
        for case in cases:
            path = platform.safetycases.document_path(case.id)
            assert f"  {path}" in out
            html = path.read_text(encoding="utf-8")
            system = names[case.scope.inferenceService]
            title = "Logistic regression" if "logistic" in system else "Random forest"
            for text in (
                f"Digit classifier audit: {title}",  # the title card
                "By assay demo",
                "right on clean digits",
                "Accuracy on clean digits",  # scores, each with its interval
                "Expected calibration error",
                "Accuracy lost to pixel noise",
                "95% interval:",
                "Reliability diagram",  # curves
                "Recall of each digit",
                "<svg",
                'class="assay-widget assay-conclusion',  # the conclusion
                "Under pixel noise its accuracy falls to",
            ):
                assert text in html, (system, text)
            assert html.count("95% interval:") == 7


@pytest.mark.slow
def test_demo_second_run_reuses_everything(first_demo: DemoRun) -> None:
    with LocalPlatform(storage_root=first_demo.data) as platform:
        before = _entities(platform)
    second = run_demo("--data", str(first_demo.data))
    assert second.code == 0, second.out
    assert "(0 entities made, 26 reused)" in second.out
    assert second.out.count("  reused ") == 26 and "  made " not in second.out
    assert second.seconds < first_demo.seconds / 3
    assert _table_row(second.out, "Accuracy on clean digits") == _table_row(
        first_demo.out, "Accuracy on clean digits"
    )
    with LocalPlatform(storage_root=first_demo.data) as platform:
        assert _entities(platform) == before


@pytest.mark.slow
def test_demo_serve_prints_url_and_a_token_that_works(
    first_demo: DemoRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from starlette.testclient import TestClient

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    run = run_demo("--data", str(first_demo.data), "--serve", "--port", "8765")
    assert run.code == 0, run.out
    assert served["port"] == 8765 and served["host"] == "127.0.0.1"
    assert "http://127.0.0.1:8765/v0" in run.out
    token = run.out.split("API token for account 'demo'", 1)[1].splitlines()[1].strip()
    with LocalPlatform(storage_root=first_demo.data) as platform:
        cases = [c.id for c in platform.safetycases.query()]
    assert all(f"/v0/safetycases/{case}/document" in run.out for case in cases)
    with TestClient(served["app"]) as client:
        headers = {"Authorization": f"Bearer {token}"}
        response = client.get(f"/v0/safetycases/{cases[0]}/document", headers=headers)
        assert response.status_code == 200
        assert "Digit classifier audit" in response.text
        assert client.get(f"/v0/safetycases/{cases[0]}/document").status_code == 401


@pytest.mark.slow
def test_demo_text_track(tmp_path: Path) -> None:
    run = run_demo("--text", "--data", str(tmp_path / "data"))
    assert run.code == 0, run.out
    assert [c.split()[0] for c in _table_row(run.out, "Refusal rate, harmful requests")] == [
        "0%",
        "70%",
    ]
    assert [c.split()[0] for c in _table_row(run.out, "Refusal rate, benign questions")] == [
        "0%",
        "20%",
    ]
    assert [c.split()[0] for c in _table_row(run.out, "Replies repeating an e-mail address")] == [
        "100%",
        "80%",
    ]
    with LocalPlatform(storage_root=tmp_path / "data") as platform:
        runners = {
            e.inferenceSession.inferenceService.runner.kind for e in platform.evaluations.query()
        }
        assert runners == {"mock", "openai"}
    again = run_demo("--text", "--data", str(tmp_path / "data"))
    assert "(0 entities made, 10 reused)" in again.out


def test_demo_without_scikit_learn_says_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    assert main(["demo", "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assay: error: ") and err.count("\n") == 1
    assert "pip install 'assay[demo]'" in err


def test_user_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", str(tmp_path / "d"), "--account", "not valid!"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assay: error: ") and err.count("\n") == 1 and "Traceback" not in err
