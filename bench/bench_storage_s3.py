"""Benchmark: S3 storage (moto in server mode on loopback) against local storage, for the
output writes of an evaluation. A report, no target: moto is a Python server on the same
machine, so the figures say what S3 storage costs the platform's side (requests, digests,
threads), not what a real bucket over a network would.

1. ``writes``: the parts of an N-instance evaluation output (one replication, parts of
   4,096 rows as an in-process evaluation cuts them; ``_index_``, ``_replication_`` and
   ``responses`` with a short text each), built as Arrow tables before the clock starts, then
   written by the evaluation's own :class:`~assay.evaluation.parts.PartWriter`: encoded to
   Parquet in the caller's thread, stored by its threads (atomic writes; on S3 one
   ``PutObject`` per part with its md5 and sha256). Also timed: storing the encoded parts
   alone, ``put_bytes`` from two threads, the part of the work that differs.
2. ``evaluation``: a whole in-process evaluation of N instances on the TextCompletion mock
   (``evaluations.create`` → ``Complete``: reading the data set, answering, building and
   writing the parts, the integrity check), on a LocalPlatform with each storage.
3. ``pipeline-log``: N records appended to a pipeline's inference log in batches of 1,000
   (durable, the default), without and with its segments copied to the bucket
   (``_log_archive``): the time the appends take (callers never wait for the bucket) and
   the time until ``flush`` has every record in segments and, with S3, in the bucket.

Blocks of the two sides alternate (local, S3, S3, local, ...) after a warm-up that is not
timed; figures are medians. Default N is 100,000 (a minute or two in all); ``--full`` runs
the 1,000,000 instances of issue 18. Each line ends with the 1-minute load average.
Run: ``.venv/bin/python bench/bench_storage_s3.py [--full] [--rows N] [--rounds R]
[--only writes|evaluation|pipeline-log]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.s3_server: the moto server the tests use

PART_ROWS = 1 << 12


def _alternate(rounds: int, *sides: tuple[list[float], Callable[[], float]]) -> None:
    for side in sides:
        side[1]()  # warm-up
    for k in range(rounds):
        for times, run in sides if k % 2 == 0 else reversed(sides):
            times.append(run())


def _load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def _parts(n: int) -> list[tuple[str, Any]]:
    """The parts of an n-instance output (tables), as the evaluation names them."""
    import pyarrow as pa

    from assay.evaluation.parts import Part

    response = pa.struct([("text", pa.string()), ("_response_index_", pa.int64())])
    parts = []
    for batch, start in enumerate(range(0, n, PART_ROWS)):
        stop = min(n, start + PART_ROWS)
        rows = stop - start
        texts = pa.array(
            [f"an answer to prompt {i}, of a typical length" for i in range(start, stop)]
        )
        responses = pa.ListArray.from_arrays(
            pa.array(range(rows + 1), pa.int32()),
            pa.StructArray.from_arrays(
                [texts, pa.array([0] * rows, pa.int64())], fields=list(response)
            ),
        )
        table = pa.table(
            {
                "_index_": pa.array(range(start, stop), pa.int64()),
                "_replication_": pa.array(["r0"] * rows).dictionary_encode(),
                "responses": responses,
            }
        )
        parts.append((Part(0, 0, batch).path, table))
    return parts


def _write(storage: Any, parts: list[tuple[str, Any]]) -> float:
    """Seconds to write the parts as an evaluation does (PartWriter: encode, store)."""
    from assay.evaluation.parts import PartWriter
    from assay.schema.ids import generate_entity_id

    entity = generate_entity_id()
    start = time.perf_counter()
    with PartWriter(storage, entity) as writer:
        for path, table in parts:
            writer.write((path, table))
    seconds = time.perf_counter() - start
    storage.delete_entity(entity)
    return seconds


def _store(storage: Any, encoded: list[tuple[str, bytes]]) -> float:
    """Seconds to store encoded parts, two threads at a time (as PartWriter's threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from assay.schema.ids import generate_entity_id

    entity = generate_entity_id()
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for _ in pool.map(lambda item: storage.put_bytes(entity, *item), encoded):
            pass
    seconds = time.perf_counter() - start
    storage.delete_entity(entity)
    return seconds


def bench_writes(args: argparse.Namespace, s3_url: str, tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from assay.storage import LocalStorage, S3Storage

    n = args.rows
    parts = _parts(n)
    encoded = []
    for path, table in parts:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        encoded.append((path, sink.getvalue().to_pybytes()))
    size = sum(len(d) for _, d in encoded)
    local = LocalStorage(tmp / "local")
    s3 = S3Storage(s3_url, cache_dir=tmp / "cache")
    cases: list[tuple[str, Callable[[Any, Any], float], Any]] = [
        ("writes", _write, parts),
        ("stores only", _store, encoded),
    ]
    for what, run, items in cases:
        local_times: list[float] = []
        s3_times: list[float] = []
        _alternate(
            args.rounds,
            (local_times, partial(run, local, items)),
            (s3_times, partial(run, s3, items)),
        )
        lo, s = statistics.median(local_times), statistics.median(s3_times)
        print(
            f"{what}, {n:,} instances ({len(parts)} parts, {size / 1e6:.1f} MB): local "
            f"{lo:6.2f} s ({n / lo:,.0f} instances/s)   S3 {s:6.2f} s ({n / s:,.0f}/s)   "
            f"ratio S3/local {s / lo:5.2f}x   (medians of {args.rounds}; {_load()})",
            flush=True,
        )


def _write_data(directory: Path, n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    table = pa.table(
        {"_index_": pa.array(range(n), pa.int64()), "text": [f"prompt {i}" for i in range(n)]}
    )
    pq.write_table(table, directory / "part-0.parquet")
    return directory


def bench_evaluation(args: argparse.Namespace, s3_url: str, tmp: Path) -> None:
    from assay.local import LocalPlatform, mocks

    n = args.rows
    data = _write_data(tmp / "data", n)
    warm = _write_data(tmp / "warm", 1000)
    platforms = {
        "local": LocalPlatform(storage_root=tmp / "local-platform", account="bench"),
        "s3": LocalPlatform(storage_root=tmp / "s3-platform", account="bench", storage=s3_url),
    }
    try:
        runs: dict[str, Callable[[], float]] = {}
        for name, platform in platforms.items():
            service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="bench")
            ids = {}
            for label, directory in (("data", data), ("warm", warm)):
                made = platform.datasets.create_arrow_dataset(
                    directory, account="bench", name=label
                )
                ids[label] = platform.datasets.upload_arrow_dataset(made, directory).id

            def evaluate(
                platform: Any = platform, service: str = service.id, ids: Any = ids
            ) -> float:
                start = time.perf_counter()
                evaluation = platform.evaluations.create(
                    {
                        "account": "bench",
                        "dataset": ids["data"],
                        "inferenceSession": {"inferenceService": service},
                    }
                )
                seconds = time.perf_counter() - start
                if evaluation.status != "Complete":
                    raise SystemExit(
                        f"the evaluation ended {evaluation.status}: {evaluation.message}"
                    )
                return seconds

            runs[name] = evaluate
        os.environ["ASSAY_PROGRESS"] = "0"
        local_times: list[float] = []
        s3_times: list[float] = []
        _alternate(args.rounds, (local_times, runs["local"]), (s3_times, runs["s3"]))
    finally:
        for platform in platforms.values():
            platform.close()
    lo, s = statistics.median(local_times), statistics.median(s3_times)
    print(
        f"evaluation, {n:,} instances, in-process mock: local {lo:6.2f} s ({n / lo:,.0f} "
        f"instances/s)   S3 {s:6.2f} s ({n / s:,.0f}/s)   ratio S3/local {s / lo:5.2f}x   "
        f"(medians of {args.rounds}; {_load()})",
        flush=True,
    )


def _log_batch(start: int, n: int) -> Any:
    """``n`` flattened pipeline log records (time, in.*, out.*, anomaly.count)."""
    import datetime as dt

    import pyarrow as pa

    now = dt.datetime.now(dt.UTC)
    return pa.table(
        {
            "time": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "in.text": [f"prompt {i}" for i in range(start, start + n)],
            "out.text": [f"answer {i}" for i in range(start, start + n)],
            "anomaly.count": pa.array([0] * n, pa.int64()),
        }
    )


def bench_pipeline_log(args: argparse.Namespace, s3_url: str, tmp: Path) -> None:
    from assay.pipelines._log_archive import Archive, archive_id
    from assay.pipelines.log import InferenceLog
    from assay.storage import S3Storage

    n, batch = args.rows, 1000
    batches = [_log_batch(i, batch) for i in range(0, n, batch)]
    s3 = S3Storage(s3_url, cache_dir=tmp / "cache")
    counter = itertools.count()
    appends: dict[str, list[float]] = {"local": [], "s3": []}

    def run(side: str) -> float:
        folder = tmp / f"{side}-{next(counter)}"
        archive = Archive(s3, archive_id("bench", folder.name), folder) if side == "s3" else None
        log = InferenceLog(folder, archive=archive)
        start = time.perf_counter()
        for table in batches:
            log.append(table)
        appends[side].append(time.perf_counter() - start)
        log.flush()  # every record in segments and, with the archive, in the bucket
        seconds = time.perf_counter() - start
        if archive is not None and log.counters()["unshipped"]:
            raise SystemExit("pipeline log: segments were left unshipped")
        log.close()
        return seconds

    local_times: list[float] = []
    s3_times: list[float] = []
    _alternate(args.rounds, (local_times, partial(run, "local")), (s3_times, partial(run, "s3")))
    lo, s = statistics.median(local_times), statistics.median(s3_times)
    la, sa = statistics.median(appends["local"]), statistics.median(appends["s3"])
    print(
        f"pipeline log, {n:,} records in batches of {batch:,}: appends (what callers wait for) "
        f"local {la:6.2f} s  S3 {sa:6.2f} s  ratio {sa / la:5.2f}x;  until flushed (and "
        f"copied to the bucket) local {lo:6.2f} s  S3 {s:6.2f} s  ratio {s / lo:5.2f}x   "
        f"(medians of {args.rounds}; {_load()})",
        flush=True,
    )


BENCHMARKS = {
    "writes": bench_writes,
    "evaluation": bench_evaluation,
    "pipeline-log": bench_pipeline_log,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run one benchmark")
    parser.add_argument("--rows", type=int, default=100_000, help="instances (default 100,000)")
    parser.add_argument("--full", action="store_true", help="1,000,000 instances (issue 18)")
    parser.add_argument("--rounds", type=int, default=2, help="timed blocks per side")
    args = parser.parse_args()
    if args.full:
        args.rows = 1_000_000
    os.environ.setdefault("ASSAY_PROGRESS", "0")
    from tests.s3_server import CREDENTIALS, make_bucket, moto_server

    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(CREDENTIALS)
        os.environ["ASSAY_S3_ENDPOINT_URL"] = endpoint
        s3_url = f"s3://{make_bucket(endpoint)}/bench"
        for name, run in BENCHMARKS.items():
            if args.only in (None, name):
                run(args, s3_url, Path(tmp) / name)


if __name__ == "__main__":
    main()
