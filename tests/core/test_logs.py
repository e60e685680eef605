"""An entity's whole log (``assay.core.logs``, ``assay.engine.logs``): workflow lines and
plain-text output merged in time order, ``limit`` and ``since``, and ``logs(id)`` of
evaluations and sessions through LocalPlatform."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conftest import ACCOUNT, evaluation_request, ready_dataset

from assay import errors
from assay.engine import logs as engine_logs
from assay.engine.logs import (
    LogLine,
    WorkflowLog,
    format_log,
    merge_logs,
    parse_since,
    read_text_log,
    select_lines,
    workflow_log_lines,
)
from assay.evaluation.workflow import SESSION_LABEL
from assay.local import LocalPlatform, mocks

T0 = datetime(2020, 1, 2, 12, 0, 0, tzinfo=UTC)
ENTITY = "0123456789abcdef0123456789abcdef"


def _line(seconds: float, message: str, **labels: str) -> LogLine:
    return LogLine(T0 + timedelta(seconds=seconds), message, {"stream": "workflow", **labels})


def test_a_line_formats_and_round_trips() -> None:
    line = _line(0.25, "chose 4 workers")
    assert line.format() == "2020-01-02T12:00:00Z [workflow] chose 4 workers"
    replica = LogLine(T0, "listening", {"stream": "replica", "replica": "1"})
    assert replica.format() == "2020-01-02T12:00:00Z [replica 1] listening"
    wire = line.to_wire()
    assert wire == {
        "timestamp": "2020-01-02T12:00:00.250000Z",
        "message": "chose 4 workers",
        "labels": {"stream": "workflow"},
    }
    assert LogLine.from_wire(wire) == line
    assert format_log([line, replica]) == line.format() + "\n" + replica.format() + "\n"
    assert format_log([]) == ""


def test_text_lines_keep_file_order_after_the_workflow_lines_before_them(
    platform: LocalPlatform,
) -> None:
    storage = platform.core.storage
    log = WorkflowLog(storage, ENTITY)
    log.write("replica 0 starting", replica="0")
    log.write("replica 0 ready")
    written = workflow_log_lines(storage, ENTITY)
    assert [(ln.message, ln.labels) for ln in written] == [
        ("replica 0 starting", {"stream": "workflow", "replica": "0"}),
        ("replica 0 ready", {"stream": "workflow"}),
    ]
    assert written[0].timestamp <= written[1].timestamp <= datetime.now(UTC)
    # the same lines at known times, a second apart, and the file written in between
    workflow = [_line(0, "replica 0 starting"), _line(2, "replica 0 ready")]
    path = ".assay/logs/replica-0.log"
    storage.put_bytes(ENTITY, path, b"loading\nlistening on 8000\r\nno newline at the end")
    local = storage.local_path(ENTITY, path)
    assert local is not None
    between = (T0 + timedelta(seconds=1)).timestamp()
    os.utime(local, (between, between))
    text = read_text_log(storage, ENTITY, path, labels={"stream": "replica"}, written=T0)
    assert [ln.message for ln in text] == ["loading", "listening on 8000", "no newline at the end"]
    assert {ln.timestamp for ln in text} == {T0 + timedelta(seconds=1)}
    merged = merge_logs(workflow, text)
    assert [ln.message for ln in merged] == [
        "replica 0 starting",
        "loading",
        "listening on 8000",
        "no newline at the end",
        "replica 0 ready",
    ]
    os.utime(local, (T0.timestamp(), T0.timestamp()))  # the same time: after the workflow's
    assert [
        ln.message
        for ln in merge_logs(workflow, read_text_log(storage, ENTITY, path, labels={}, written=T0))
    ][:2] == ["replica 0 starting", "loading"]
    assert read_text_log(storage, ENTITY, "missing.log", labels={}, written=T0) == []


def test_a_long_text_log_is_read_from_its_end(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_logs, "MAX_TEXT_BYTES", 20)
    storage = platform.core.storage
    storage.put_bytes(ENTITY, "out.log", b"".join(b"line %02d\n" % d for d in range(10)))
    lines = read_text_log(storage, ENTITY, "out.log", labels={}, written=T0)
    assert [ln.message for ln in lines] == [
        "[... 8 earlier lines of out.log are not shown]",
        "line 08",
        "line 09",
    ]


def test_limit_and_since() -> None:
    lines = [_line(i * 60, f"line {i}") for i in range(5)]
    assert select_lines(lines) == lines
    assert [ln.message for ln in select_lines(lines, limit=2)] == ["line 3", "line 4"]
    assert [ln.message for ln in select_lines(lines, since=T0 + timedelta(minutes=3))] == [
        "line 3",
        "line 4",
    ]
    since = "2020-01-02T12:02:00Z"
    assert [ln.message for ln in select_lines(lines, since=since, limit=1)] == ["line 4"]
    assert select_lines(lines, since="2020-01-02T12:02:00") == lines[2:]  # UTC when unsaid
    assert parse_since("90s", T0) == T0 - timedelta(seconds=90)
    assert parse_since("2h", T0) == T0 - timedelta(hours=2)
    assert parse_since("1d", T0) == T0 - timedelta(days=1)
    assert select_lines(lines, since="1d") == []  # every line is older than a day
    with pytest.raises(errors.ValidationError, match="Evaluation e1: since 'soon'") as info:
        select_lines(lines, since="soon", what="Evaluation e1")
    assert info.value.field == "since"
    with pytest.raises(errors.ValidationError, match="limit 0") as info:
        select_lines(lines, limit=0)
    assert info.value.field == "limit"


def test_evaluation_log_has_its_own_sessions_lines(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=4)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    evaluation = platform.evaluations.create(evaluation_request(dataset, service.id)).id
    storage = platform.core.storage
    log = WorkflowLog(storage, evaluation)
    log.write("concurrency 8", setting="concurrency")
    log.write("retried 2 instances after timeouts")
    (session,) = platform.inferencesessions.query(labels={SESSION_LABEL: evaluation})
    WorkflowLog(storage, session.id).write("replica 0 exited with status 0")

    lines = platform.evaluations.log_lines(evaluation)
    ours = [
        ln for ln in lines if ln.message in ("concurrency 8", "retried 2 instances after timeouts")
    ]
    assert [ln.labels for ln in ours] == [
        {"stream": "workflow", "setting": "concurrency"},
        {"stream": "workflow"},
    ]
    (exited,) = [ln for ln in lines if ln.message == "replica 0 exited with status 0"]
    assert exited.labels == {"stream": "workflow", "session": session.id}
    assert [ln.timestamp for ln in lines] == sorted(ln.timestamp for ln in lines)

    text = platform.evaluations.logs(evaluation)
    assert text == format_log(lines)
    assert "[workflow] retried 2 instances after timeouts\n" in text
    assert platform.evaluations.logs(evaluation, limit=1) == format_log(lines[-1:])
    assert platform.evaluations.logs(evaluation, since="2999-01-01T00:00:00Z") == ""
    # the session's own log has its line, without the session label
    (own,) = [
        ln
        for ln in platform.inferencesessions.log_lines(session.id)
        if ln.message == "replica 0 exited with status 0"
    ]
    assert own.labels == {"stream": "workflow"}
    with pytest.raises(errors.NotFoundError):
        platform.evaluations.logs("no-such-evaluation")
    with pytest.raises(errors.ValidationError, match=f"Evaluation {evaluation}: since"):
        platform.evaluations.logs(evaluation, since="yesterday")
