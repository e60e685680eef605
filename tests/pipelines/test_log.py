"""The inference log: segments, queries, exports, crashes, and logs -> Dataset -> Measurement."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.analysis.builtin import drift, text
from assay.local import LocalPlatform
from assay.pipelines import _log_segments
from assay.pipelines.log import InferenceLog, parse_size
from assay.schema.status import Status

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TIME = pa.timestamp("us", tz="UTC")


def records(start: int, n: int, *, shadow: bool = False, anomalies: bool = True) -> pa.Table:
    """``n`` flattened records, one second apart from ``T0 + start`` s; every third invalid."""
    rows = range(start, start + n)
    columns: dict[str, pa.Array] = {
        "time": pa.array([T0 + dt.timedelta(seconds=i) for i in rows], TIME),
        "in.text": pa.array([f"prompt {i}" for i in rows]),
        "in.x": pa.array([float(i) for i in rows]),
        "out.text": pa.array([f"answer {i}" for i in rows]),
        "metadata.model": pa.array(["m1"] * n),
    }
    if anomalies:
        columns["anomaly.count"] = pa.array([int(i % 3 == 0) for i in rows], pa.int64())
        columns["anomaly.too_long"] = pa.array([i % 3 == 0 for i in rows])
    if shadow:
        columns["out_challenger.text"] = pa.array([f"other {i}" for i in rows])
    return pa.table(columns)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[InferenceLog]:
    with InferenceLog(tmp_path / "pipeline") as log:
        yield log


def seconds(table: pa.Table) -> list[int]:
    return [int((t - T0).total_seconds()) for t in table.column("time").to_pylist()]


def test_read_newest_first_a_window_in_order_and_whether_more_exist(log: InferenceLog) -> None:
    log.append(records(0, 10))
    log.append(records(10, 10))
    table, more = log.read(limit=3)
    assert seconds(table) == [19, 18, 17] and more
    table, more = log.read(limit=None)
    assert seconds(table) == list(range(19, -1, -1)) and not more
    start, end = T0 + dt.timedelta(seconds=5), T0 + dt.timedelta(seconds=15)
    table, more = log.read(limit=4, start_datetime=start, end_datetime=end)
    assert seconds(table) == [5, 6, 7, 8] and more
    table, more = log.read(limit=10, start_datetime=start, end_datetime=end)
    assert seconds(table) == list(range(5, 15)) and not more
    assert log.read(limit=0)[0].num_rows == 0 and log.read(limit=0)[1]
    naive = T0.replace(tzinfo=None) + dt.timedelta(seconds=18)
    assert seconds(log.read(start_datetime=naive)[0]) == [18, 19]
    counters = log.counters()
    assert counters["written"] == 20 and counters["dropped"] == counters["queued"] == 0


def test_valid_and_column_groups(log: InferenceLog) -> None:
    log.append(records(0, 9))
    invalid, _ = log.read(limit=None, valid=False)
    assert sorted(seconds(invalid)) == [0, 3, 6]
    valid, _ = log.read(limit=None, valid=True)
    assert len(valid) == 6 and set(valid.column("anomaly.count").to_pylist()) == {0}
    table, _ = log.read(dataset=["time", "in"])
    assert table.schema.names == ["time", "in.text", "in.x"]
    table, _ = log.read(dataset="*", dataset_exclude=["metadata", "anomaly", "in.x"])
    assert table.schema.names == ["time", "in.text", "out.text"]
    table, _ = log.read(dataset=["out"], limit=2)  # sorted by time without returning it
    assert table.schema.names == ["out.text"] and table.column(0).to_pylist() == [
        "answer 8",
        "answer 7",
    ]
    with pytest.raises(errors.ValidationError, match="selects no column; the groups are anomaly"):
        log.read(dataset=["outputs"])


def test_segments_with_different_schemas_read_as_one(log: InferenceLog) -> None:
    log.append(records(0, 3, anomalies=False))
    log.append(records(3, 3, shadow=True))
    log.flush()
    segments = sorted((log.directory / "log").glob("segment-*.parquet"))
    assert len(segments) == 2  # a change of schema starts a new segment
    table, _ = log.read(limit=None, start_datetime=T0)
    assert table.column("out_challenger.text").to_pylist() == [None] * 3 + [
        f"other {i}" for i in range(3, 6)
    ]
    assert table.column("anomaly.count").null_count == 3
    # records logged before validations existed count as valid
    assert sorted(seconds(log.read(valid=True)[0])) == [0, 1, 2, 4, 5]


def test_failures_have_their_own_log(log: InferenceLog) -> None:
    failed = records(0, 2).append_column("error", pa.array(["step 0 (model): timeout"] * 2))
    log.append_failures(failed)
    log.append(records(2, 1))
    table, more = log.read(failures=True)
    assert table.column("error").to_pylist() == ["step 0 (model): timeout"] * 2 and not more
    assert "error" not in log.read()[0].schema.names
    assert log.counters()["failed"] == 2 and log.counters()["written"] == 1
    with pytest.raises(errors.ValidationError, match="string column 'error'"):
        log.append_failures(records(0, 1))


def test_bad_records_are_refused(log: InferenceLog) -> None:
    with pytest.raises(errors.ValidationError, match="'time' is missing"):
        log.append(pa.table({"in.x": [1]}))
    with pytest.raises(errors.ValidationError, match="'time' is string"):
        log.append(pa.table({"time": ["now"]}))
    with pytest.raises(errors.ValidationError, match="'score' is not a log column"):
        log.append(records(0, 1).append_column("score", pa.array([1])))
    with pytest.raises(errors.ValidationError, match=r"pyarrow\.Table"):
        log.append({"time": T0})
    with pytest.raises(errors.ValidationError, match="flush_rows must be at least 1"):
        InferenceLog(log.directory, flush_rows=0)
    # another unit of time is converted
    log.append(records(0, 1).set_column(0, "time", pa.array([T0], pa.timestamp("ms", tz="UTC"))))
    assert log.read()[0].schema.field("time").type == TIME


def test_flushes_by_rows_and_by_time(tmp_path: Path) -> None:
    with InferenceLog(tmp_path / "rows", flush_rows=5, flush_seconds=3600) as log:
        log.append(records(0, 4))
        log.append(records(4, 1))  # five pending: written without waiting for the time
        wait_for(lambda: log.counters()["written"] == 5)
    with InferenceLog(tmp_path / "time", flush_rows=10**6, flush_seconds=0.05) as log:
        log.append(records(0, 1))
        wait_for(lambda: log.counters()["written"] == 1)
        assert log.counters()["queued"] == 0


def test_a_full_queue_drops_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import fcntl

    with (
        caplog.at_level(logging.WARNING, "assay.pipelines.log"),
        InferenceLog(tmp_path / "p", durable=False, flush_seconds=3600, queue_limit=5) as log,
    ):
        # another writer holds the journal: nothing this one accepts becomes durable
        held = os.open(tmp_path / "p" / "journal" / "lock", os.O_RDWR)
        fcntl.flock(held, fcntl.LOCK_EX)
        waited: list[bool] = []
        try:
            assert log.append(records(0, 4))
            assert not log.append(records(4, 2))
            assert not log.append(records(6, 3))
            assert log._writer.counters()["queued"] == 4
            # a caller that waits for durability is never refused: it waits
            waiter = threading.Thread(
                target=lambda: waited.append(log.append(records(9, 1), wait=True))
            )
            waiter.start()
            waiter.join(0.2)
            assert waiter.is_alive() and log._writer.counters()["queued"] == 5
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
            os.close(held)
        waiter.join(30)
        assert waited == [True] and log.counters()["dropped"] == 5
        log.flush()
        assert log.append(records(10, 5))  # room again once written
    assert log.counters() == {
        "written": 10,
        "failed": 0,
        "last_seq": 9,
        "journaled": 0,
        "dropped": 5,
        "segments": 2,
        "queued": 0,
        "unsynced": 0,
    }
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1 and "dropping 2 records" in warnings[0].getMessage()


def test_a_failed_write_keeps_the_records_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = _log_segments.SegmentWriter._write_segment
    calls = []

    def failing_once(self: _log_segments.SegmentWriter, kind: str, table: pa.Table) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("No space left on device")
        real(self, kind, table)

    monkeypatch.setattr(_log_segments.SegmentWriter, "_write_segment", failing_once)
    with (
        caplog.at_level(logging.ERROR, "assay.pipelines.log"),
        InferenceLog(tmp_path / "p", flush_seconds=0.01) as log,
    ):
        log.append(records(0, 3))
        assert log.counters()["written"] == 3  # durable in the journal at once
        wait_for(lambda: log.counters()["segments"] == 1)  # a segment, at the second try
        assert len(log.read(limit=None)[0]) == 3
    assert any("writing a segment failed" in r.getMessage() for r in caplog.records)


def test_close_is_idempotent_and_a_reopened_log_goes_on(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path / "p", flush_seconds=3600)
    log.append(records(0, 3))
    log.close()
    log.close()
    assert log.counters()["written"] == 3  # close wrote what was queued
    with pytest.raises(errors.ConflictError, match="is closed"):
        log.append(records(3, 1))
    assert len(log.read(limit=None)[0]) == 3  # reading a closed log works
    (tmp_path / "p" / "log" / ".segment-000000000009.tmp").write_bytes(b"torn")
    with InferenceLog(tmp_path / "p") as again:
        again.append(records(3, 2))
        assert len(again.read(limit=None)[0]) == 5
    names = sorted(p.name for p in (tmp_path / "p" / "log").iterdir())
    assert names == ["segment-000000000000.parquet", "segment-000000000001.parquet"]


_CHILD = textwrap.dedent(
    """
    import datetime as dt, sys, pyarrow as pa
    from pathlib import Path
    from assay.pipelines.log import InferenceLog

    T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    log = InferenceLog(Path(sys.argv[1]), flush_rows=50, flush_seconds=0.01)
    def batch(i):
        return pa.table({
            "time": pa.array([T0 + dt.timedelta(microseconds=i)] * 10, pa.timestamp("us", tz="UTC")),
            "in.x": pa.array(range(i * 10, i * 10 + 10), pa.int64()),
        })
    for i in range(200):
        log.append(batch(i))
    log.flush()
    print("flushed", flush=True)
    if sys.argv[2] == "exit":
        for i in range(200, 300):
            log.append(batch(i))
        sys.exit(0)  # no close(): the exit handler writes what is queued
    i = 200
    while True:  # keep writing until killed
        log.append(batch(i))
        i += 1
    """
)


def _child(directory: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(directory), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigkill_loses_only_what_was_not_flushed(tmp_path: Path) -> None:
    child = _child(tmp_path / "p", "kill")
    try:
        assert child.stdout is not None and child.stdout.readline() == "flushed\n"
        wait_for(lambda: len(list((tmp_path / "p" / "log").glob("segment-*"))) > 45)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()
    segments = sorted((tmp_path / "p" / "log").glob("segment-*.parquet"))
    values = pa.concat_tables([pq.read_table(p) for p in segments]).column("in.x").to_pylist()
    assert set(range(2000)) <= set(values)  # everything flushed is there, every file whole
    assert sorted(values) == list(range(len(values)))  # and nothing twice, nothing torn
    with InferenceLog(tmp_path / "p") as log:  # a crashed log opens again, with its journal
        again = sorted(log.read(limit=None)[0].column("in.x").to_pylist())
    assert len(again) >= len(values) and again == list(range(len(again)))


def test_a_clean_exit_loses_nothing(tmp_path: Path) -> None:
    child = _child(tmp_path / "p", "exit")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and out == "flushed\n"
    with InferenceLog(tmp_path / "p") as log:
        table, _ = log.read(limit=None)
    assert sorted(table.column("in.x").to_pylist()) == list(range(3000))


def test_export_json_lines_a_file_per_schema(log: InferenceLog, tmp_path: Path) -> None:
    log.append(records(0, 3))
    log.append(records(3, 2, shadow=True))
    result = log.export(tmp_path / "out", file_prefix="p1", dataset_exclude=["metadata"])
    assert result.complete and result.records == 5
    assert [p.name for p in result.files] == ["p1-0000.jsonl", "p1-0001.jsonl"]
    first = [json.loads(line) for line in result.files[0].read_text().splitlines()]
    assert first[0] == {
        "time": "2026-01-01T00:00:00+00:00",
        "in.text": "prompt 0",
        "in.x": 0.0,
        "out.text": "answer 0",
        "anomaly.count": 1,
        "anomaly.too_long": True,
    }
    second = [json.loads(line) for line in result.files[1].read_text().splitlines()]
    assert [r["out_challenger.text"] for r in second] == ["other 3", "other 4"]
    assert result.last_time == T0 + dt.timedelta(seconds=4)
    assert result.bytes == sum(p.stat().st_size for p in result.files)
    assert "exported 5 records" in result.message
    again = log.export(tmp_path / "out", file_prefix="p1")  # never overwrites
    assert [p.name for p in again.files] == ["p1-0002.jsonl", "p1-0003.jsonl"]


def test_export_stops_at_the_size_limit(log: InferenceLog, tmp_path: Path) -> None:
    log.append(records(0, 3000))
    whole = log.export(tmp_path / "whole")
    sizes = [len(line) for line in whole.files[0].read_bytes().splitlines(keepends=True)]
    size = sum(sizes[:100]) + sizes[100] // 2  # 100 lines and half of the next
    limited = log.export(tmp_path / "json", data_size_limit=size)
    assert not limited.complete and limited.records == 100
    assert limited.bytes == sum(sizes[:100])
    assert "stopped at the data_size_limit" in limited.message
    assert len(limited.files[0].read_text().splitlines()) == limited.records
    arrow = log.export(tmp_path / "arrow", arrow=True, data_size_limit="64 KiB")
    assert not arrow.complete and 0 < arrow.records < 3000
    assert sum(p.stat().st_size for p in arrow.files) <= 64 * 1024
    with pa.ipc.open_file(arrow.files[0]) as reader:
        table = reader.read_all()
    assert table.num_rows == arrow.records and table.column("in.x")[0].as_py() == 0.0
    window = log.export(
        tmp_path / "window", arrow=True, start_datetime=T0 + dt.timedelta(seconds=2990)
    )
    assert window.complete and window.records == 10
    assert log.export(tmp_path / "limit", limit=7).records == 7


def test_parse_size() -> None:
    assert parse_size("100 MiB") == 100 * 1024**2
    assert parse_size("1GB") == 10**9
    assert parse_size("1.5 kib") == 1536
    assert parse_size(4096) == 4096
    for bad in ("lots", "5 parsecs", 0, -1, "0 MB"):
        with pytest.raises(errors.ValidationError, match="data_size_limit"):
            parse_size(bad)


def test_logs_become_a_dataset_and_an_evaluation_that_methods_measure(
    log: InferenceLog, platform: LocalPlatform, tmp_path: Path
) -> None:
    log.append(records(0, 40))
    inputs, outputs = log.to_dataset_files(
        tmp_path / "window", T0 + dt.timedelta(seconds=10), T0 + dt.timedelta(seconds=30)
    )
    rows = pq.read_table(inputs)
    assert rows.schema.names == ["_index_", "text", "x"]
    assert rows.column("_index_").to_pylist() == list(range(20))
    assert rows.column("text").to_pylist()[0] == "prompt 10"
    answers = pq.read_table(outputs)
    assert answers.to_pylist()[0] == {
        "_index_": 0,
        "_replication_": "0",
        "responses": [{"_response_index_": 0, "text": "answer 10"}],
    }
    dataset = platform.datasets.create_arrow_dataset(inputs, account=ACCOUNT, name="traffic")
    dataset = platform.datasets.upload_arrow_dataset(dataset, inputs)
    evaluation = platform.evaluations.import_data(outputs)
    assert evaluation.status == Status.Complete
    method = text.METRICS.register(platform, account=ACCOUNT)
    measurement = platform.measurements.create(
        {
            "account": ACCOUNT,
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [
                {"keyword": "evaluation", "entity": evaluation.id},
                {"keyword": "dataset", "entity": dataset.id},
            ],
            "arguments": [{"keyword": "resamples", "value": "50"}],
        }
    )
    assert measurement.status == Status.Complete, measurement.message
    found = {
        r["metric"]: r for r in platform.measurements.open(measurement.id).to_table().to_pylist()
    }
    assert found["mean_words"]["value"] == 2.0 and found["mean_words"]["n"] == 20
    with pytest.raises(errors.ValidationError, match="widen the window"):
        log.to_dataset_files(tmp_path / "none", T0 - dt.timedelta(days=1), T0)


def test_two_windows_of_the_log_compared_for_drift(log: InferenceLog, tmp_path: Path) -> None:
    log.append(records(0, 200))
    shifted = records(200, 200)
    x = shifted.schema.get_field_index("in.x")
    log.append(shifted.set_column(x, "in.x", pa.array([float(i % 50) for i in range(200)])))
    early, _ = log.to_dataset_files(tmp_path / "early", T0, T0 + dt.timedelta(seconds=200))
    late, _ = log.to_dataset_files(tmp_path / "late", T0 + dt.timedelta(seconds=200))
    same = drift.psi({"column": "x"}, baseline=ds.dataset(early), current=ds.dataset(early))
    moved = drift.psi({"column": "x"}, baseline=ds.dataset(early), current=ds.dataset(late))
    assert same.column("value").to_pylist() == [0.0, 0.0]
    psi, alert = moved.column("value").to_pylist()
    assert psi > 0.25 and alert == 1.0
