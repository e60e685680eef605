"""Benchmark of the pipeline inference log: records per second appended and made durable.

Run with ``.venv/bin/python bench/bench_pipeline_log.py [--records N] [--runs R]``. A flattened
table of 10 columns (``time``, ``in.*``, ``out.*``, ``anomaly.count`` and two validation
results, ``metadata.*``) is appended to an :class:`InferenceLog` in batches of 1 record and of
1,000 records (default ``flush_rows`` and ``flush_seconds``), then flushed. Two rates each:
``appended`` (the append calls alone, on the asynchronous log, ``durable=False``: what a
pipeline's request path pays with ``durable_log=False``; the durable log's wait for each
group commit is measured by ``bench_pipelines.py``) and ``durable`` (until ``flush()``
returns: every record in a whole, fsynced segment). The baseline in the same
run writes the same records with one ``pyarrow.parquet.write_table`` (plus fsync). Data
generation is outside the timings; medians of the runs are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assay.pipelines.log import InferenceLog


def make_records(n: int, seed: int = 0) -> pa.Table:
    """``n`` flattened records of 10 columns, as a pipeline with validations logs them."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    micros = np.arange(n, dtype=np.int64) * 1000
    x = rng.normal(size=n)
    score = rng.random(n)
    too_low = x < -1.5
    too_high = score > 0.95
    return pa.table(
        {
            "time": pa.array(micros + int(start.timestamp() * 1e6), pa.timestamp("us", tz="UTC")),
            "in.text": pa.array([f"prompt number {i}" for i in range(n)]),
            "in.x": pa.array(x),
            "in.y": pa.array(rng.integers(0, 100, n)),
            "out.label": pa.array(np.where(score > 0.5, "positive", "negative")),
            "out.score": pa.array(score),
            "anomaly.count": pa.array(too_low.astype(np.int64) + too_high.astype(np.int64)),
            "anomaly.x_too_low": pa.array(too_low),
            "anomaly.score_too_high": pa.array(too_high),
            "metadata.model": pa.array(np.full(n, "classifier-v1")),
        }
    )


def run_log(records: pa.Table, batch: int) -> tuple[float, float]:
    """(appended, durable) records per second for ``batch`` records per append."""
    batches = [records.slice(i, batch) for i in range(0, records.num_rows, batch)]
    with tempfile.TemporaryDirectory() as folder:
        log = InferenceLog(Path(folder) / "p", durable=False, queue_limit=10 * records.num_rows)
        started = time.perf_counter()
        for part in batches:
            log.append(part)
        appended = time.perf_counter() - started
        log.flush()
        durable = time.perf_counter() - started
        assert log.counters()["written"] == records.num_rows, log.counters()
        log.close()
    n: int = records.num_rows
    return n / appended, n / durable


def run_baseline(records: pa.Table) -> float:
    """Records per second of one ``write_table`` of everything, fsynced."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "all.parquet"
        started = time.perf_counter()
        with open(path, "wb") as file:
            pq.write_table(records, file, compression="zstd")
            file.flush()
            os.fsync(file.fileno())
        return float(records.num_rows / (time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=20_000, help="records for batches of 1")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    records = make_records(options.records)
    single = records.slice(0, options.single)
    results: dict[str, list[float]] = {}
    for _ in range(options.runs):  # alternate, so that drift on a shared machine hits all
        for name, rates in (
            ("batch 1", run_log(single, 1)),
            ("batch 1000", run_log(records, 1000)),
        ):
            results.setdefault(f"{name} appended", []).append(rates[0])
            results.setdefault(f"{name} durable", []).append(rates[1])
        results.setdefault("baseline write_table", []).append(run_baseline(records))
    print(
        f"inference log, {records.num_columns} columns ({options.single:,} records in batches "
        f"of 1, {options.records:,} in batches of 1,000), median of {options.runs} runs:"
    )
    for name, values in results.items():
        print(f"  {name:<24} {statistics.median(values):>14,.0f} records/s")


if __name__ == "__main__":
    main()
