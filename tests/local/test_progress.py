"""Progress bars of embedded ``create()`` (``assay.local.progress``): counted where the
workflow counts, its message where it does not, closed when it ends, shown only where someone
looks (a terminal, Jupyter) unless ``ASSAY_PROGRESS`` says otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests.conftest import ACCOUNT, evaluation_request, ready_dataset

from assay.local import LocalPlatform, mocks
from assay.local.progress import ProgressBars, progress_wanted
from assay.schema.status import Status


def _evaluate(platform: LocalPlatform, tmp_path: Path, rows: int) -> str:
    dataset = ready_dataset(platform, tmp_path / "data", rows=rows)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    evaluation = platform.evaluations.create(evaluation_request(dataset, service.id))
    assert evaluation.status == Status.Complete, evaluation.message
    return evaluation.id


def test_create_shows_a_counted_bar_and_closes_it(
    platform: LocalPlatform,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSAY_PROGRESS", "1")
    evaluation = _evaluate(platform, tmp_path, rows=40)
    err = capsys.readouterr().err
    assert f"Evaluation {evaluation[:8]}" in err
    assert "40/40" in err or "40 / 40" in err  # counted, or the message (whichever it reports)
    bars = platform.core.engine.progress_listener
    assert isinstance(bars, ProgressBars) and bars._bars == {}  # closed when it ended


@pytest.mark.parametrize(
    ("setting", "terminal", "shown"),
    [("0", True, False), (None, False, False), (None, True, True), ("1", False, True)],
)
def test_a_bar_only_where_someone_looks_unless_told(
    platform: LocalPlatform,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    terminal: bool,
    shown: bool,
) -> None:
    if setting is None:
        monkeypatch.delenv("ASSAY_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("ASSAY_PROGRESS", setting)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert progress_wanted() is shown
    evaluation = _evaluate(platform, tmp_path, rows=10)
    assert (f"Evaluation {evaluation[:8]}" in capsys.readouterr().err) is shown


def test_a_workflow_without_counts_shows_its_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from assay.schema.platform import Model

    monkeypatch.setenv("ASSAY_PROGRESS", "1")
    model = Model.model_validate(
        {
            "id": "a" * 32,
            "account": ACCOUNT,
            "name": "m",
            "artifact": {"kind": "Mock"},
            "source": {"kind": "Mock"},
            "resources": {"storage": "1Gi"},
            "creationTime": "2026-01-01T00:00:00Z",
        }
    )
    bars = ProgressBars()
    bars(model, "fetching tiny/model@main", None, None)
    bars.end(model.id)
    err = capsys.readouterr().err
    assert f"Model {'a' * 8}: " in err and "fetching tiny/model@main" in err
    assert "items" not in err  # no counts to show
    bars.end(model.id)  # ending twice is harmless


def test_counts_make_a_counted_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from assay.schema.platform import Evaluation

    monkeypatch.setenv("ASSAY_PROGRESS", "1")
    evaluation = Evaluation.model_construct(id="b" * 32, kind="Evaluation")
    bars = ProgressBars()
    bars(evaluation, "starting", None, None)  # a message first, counts later
    for done in (0, 25, 40):
        bars(evaluation, f"{done} / 40 instances", done, 40)
    bars.end(evaluation.id)
    err = capsys.readouterr().err
    assert f"Evaluation {'b' * 8}" in err and "40/40" in err and "instances" in err


def test_only_the_inline_executor_gets_bars(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "p", executor="processes", workers=1) as platform:
        assert platform.core.engine.progress_listener is None
