"""The durable inference log: an inference is answered only once its record is durable (group
commit: one fsync for the records of every caller that arrived meanwhile), the records carry
``seq``, a sequence without gaps across restarts, and a SIGKILL loses no answered record and
no refused row."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline, _log_journal
from assay.pipelines._records import Records, from_json, to_json
from assay.pipelines.log import InferenceLog
from assay.pipelines.runner import log_directory

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TIME = pa.timestamp("us", tz="UTC")
REPO = Path(__file__).resolve().parents[2]


def batch(values: range | list[int]) -> pa.Table:
    return pa.table(
        {
            "time": pa.array([T0 + dt.timedelta(seconds=v) for v in values], TIME),
            "in.x": pa.array(list(values), pa.int64()),
        }
    )


def failure(value: int) -> pa.Table:
    return batch([value]).append_column("error", pa.array(["refused"]))


def stored(folder: Path) -> list[tuple[int, int]]:
    """``(seq, in.x)`` of every record in the segments of ``folder``, by ``seq``."""
    tables = [pq.read_table(p, columns=["seq", "in.x"]) for p in folder.glob("segment-*.parquet")]
    if not tables:
        return []
    table = pa.concat_tables(tables)
    return sorted(
        zip(table.column("seq").to_pylist(), table.column("in.x").to_pylist(), strict=True)
    )


# -- the sequence ----------------------------------------------------------------------------


_KILLED_WRITER = textwrap.dedent(
    """
    import datetime as dt, os, sys, pyarrow as pa
    from pathlib import Path
    from assay.pipelines.log import InferenceLog

    T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    log = InferenceLog(Path(sys.argv[1]), flush_rows=7)
    i = int(sys.argv[2])
    while True:  # durable appends until killed; each one reported once it returned
        log.append(pa.table({
            "time": pa.array([T0 + dt.timedelta(seconds=i)], pa.timestamp("us", tz="UTC")),
            "in.x": pa.array([i], pa.int64()),
        }))
        os.write(1, b"%d\\n" % i)
        i += 1
    """
)


def test_seq_is_monotonic_and_gap_free_across_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    with InferenceLog(folder, flush_rows=4) as log:
        log.append(batch(range(0, 3)))
        log.append_failures(failure(3))
        log.append(batch(range(4, 10)))
        counters = log.counters()
        assert counters["written"] == 9 and counters["failed"] == 1 and counters["last_seq"] == 9
    with InferenceLog(folder) as log:  # a clean restart goes on from the last durable record
        assert log.counters()["last_seq"] == 9
        log.append(batch(range(10, 12)))
        log.append_failures(failure(12))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    child = subprocess.Popen(  # and so does a restart after a SIGKILL
        [sys.executable, "-c", _KILLED_WRITER, str(folder), "13"], stdout=subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    answered = [int(child.stdout.readline()) for _ in range(30)]
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    answered += [int(line) for line in rest.splitlines()]
    with InferenceLog(folder) as log:
        log.append(batch([10_000]))
        log.flush()
        counters = log.counters()
    records = stored(folder / "log") + stored(folder / "failures")
    seqs = sorted(s for s, _ in records)
    assert seqs == list(range(len(seqs)))  # no gap, nothing twice
    assert counters["written"] + counters["failed"] == counters["last_seq"] + 1 == len(seqs)
    values = [x for _, x in sorted(records)]
    assert values == sorted(values)  # numbered in the order they were appended
    assert set(answered) <= set(values) and values[-1] == 10_000


def test_a_caller_who_does_not_wait_is_numbered_too(tmp_path: Path) -> None:
    with InferenceLog(tmp_path / "p", durable=False) as log:
        for i in range(20):
            log.append(batch([i]))
        log.flush()
        assert [s for s, _ in stored(tmp_path / "p" / "log")] == list(range(20))
        assert log.counters()["last_seq"] == 19


def test_the_seq_column_is_the_log_s_own(tmp_path: Path) -> None:
    with (
        InferenceLog(tmp_path / "p") as log,
        pytest.raises(errors.ValidationError, match="'seq' is the log's own"),
    ):
        log.append(batch([1]).append_column("seq", pa.array([5])))


# -- group commit ----------------------------------------------------------------------------


def test_group_commit_makes_concurrent_callers_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fsync
    fsyncs: list[float] = []

    def slow_fsync(fd: int) -> None:  # a disk whose flush takes 2 ms
        fsyncs.append(time.monotonic())
        time.sleep(0.002)
        real(fd)

    callers, each = 8, 25
    with InferenceLog(tmp_path / "p", durable="fsync", flush_rows=10**6, flush_seconds=3600) as log:
        log.append(batch([0]))  # the journal exists: only commits fsync from here
        monkeypatch.setattr(os, "fsync", slow_fsync)
        returned: list[tuple[int, int]] = []
        lock = threading.Lock()

        def call(k: int) -> None:
            for i in range(each):
                value = 1 + k * each + i
                log.append(batch([value]))  # durable: returns after the fsync covering it
                with lock:
                    returned.append((value, len(fsyncs)))

        threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        commits = len(fsyncs)
        monkeypatch.setattr(os, "fsync", real)
        assert log.counters()["journaled"] == 1 + callers * each
    records = callers * each
    assert 0 < commits < records / 2, (commits, records)  # several callers per fsync
    assert all(seen >= 1 for _, seen in returned)  # no caller returned before an fsync


def test_an_answer_waits_for_the_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order of events: the records written, then fsynced, then the caller released."""
    events: list[str] = []
    real_commit, real_fsync = _log_journal.Journal.commit, os.fsync

    def commit(self: Any, entries: Any) -> Any:
        events.append(f"write {sum(e.rows for e in entries)}")
        return real_commit(self, entries)

    def fsync(fd: int) -> None:
        time.sleep(0.01)
        real_fsync(fd)
        events.append("fsync")

    with InferenceLog(tmp_path / "p", durable="fsync", flush_rows=10**6, flush_seconds=3600) as log:
        log.append(batch([0]))
        monkeypatch.setattr(_log_journal.Journal, "commit", commit)
        monkeypatch.setattr(os, "fsync", fsync)
        log.append(batch([1, 2]))
        events.append("answered")
        monkeypatch.undo()
    assert events[:3] == ["write 2", "fsync", "answered"]


def test_by_default_an_answer_waits_for_the_write_and_the_fsync_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default: the records written (on the caller's thread) before the answer — what a
    dead process cannot lose — and fsynced by the commit thread right after."""
    events: list[str] = []
    threads: list[str] = []
    real_commit, real_fsync = _log_journal.Journal.commit, os.fsync
    release = threading.Event()

    def commit(self: Any, entries: Any) -> Any:
        events.append(f"write {sum(e.rows for e in entries)}")
        threads.append(threading.current_thread().name)
        return real_commit(self, entries)

    def fsync(fd: int) -> None:
        release.wait(10)  # a slow disk: the answer does not wait for it
        real_fsync(fd)
        events.append("fsync")

    with InferenceLog(tmp_path / "p", flush_rows=10**6, flush_seconds=3600) as log:
        log.append(batch([0]))
        deadline = time.monotonic() + 10
        while log.counters()["unsynced"] and time.monotonic() < deadline:
            time.sleep(0.005)  # the first record fsynced: the next fsync is the second's
        monkeypatch.setattr(_log_journal.Journal, "commit", commit)
        monkeypatch.setattr(os, "fsync", fsync)
        log.append(batch([1, 2]))
        events.append("answered")
        assert log.counters()["unsynced"] == 2
        release.set()
        deadline = time.monotonic() + 10
        while "fsync" not in events and time.monotonic() < deadline:
            time.sleep(0.005)
        monkeypatch.undo()
        assert log.counters()["unsynced"] == 0
    assert events[:3] == ["write 2", "answered", "fsync"]
    assert threads == [threading.current_thread().name]  # written by the caller itself


def test_written_records_of_concurrent_callers_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fsync
    fsyncs: list[float] = []

    def slow_fsync(fd: int) -> None:  # a disk whose flush takes 2 ms
        fsyncs.append(time.monotonic())
        time.sleep(0.002)
        real(fd)

    callers, each = 8, 25
    with InferenceLog(tmp_path / "p", flush_rows=10**6, flush_seconds=3600) as log:
        log.append(batch([0]))
        monkeypatch.setattr(os, "fsync", slow_fsync)

        def call(k: int) -> None:
            for i in range(each):
                log.append(batch([1 + k * each + i]))

        threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.flush()  # fsyncs what is left
        monkeypatch.setattr(os, "fsync", real)
        assert log.counters()["unsynced"] == 0
    records = callers * each
    assert 0 < len(fsyncs) < records / 2, (len(fsyncs), records)
    found = stored(tmp_path / "p" / "log")
    assert [seq for seq, _ in found] == list(range(records + 1))  # no gap
    assert sorted(x for _, x in found) == list(range(records + 1))  # none lost


def test_a_durability_that_is_not_one_of_the_three_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError, match=r"durable must be True .* got 'always'"):
        InferenceLog(tmp_path / "p", durable="always")  # type: ignore[arg-type]


# -- pipelines -------------------------------------------------------------------------------


def _refusing_pipeline(platform: LocalPlatform, **kwargs: Any) -> Pipeline:
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, name="writer", kwargs={"seed": 1}
    )
    pipeline = Pipeline(platform, "durable", account=ACCOUNT, **kwargs)
    pipeline.add_model_step(service)
    pipeline.set_input_schema(
        pa.schema([pa.field("id", pa.int64()), pa.field("text", pa.string(), nullable=False)])
    )
    pipeline.deploy()
    return pipeline


def test_a_refused_row_is_durable_before_the_caller_s_exception(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _refusing_pipeline(platform)
    pipeline.infer({"id": 1, "text": "fine"})
    folder = log_directory(platform.core, ACCOUNT, "durable")
    events: list[str] = []
    real_commit, real_fsync = _log_journal.Journal.commit, os.fsync

    def commit(self: Any, entries: Any) -> Any:
        events.append("write " + ",".join(("records", "failures")[e.kind] for e in entries))
        return real_commit(self, entries)

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append("fsync")

    monkeypatch.setattr(_log_journal.Journal, "commit", commit)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(errors.ValidationError, match="does not fit the pipeline's input schema"):
        try:
            pipeline.infer({"id": 2, "text": None})
        finally:
            events.append("raised")
            durable = _durable_failures(folder)  # on disk at that moment, without flushing
    monkeypatch.undo()
    assert events.index("write failures") < events.index("raised")  # written, then raised
    assert durable.column("in.id").to_pylist() == [2]
    assert durable.column("metadata.error_step_kind").to_pylist() == ["input"]
    assert "text" in durable.column("error")[0].as_py()  # why: the null in a required field
    counters = pipeline._running().log.counters()
    assert counters["written"] == 1 and counters["failed"] == 1 and counters["last_seq"] == 1


def _durable_failures(folder: Path) -> pa.Table:
    """The failure records on disk in ``folder`` (journal files and segments), read without
    the log."""
    journal = folder / "journal"
    tables = [pq.read_table(p) for p in (folder / "failures").glob("segment-*.parquet")]
    for path in [*_log_journal.sealed_files(journal), journal / _log_journal.CURRENT]:
        _, entries, _ = _log_journal.read_entries(path)
        for entry in entries:
            if entry.kind != 1:
                continue
            if entry.form == _log_journal.JSON:
                tables.append(from_json(entry.payload).table())
            else:
                tables.append(pa.ipc.open_stream(pa.py_buffer(entry.payload)).read_all())
    return pa.concat_tables(tables, promote_options="permissive")


def test_records_built_by_columns_are_those_built_row_by_row() -> None:
    """The column-wise records (and the dicts a caller gets) equal flattening each row and
    converting through Arrow, whatever the rows' shapes."""
    from assay.pipelines.execution import flatten, to_table

    now = dt.datetime.now(dt.UTC)
    cases: list[tuple[list[Any], list[Any]]] = [
        ([{"text": "a"}, {"text": "b"}], [[{"t": "x"}], [{"t": "y"}]]),
        ([{"a": {"b": 1}}, {"a": {"c": 2}}], [[{"t": 1}, {"u": 2}], [{"t": 1.5}]]),
        ([{"x": 1}, {"x": "1"}], [[{"v": [1, 2]}], [{"v": []}]]),
        ([{"x": {}}, {"y": None}], [[{"o": {"p": {"q": True}}}], [{"o": 3}]]),
        ([{"k": 2**70}], [[{"1.text": "clash"}, {"text": "second"}]]),
    ]
    for inputs, outputs in cases:
        extras = [{"time": now, "metadata.pipeline": "p", "out_c.x": i} for i in range(len(inputs))]
        rows = []
        for row, outs, extra in zip(inputs, outputs, extras, strict=True):
            record: dict[str, Any] = {"time": now}
            flatten("in", row, record)
            for i, output in enumerate(outs):
                flatten("out" if i == 0 else f"out.{i}", output, record)
            record.update({k: v for k, v in extra.items() if k != "time"})
            rows.append(record)
        expected = to_table(rows)
        records = Records.from_parts(inputs, outputs, extras)
        text = to_json(records)  # how a commit of a few records writes them to the journal
        assert records.table().equals(expected), (inputs, outputs)
        assert records.rows() == expected.to_pylist(), (inputs, outputs)
        if text is not None:
            assert from_json(text).table().equals(expected), (inputs, outputs)
    tuple_value = Records.from_parts([{"x": (1, 2)}], [[{"y": 1}]], [{"time": now}])
    assert to_json(tuple_value) is None  # JSON would give a list back: a table is written


# -- the crash test --------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import pyarrow as pa
    from assay import errors
    from assay.local import LocalPlatform, mocks
    from assay.pipelines import Pipeline, _log_journal, _log_segments

    root, mode, i = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    platform = LocalPlatform(root, account="crash")
    marker = root / "service-id"
    if marker.exists():
        service = platform.inferenceservices.get(marker.read_text())
    else:
        service = platform.inferenceservices.create_mock(
            mocks.TextCompletion, account="crash", name="writer", kwargs={"seed": 1}
        )
        marker.write_text(service.id)
    pipeline = Pipeline(platform, "crash")
    if not pipeline.versions():
        pipeline.add_model_step(service)
        pipeline.set_input_schema(pa.schema(
            [pa.field("id", pa.int64()), pa.field("text", pa.string(), nullable=False)]
        ))
    pipeline.deploy()
    if mode == "broken":  # answer before the records are even written, on a slow disk
        def queued(self, parts):  # handed to the commit thread instead of written
            for kind, data in parts:
                self.put(kind, data, wait=False)
        _log_segments.SegmentWriter.write = queued
        commit = _log_journal.Journal.commit
        def slow(self, entries):
            time.sleep(0.05)
            return commit(self, entries)
        _log_journal.Journal.commit = slow
    os.write(1, b"ready\\n")
    while True:  # steady single-row load; every fourth row refused by the input schema
        row = {"id": i, "text": None if i % 4 == 3 else f"prompt {i}"}
        try:
            pipeline.infer(row)
            os.write(1, b"a %d\\n" % i)
        except errors.ValidationError:
            os.write(1, b"r %d\\n" % i)
        i += 1
    """
)


def crash_round(root: Path, mode: str, first: int, answers: int = 150) -> dict[str, int]:
    """One round: a child under steady single-row load, SIGKILLed once it has reported
    ``answers`` answers; what it reported against what the log holds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), mode, str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    try:
        ready = child.stdout.readline()
        if ready != b"ready\n":
            pytest.fail(f"the child did not start: {child.communicate(timeout=60)[1][-3000:]!r}")
        lines = [child.stdout.readline() for _ in range(answers)]
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
    lines += rest.splitlines(keepends=True)
    answered = {int(line[2:]) for line in lines if line.startswith(b"a ") and line.endswith(b"\n")}
    refused = {int(line[2:]) for line in lines if line.startswith(b"r ") and line.endswith(b"\n")}
    folder = root / ".assay" / "pipelines" / "crash" / "crash"
    with InferenceLog(folder) as log:

        def column(name: str, failures: bool) -> list[Any]:
            table = log.read(limit=None, dataset=["time", "seq", "in"], failures=failures)[0]
            return table.column(name).to_pylist() if name in table.column_names else []

        logged, failed = set(column("in.id", False)), set(column("in.id", True))
        seqs = sorted(column("seq", False) + column("seq", True))
        counters = log.counters()
    return {
        "answered": len(answered),
        "refused": len(refused),
        "missing answers": len(answered - logged),
        "missing refusals": len(refused - failed),
        "seq gaps": int(seqs != list(range(len(seqs)))),
        "counted": counters["written"] + counters["failed"] - (counters["last_seq"] + 1),
    }


@pytest.mark.slow
def test_sigkill_loses_no_answered_record_and_no_refused_row(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    for round_ in range(3):  # the same log each time: the sequence goes on across crashes
        found = crash_round(root, "durable", round_ * 1_000_000)
        assert found["answered"] > 0 and found["refused"] > 0, found
        assert found["missing answers"] == found["missing refusals"] == 0, found
        assert found["seq gaps"] == found["counted"] == 0, found
    # the test sees a loss when there is one: answering before writing loses the last answers
    broken = crash_round(tmp_path / "broken", "broken", 0)
    assert broken["missing answers"] + broken["missing refusals"] > 0, broken
