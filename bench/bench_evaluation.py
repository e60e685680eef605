"""Benchmark of the evaluation engine: every figure beside a baseline measured in the same run.

1. ``inprocess``: an evaluation of N instances on the in-process TextCompletion mock
   (``create_mock`` + ``evaluations.create``, wall time of create → Complete) against the
   reference, ``dyff-audit==0.18.5``'s local evaluation (``DyffLocalPlatform.evaluations.create``
   on its TextCompletion mock) over the same Parquet data. The reference is installed by this
   script into its own virtual environment (``bench/.venv-reference``) and runs there as a
   subprocess that prints its own timing. Target: at least 5x its instances/s.
2. ``http``: an evaluation through a ``python``-runner session (one replica of an echo class)
   against a bare aiohttp + uvloop loop that sends the same instances to the same replica at
   the same concurrency — one instance per request, then batches of 32. Target: at least 0.8x.
3. ``latency``: a service that takes 50 ms per request (64 threads in its replica), evaluated
   with 64 workers, one instance per request, against the ideal 64 / 0.05 s = 1,280/s.
   Target: at least 0.9x.
4. ``memory``: the peak RSS of a 1,000,000-instance in-process evaluation against a
   100,000-instance one, each in a fresh process. Target: at most 1.25x.

Blocks of the measured side and its baseline alternate, in reversed order every other round,
after a warm-up of each that is not timed; figures are medians. Both sides start with the
objects made before them frozen (``gc.freeze``: the evaluation does it for its run, the bare
loop gets the same), so that neither walks the harness's objects in its collections. With
``--part-rows``, runs whose parts hold at most that many rows are timed too (informational:
what the platform's part sizing buys). Each line ends with the 1-minute load average before
and after: the machine may be shared, and figures taken under different loads do not compare.
Run: ``.venv/bin/python bench/bench_evaluation.py [--only NAME] [--rows N] [--rounds R] ...``
(``--help`` lists the sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REFERENCE_VENV = HERE / ".venv-reference"
REFERENCE_PACKAGE = "dyff-audit==0.18.5"

ECHO = """
import time


class Echo:
    endpoints = ["echo"]

    def infer(self, endpoint, request):
        return [{"text": request["text"]}]

    def infer_batch(self, endpoint, requests):
        return [[{"text": request["text"]}] for request in requests]


class Slow:
    endpoints = ["echo"]

    def infer(self, endpoint, request):
        time.sleep(0.05)
        return [{"text": request["text"]}]
"""


# -- data ------------------------------------------------------------------------------------


def write_data(directory: Path, rows: int, *, files: int = 1) -> Path:
    """A text data set of ``rows`` instances (``_index_``, ``text``) as Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    per = -(-rows // files)
    for f in range(files):
        start, stop = f * per, min(rows, (f + 1) * per)
        texts = [
            f"Question {i}: what is the capital of country number {i % 197}?"
            for i in range(start, stop)
        ]
        table = pa.table({"_index_": pa.array(range(start, stop), pa.int64()), "text": texts})
        pq.write_table(table, directory / f"part-{f:03d}.parquet")
    return directory


def _upload(platform: Any, directory: Path, name: str) -> str:
    dataset = platform.datasets.create_arrow_dataset(directory, account="bench", name=name)
    return str(platform.datasets.upload_arrow_dataset(dataset, directory).id)


def _median_rate(times: list[float], n: int) -> float:
    return n / statistics.median(times)


def _limited(rows: int, evaluate: Callable[..., float], *args: Any) -> float:
    """``evaluate(*args)`` with parts of at most ``rows`` rows (the platform's limits,
    ``PART_ROWS`` and ``IN_PROCESS_PART_ROWS`` of ``assay.evaluation.parts``, set for the
    run)."""
    from assay.evaluation import parts

    limits = parts.PART_ROWS, parts.IN_PROCESS_PART_ROWS
    parts.PART_ROWS = parts.IN_PROCESS_PART_ROWS = rows
    try:
        return evaluate(*args)
    finally:
        parts.PART_ROWS, parts.IN_PROCESS_PART_ROWS = limits


def _load(before: float) -> str:
    """The 1-minute load average before a benchmark and now (other work on the machine
    skews every figure: compare figures taken under a similar load)."""
    return f"load {before:.2f} -> {os.getloadavg()[0]:.2f}"


def _alternate(rounds: int, *sides: tuple[list[float], Callable[[], float]]) -> None:
    """Time each side ``rounds`` times, the sides taking turns and the order reversed every
    other round (neither always runs first, just after the other's writes), appending each
    side's seconds to its list."""
    for k in range(rounds):
        for times, run in sides if k % 2 == 0 else reversed(sides):
            times.append(run())


# -- 1. in-process, against the reference ----------------------------------------------------


def reference_python() -> Path:
    """The reference's interpreter, installing it on first use."""
    python = REFERENCE_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"installing the reference ({REFERENCE_PACKAGE}) into {REFERENCE_VENV} ...", flush=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(REFERENCE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", REFERENCE_PACKAGE], check=True)
    return python


def reference_child(data: Path, warmup: Path) -> None:
    """Runs in the reference's venv: one warm-up evaluation, then the timed one; prints JSON."""
    from dyff.audit.local import mocks  # type: ignore[import-not-found]
    from dyff.audit.local.platform import DyffLocalPlatform  # type: ignore[import-not-found]
    from dyff.schema.requests import (  # type: ignore[import-not-found]
        EvaluationCreateRequest,
        EvaluationInferenceSessionRequest,
    )

    with tempfile.TemporaryDirectory() as tmp:
        platform = DyffLocalPlatform(Path(tmp) / "store")
        service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="bench")
        seconds = 0.0
        for directory in (warmup, data):
            dataset = platform.datasets.create_arrow_dataset(
                str(directory), account="bench", name="data"
            )
            platform.datasets.upload_arrow_dataset(dataset, str(directory))
            request = EvaluationCreateRequest(
                account="bench",
                dataset=dataset.id,
                inferenceSession=EvaluationInferenceSessionRequest(inferenceService=service.id),
            )
            start = time.perf_counter()
            evaluation = platform.evaluations.create(request)
            seconds = time.perf_counter() - start
        import pyarrow.dataset as ds

        rows = ds.dataset(str(platform.entity_path(evaluation.id)), format="parquet").count_rows()
    print(json.dumps({"seconds": seconds, "rows": rows, "status": str(evaluation.status)}))


def bench_inprocess(args: argparse.Namespace) -> None:
    from assay.local import LocalPlatform, mocks

    python = reference_python()
    n = args.rows
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data", n)
        warmup = write_data(Path(tmp) / "warmup", 1000)

        def reference() -> float:
            out = subprocess.run(
                [str(python), __file__, "--reference-child", str(data), str(warmup)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if result["rows"] != n:
                raise SystemExit(f"the reference wrote {result['rows']} rows, expected {n}")
            return float(result["seconds"])

        with LocalPlatform(storage_root=Path(tmp) / "assay", account="bench") as platform:
            service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="bench")
            dataset = _upload(platform, data, "data")
            small = _upload(platform, warmup, "warmup")

            def evaluate(dataset_id: str, batch_size: int | None = None) -> float:
                request: dict[str, Any] = {
                    "account": "bench",
                    "dataset": dataset_id,
                    "inferenceSession": {"inferenceService": service.id},
                }
                if batch_size:
                    request["client"] = {"batchSize": batch_size}
                start = time.perf_counter()
                evaluation = platform.evaluations.create(request)
                seconds = time.perf_counter() - start
                if evaluation.status != "Complete":
                    raise SystemExit(
                        f"the evaluation ended {evaluation.status}: {evaluation.message}"
                    )
                return seconds

            evaluate(small)
            assay_times: list[float] = []
            reference_times: list[float] = []
            limited: dict[int, list[float]] = {rows: [] for rows in args.part_rows}
            _alternate(
                args.rounds,
                (reference_times, reference),
                (assay_times, partial(evaluate, dataset)),
                *((limited[rows], partial(_limited, rows, evaluate, dataset)) for rows in limited),
            )
    a, r = _median_rate(assay_times, n), _median_rate(reference_times, n)
    print(
        f"in-process mock, {n:,} instances: assay {a:>10,.0f} instances/s   "
        f"reference dyff-audit 0.18.5 {r:>9,.0f}/s   ratio {a / r:5.2f}x   (target >= 5x; "
        f"medians of {args.rounds}; {_load(load)})"
    )
    for rows, times in limited.items():
        s = _median_rate(times, n)
        print(
            f"  informational, parts of at most {rows:,} rows (the default batchSize of 1,000: "
            f"one batch per part, as the reference writes them): assay {s:,.0f}/s   "
            f"ratio {s / r:5.2f}x"
        )


# -- 2. and 3. over HTTP ----------------------------------------------------------------------


class _Replica:
    """A LocalPlatform with one python-runner session of ``target`` (from ``ECHO``)."""

    def __init__(self, tmp: Path, target: str, threads: int = 1) -> None:
        import pyarrow as pa

        from assay.local import LocalPlatform
        from assay.schema.dataschema import DataSchema
        from assay.schema.requests import InferenceSessionCreateRequest

        self.platform = LocalPlatform(storage_root=tmp / "assay", account="bench")
        package = tmp / "pkg"
        (package / "benchmodels").mkdir(parents=True, exist_ok=True)
        (package / "benchmodels" / "__init__.py").write_text(ECHO)
        p = self.platform
        module = p.modules.upload_package(
            p.modules.create_package(package, account="bench", name="benchmodels"), package
        )
        schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
        service = p.inferenceservices.create(
            {
                "account": "bench",
                "name": target.replace(":", "-").lower(),
                "runner": {
                    "kind": "python",
                    "configuration": {
                        "module": module.id,
                        "target": f"benchmodels:{target}",
                        "threads": threads,
                    },
                },
                "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
            }
        )
        session = p.inferencesessions.create(
            InferenceSessionCreateRequest(account="bench", inferenceService=service.id)
        ).inferencesession
        if session.status != "Ready":
            raise SystemExit(f"the session did not start: {session.status} {session.message}")
        self.session = session.id
        (handle,) = p.core.sessions.handles(session.id)
        self.url = str(handle.url)
        self.headers = {"Content-Type": "application/json", **handle.headers}

    def evaluate(self, dataset: str, workers: int, batch: int) -> float:
        start = time.perf_counter()
        evaluation = self.platform.evaluations.create(
            {
                "account": "bench",
                "dataset": dataset,
                "inferenceSessionReference": self.session,
                "workersPerReplica": workers,
                "client": {"requestBatchSize": batch},
            }
        )
        seconds = time.perf_counter() - start
        if evaluation.status != "Complete":
            raise SystemExit(f"the evaluation ended {evaluation.status}: {evaluation.message}")
        return seconds

    def close(self) -> None:
        self.platform.inferencesessions.terminate(self.session)
        self.platform.close()


def bare_loop(
    url: str, headers: dict[str, str], rows: list[dict[str, Any]], concurrency: int, batch: int
) -> float:
    """Seconds for a plain aiohttp + uvloop client to send ``rows`` to the replica, ``batch``
    per request (``/batch/echo``; ``/infer/echo`` when 1), ``concurrency`` requests at once,
    decoding every reply (and keeping it, as a client that writes its output at the end
    would).

    The objects that exist before the loop (the harness's: these rows, the platform) are
    frozen while it runs, as the evaluation freezes them for its own run: otherwise every
    full collection of the loop walks the 200,000 rows, which took a third of its time and
    made this baseline ~30 % slower than the loop itself (measured with batches of 32)."""
    import aiohttp
    import uvloop

    path = f"{url}/batch/echo" if batch > 1 else f"{url}/infer/echo"
    chunks: list[Any] = (
        [rows[i : i + batch] for i in range(0, len(rows), batch)] if batch > 1 else rows
    )

    async def run() -> float:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            todo = iter(chunks)
            replies: list[Any] = []

            async def worker() -> None:
                for body in todo:
                    async with session.post(path, data=json.dumps(body), headers=headers) as reply:
                        if reply.status != 200:
                            raise SystemExit(f"the replica answered {reply.status}")
                        replies.append(json.loads(await reply.read()))

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            seconds = time.perf_counter() - start
            if len(replies) != len(chunks):
                raise SystemExit("the bare loop lost replies")
            return seconds

    with _frozen():
        return uvloop.run(run())


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """The objects that exist now frozen (``gc.freeze``) until the end of the block, as the
    evaluation engine does for its run; the collector's thresholds are left alone."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def bench_http(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        replica = _Replica(Path(tmp), "Echo")
        try:
            for batch, n in ((1, args.http_rows), (32, args.http_batch_rows)):
                data = write_data(Path(tmp) / f"data-{batch}", n)
                rows = pq.read_table(data).to_pylist()
                dataset = _upload(replica.platform, data, f"data-{batch}")
                c = args.concurrency
                bare_loop(replica.url, replica.headers, rows[:2000], c, batch)  # warm up
                replica.evaluate(
                    _upload(replica.platform, write_data(Path(tmp) / f"w-{batch}", 2000), "w"),
                    c,
                    batch,
                )
                load = os.getloadavg()[0]
                assay_times: list[float] = []
                bare_times: list[float] = []
                limited: dict[int, list[float]] = {rows: [] for rows in args.part_rows}
                _alternate(
                    args.rounds,
                    (bare_times, partial(bare_loop, replica.url, replica.headers, rows, c, batch)),
                    (assay_times, partial(replica.evaluate, dataset, c, batch)),
                    *(
                        (limited[r], partial(_limited, r, replica.evaluate, dataset, c, batch))
                        for r in limited
                    ),
                )
                a, b = _median_rate(assay_times, n), _median_rate(bare_times, n)
                what = "1 instance per request" if batch == 1 else f"{batch} instances per request"
                print(
                    f"HTTP echo replica, {what:<24} {n:>9,} instances: assay {a:>9,.0f}/s   "
                    f"bare aiohttp+uvloop {b:>9,.0f}/s   ratio {a / b:5.2f}x   (target >= 0.8x; "
                    f"concurrency {c}; medians of {args.rounds}; {_load(load)})"
                )
                for r, times in limited.items():
                    s = _median_rate(times, n)
                    print(
                        f"  informational, parts of at most {r:,} rows: assay {s:,.0f}/s   "
                        f"ratio {s / b:5.2f}x"
                    )
        finally:
            replica.close()


def bench_latency(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    workers, latency = 64, 0.05
    ideal = workers / latency
    n = args.latency_rows
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        replica = _Replica(Path(tmp), "Slow", threads=workers)
        try:
            data = write_data(Path(tmp) / "data", n)
            rows = pq.read_table(data).to_pylist()
            dataset = _upload(replica.platform, data, "data")
            bare_loop(replica.url, replica.headers, rows[: workers * 2], workers, 1)  # warm up
            assay_times: list[float] = []
            bare_times: list[float] = []
            _alternate(
                args.rounds,
                (bare_times, lambda: bare_loop(replica.url, replica.headers, rows, workers, 1)),
                (assay_times, lambda: replica.evaluate(dataset, workers, 1)),
            )
        finally:
            replica.close()
    a, b = _median_rate(assay_times, n), _median_rate(bare_times, n)
    print(
        f"50 ms service, concurrency {workers}, {n:,} instances: assay {a:>7,.0f}/s   ideal "
        f"{ideal:,.0f}/s   ratio {a / ideal:5.2f}x   (target >= 0.9x; bare aiohttp+uvloop "
        f"{b:,.0f}/s = {b / ideal:.2f}x; medians of {args.rounds}; {_load(load)})"
    )


# -- 4. peak memory ---------------------------------------------------------------------------


def memory_child(storage: Path, dataset: str, service: str) -> None:
    """Runs in a fresh process: one in-process evaluation of ``dataset`` (uploaded by the
    parent, so that only the evaluation counts); prints JSON."""
    from assay.local import LocalPlatform

    with LocalPlatform(storage_root=storage, account="bench") as platform:
        start = time.perf_counter()
        evaluation = platform.evaluations.create(
            {
                "account": "bench",
                "dataset": dataset,
                "inferenceSession": {"inferenceService": service},
            }
        )
        seconds = time.perf_counter() - start
        if evaluation.status != "Complete":
            raise SystemExit(f"the evaluation ended {evaluation.status}: {evaluation.message}")
    print(json.dumps({"peak_mib": _peak_rss_kib() / 1024, "seconds": seconds}))


def _peak_rss_kib() -> int:
    """This process's peak RSS. ``VmHWM`` where there is one: ``ru_maxrss`` survives
    ``exec``, so a child started by a large parent would report the parent's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bench_memory(args: argparse.Namespace) -> None:
    from assay.local import LocalPlatform, mocks

    small, large = args.memory_rows // 10, args.memory_rows
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp) / "assay"
        with LocalPlatform(storage_root=storage, account="bench") as platform:
            service = platform.inferenceservices.create_mock(
                mocks.TextCompletion, account="bench"
            ).id
            datasets = {
                n: _upload(platform, write_data(Path(tmp) / f"data-{n}", n), f"data-{n}")
                for n in (small, large)
            }

        def peak(n: int) -> dict[str, float]:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(storage), datasets[n], service],
                check=True,
                capture_output=True,
                text=True,
            )
            result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
            return result

        results: dict[int, list[dict[str, float]]] = {small: [], large: []}
        for _ in range(args.memory_rounds):
            for n in (small, large):
                results[n].append(peak(n))
    s = statistics.median(r["peak_mib"] for r in results[small])
    big = statistics.median(r["peak_mib"] for r in results[large])
    rate = large / statistics.median(r["seconds"] for r in results[large])
    print(
        f"peak RSS, in-process mock: {large:,} instances {big:7.1f} MiB   {small:,} instances "
        f"{s:7.1f} MiB   ratio {big / s:5.2f}x   (target <= 1.25x; {rate:,.0f} instances/s at "
        f"{large:,}; medians of {args.memory_rounds} fresh processes each; {_load(load)})"
    )


# -- main -------------------------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "inprocess": bench_inprocess,
    "http": bench_http,
    "latency": bench_latency,
    "memory": bench_memory,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run one benchmark")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per side")
    parser.add_argument("--rows", type=int, default=100_000, help="in-process instances")
    parser.add_argument(
        "--part-rows",
        type=int,
        nargs="*",
        default=[1000],
        help="in-process and HTTP: also time runs with parts of at most these many rows "
        "(informational; the platform's limits are PART_ROWS and IN_PROCESS_PART_ROWS in "
        "assay.evaluation.parts)",
    )
    parser.add_argument("--http-rows", type=int, default=20_000, help="HTTP, one per request")
    parser.add_argument("--http-batch-rows", type=int, default=200_000, help="HTTP, 32 per request")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight")
    parser.add_argument("--latency-rows", type=int, default=6_400, help="50 ms service")
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="the large run")
    parser.add_argument("--memory-rounds", type=int, default=1, help="processes per size")
    parser.add_argument("--reference-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_child:
        reference_child(*args.reference_child)
        return
    if args.memory_child:
        storage, dataset, service = args.memory_child
        memory_child(Path(storage), dataset, service)
        return
    for name, bench in BENCHMARKS.items():
        if args.only in (None, name):
            bench(args)


if __name__ == "__main__":
    main()
