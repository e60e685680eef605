"""Several writers on one inference log folder: InferenceLog objects in one process, and
processes, appending at once — no segment overwritten, no live write's temporary removed."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from assay.pipelines.log import ExportResult, InferenceLog

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TIME = pa.timestamp("us", tz="UTC")


def batch(values: range | list[int]) -> pa.Table:
    """Records whose ``in.x`` is each value, logged ``value`` seconds after ``T0``."""
    return pa.table(
        {
            "time": pa.array([T0 + dt.timedelta(seconds=v) for v in values], TIME),
            "in.x": pa.array(list(values), pa.int64()),
        }
    )


def on_disk(folder: Path) -> list[int]:
    """Every ``in.x`` in the whole segments of ``folder``, read file by file."""
    segments = sorted(folder.glob("segment-*.parquet"))
    return [v for p in segments for v in pq.read_table(p).column("in.x").to_pylist()]


def test_two_logs_in_one_process_share_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    first = InferenceLog(folder, flush_seconds=3600)
    second = InferenceLog(folder, flush_seconds=3600)  # both opened on an empty folder
    try:
        for i in range(10):
            writer = first if i % 2 == 0 else second
            writer.append(batch(range(i * 10, i * 10 + 10)))
            writer.flush()
            if i == 5:
                second.append_failures(batch([1000]).append_column("error", pa.array(["timeout"])))
        first.append(batch(range(100, 105)))  # both queued, then written in either order
        second.append(batch(range(105, 110)))
        first.flush()
        second.flush()
        table, more = first.read(limit=None)
        assert sorted(table.column("in.x").to_pylist()) == list(range(110)) and not more
        assert sorted(on_disk(folder / "log")) == list(range(110))  # no segment overwritten
        segments = len(list((folder / "log").glob("segment-*.parquet")))
        failures = len(list((folder / "failures").glob("segment-*.parquet")))
        for counters in (first.counters(), second.counters()):  # what the folder holds
            assert counters["written"] == 110 and counters["failed"] == 1
            # 12: the first flush of the last two batches writes both (one shared journal)
            assert counters["segments"] == segments + failures == 12
            assert counters["last_seq"] == 110  # 111 records, numbered 0…110 across writers
        assert second.read(failures=True)[0].column("in.x").to_pylist() == [1000]
    finally:
        first.close()
        second.close()
    assert not list(folder.glob("*/.segment-*.tmp"))


_WRITER = textwrap.dedent(
    """
    import datetime as dt, sys, pyarrow as pa
    from pathlib import Path
    from assay.pipelines.log import ExportResult, InferenceLog

    T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    first, n = int(sys.argv[2]), int(sys.argv[3])
    log = InferenceLog(Path(sys.argv[1]), flush_rows=20, flush_seconds=0.001)
    print("ready", flush=True)
    sys.stdin.readline()  # every writer is open (and would number from 0): go
    for i in range(first, first + n, 5):
        values = list(range(i, i + 5))
        log.append(pa.table({
            "time": pa.array(
                [T0 + dt.timedelta(seconds=v) for v in values], pa.timestamp("us", tz="UTC")
            ),
            "in.x": pa.array(values, pa.int64()),
        }))
    log.close()
    print("done", flush=True)
    """
)


def test_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    folder, n = tmp_path / "p", 1000
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(folder), str(k * 100_000), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(3)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        outputs = [child.communicate("go\n", timeout=120)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    assert [child.returncode for child in children] == [0, 0, 0]
    assert outputs == ["done\n"] * 3
    with InferenceLog(folder) as log:
        assert log.counters()["written"] == 3 * n and log.counters()["dropped"] == 0
    expected = [k * 100_000 + i for k in range(3) for i in range(n)]
    assert sorted(on_disk(folder / "log")) == expected  # the union: nothing lost or twice
    assert not list(folder.glob("*/.segment-*.tmp"))
    with InferenceLog(folder) as log:
        table, more = log.read(limit=None)
        assert sorted(table.column("in.x").to_pylist()) == expected and not more
        newest, more = log.read(limit=3)
        assert newest.column("in.x").to_pylist() == [200_999, 200_998, 200_997] and more


def test_only_the_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "p" / "log"
    folder.mkdir(parents=True)
    dead = folder / f".segment-{2**22 + 1}-x.tmp"  # above any pid_max: no such process
    live = folder / f".segment-{os.getpid()}-5eed.tmp"  # a write in progress here
    old = folder / ".segment-000000000009.tmp"  # named before writers had pids
    for path in (dead, live, old):
        path.write_bytes(b"torn")
    with InferenceLog(tmp_path / "p") as log:
        assert not dead.exists() and not old.exists() and live.exists()
        log.append(batch(range(3)))
        table, _ = log.read(limit=None)
    assert sorted(table.column("in.x").to_pylist()) == [0, 1, 2]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [live.name, "segment-000000000000.parquet"]


def test_the_newest_are_found_by_time_not_by_segment_number(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    with InferenceLog(folder) as early, InferenceLog(folder) as late:
        late.append(batch(range(100, 110)))  # segment 0: the newest records
        late.flush()
        early.append(batch(range(0, 10)))  # segment 1: the oldest
        early.flush()
        late.append(batch(range(50, 55)))  # segment 2: in between
        late.flush()
        early.append(batch([107, 1]))  # segment 3: a time among the newest, one among the oldest
        early.flush()
        assert len(list((folder / "log").glob("segment-*.parquet"))) == 4
        table, more = early.read(limit=4)
        assert table.column("in.x").to_pylist() == [109, 108, 107, 107] and more
        table, more = late.read(limit=3, start_datetime=T0)
        assert table.column("in.x").to_pylist() == [0, 1, 1] and more
        window = T0 + dt.timedelta(seconds=9), T0 + dt.timedelta(seconds=101)
        table, more = late.read(limit=None, start_datetime=window[0], end_datetime=window[1])
        assert table.column("in.x").to_pylist() == [9, 50, 51, 52, 53, 54, 100] and not more


def test_an_export_of_interleaved_writers_is_in_log_order(tmp_path: Path) -> None:
    """Two writers whose segments overlap in time (one with an extra column): the export is
    in the order the segments were published (the records' sequence numbers) — so an export
    stopped by its limit is a prefix, and going on from its ``start_sequence`` misses
    nothing and repeats nothing — and each file keeps one schema."""
    import json

    folder = tmp_path / "p"
    first = InferenceLog(folder, flush_seconds=3600)
    second = InferenceLog(folder, flush_seconds=3600)
    try:
        first.append(batch(range(0, 40, 2)))  # even seconds
        first.flush()
        odd = batch(range(1, 40, 2)).append_column("in.y", pa.array(["odd"] * 20))
        second.append(odd)
        second.flush()
        first.append(batch([100, 101]))  # later, alone
        first.flush()
        stopped = first.export(tmp_path / "partial", limit=7)
        rest = second.export(tmp_path / "rest", **stopped.resume)
        full = first.export(tmp_path / "full")
    finally:
        first.close()
        second.close()

    def exported(result: ExportResult) -> list[int]:
        files = sorted(result.files)
        return [json.loads(line)["in.x"] for p in files for line in p.read_text().splitlines()]

    assert exported(full) == [*range(0, 40, 2), *range(1, 40, 2), 100, 101]
    assert exported(stopped) == list(range(0, 14, 2)) and stopped.resume == {"start_sequence": 7}
    assert exported(stopped) + exported(rest) == exported(full)
    for path in full.files:  # runs of one segment: each file has one schema
        keys = {tuple(sorted(json.loads(line))) for line in path.read_text().splitlines()}
        assert len(keys) == 1


def test_records_dropped_by_one_writer_are_counted_by_every_other(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    with (
        InferenceLog(folder, durable=False, flush_seconds=3600, queue_limit=3) as small,
        InferenceLog(folder, flush_seconds=3600) as other,
    ):
        assert not small.append(batch(range(5)))  # more than its queue holds: dropped
        assert other.counters()["dropped"] == 5
        other.append(batch(range(5, 8)))
        other.flush()
        assert small.counters()["written"] == 3  # written by the other writer
    with InferenceLog(folder) as reopened:  # and after both are gone
        assert reopened.counters()["dropped"] == 5
