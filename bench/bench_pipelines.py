"""Benchmark: a one-step pipeline with its durable inference log against calling the service
directly, the durable log against the asynchronous one, and a crash test.

Everything runs on one ``LocalPlatform`` in a temporary folder (on the same disk as the
system's temporary files), over an in-process ``TextCompletion`` mock (one output per
request). Blocks of the paths compared alternate, so that machine noise hits all alike; each
figure is a median over every call of its path, and the ratios are speeds (direct time /
pipeline time), measured in the same run:

- single rows: ``pipeline.infer(row)`` (durable log: it returns once its record is written
  to the journal, fsynced moments later) against ``client.infer(row)``, one caller; then
  ``--callers`` threads calling at once (requests per second);
- batches of ``--batch`` rows: ``pipeline.infer(rows)`` against ``client.infer_many(rows)``
  (a list), and ``pipeline.infer(table)`` against ``client.infer_many(table.to_pylist())``
  turned into a table of the outputs (Arrow in, Arrow out);
- the durable log against the asynchronous one (``Pipeline(..., durable_log=False)``, which
  answers before its records are durable) at batches of ``--batch`` rows;
- the crash test: a child process under steady single-row load (every fourth row refused by
  the pipeline's input schema) reports each answer and refusal once ``infer`` returned or
  raised, and is SIGKILLed; the answered records missing from the log and the refused rows
  missing from the failure log are counted (both must be 0), ``--crash-rounds`` times on the
  same log (the sequence goes on across the crashes, without a gap).

Run: ``.venv/bin/python bench/bench_pipelines.py [--single N] [--batches N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline
from assay.pipelines.log import InferenceLog
from assay.schema.requests import InferenceSessionCreateRequest

ACCOUNT = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--single", type=int, default=400, help="single rows per block")
    parser.add_argument("--callers", type=int, default=8, help="concurrent single-row callers")
    parser.add_argument("--batch", type=int, default=1000, help="rows per batch")
    parser.add_argument("--batches", type=int, default=10, help="batches per block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks of each path")
    parser.add_argument("--crash-rounds", type=int, default=3)
    parser.add_argument("--crash-answers", type=int, default=300, help="answers before a kill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, LocalPlatform(root, account=ACCOUNT) as platform:
        service = platform.inferenceservices.create_mock(
            mocks.TextCompletion,
            account=ACCOUNT,
            name="text",
            kwargs={"seed": 1, "responses_per_request": 1},
        )
        created = platform.inferencesessions.create(
            InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
        )
        client = platform.inferencesessions.client(created.inferencesession.id, created.token)
        durable = Pipeline(platform, "bench")
        durable.add_model_step(service).deploy()
        hasty = Pipeline(platform, "bench", durable_log=False)  # the same deployed version

        print(f"one-step pipeline over an in-process mock, durable log ({args.rounds} blocks)")
        _single(client, durable, hasty, args)
        _batches(client, durable, hasty, args)
        log = durable._running().log
        log.flush()
        counters = log.counters()
        print(
            f"  log: {counters['written']:,} records, {counters['segments']} segments, last seq "
            f"{counters['last_seq']:,} (written + failed = last seq + 1: "
            f"{counters['written'] + counters['failed'] == counters['last_seq'] + 1})"
        )
    _crashes(args.crash_rounds, args.crash_answers)


def _figure(what: str, value: float, target: float | None, unit: str = "x") -> None:
    mark = "" if target is None else ("  ok" if value >= target else "  MISSED")
    goal = "" if target is None else f"  (target ≥ {target:g}{unit})"
    print(f"  {what:<58} {value:>8.2f}{unit}{goal}{mark}")


def _blocks(paths: dict[str, Callable[[int], None]], rounds: int, n: int) -> dict[str, float]:
    """Median seconds per call of each path: ``rounds`` blocks of ``n`` calls, alternating."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            for i in range(n):
                start = time.perf_counter()
                call(i)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _single(client: Any, durable: Pipeline, hasty: Pipeline, args: argparse.Namespace) -> None:
    def row(i: int) -> dict[str, Any]:
        return {"text": f"prompt number {i}"}

    p50 = _blocks(
        {
            "direct": lambda i: client.infer(row(i)),
            "durable": lambda i: durable.infer(row(i)),
            "async": lambda i: hasty.infer(row(i)),
        },
        args.rounds,
        args.single,
    )
    print(
        f"  single rows, one caller, p50: direct {p50['direct'] * 1e6:.1f} µs, pipeline "
        f"{p50['durable'] * 1e6:.1f} µs (asynchronous log {p50['async'] * 1e6:.1f} µs)"
    )
    _figure("single rows, one caller (speed vs direct)", p50["direct"] / p50["durable"], 0.5)
    rates: dict[str, list[float]] = {"direct": [], "durable": []}
    calls = {"direct": client.infer, "durable": durable.infer}
    for _ in range(args.rounds):
        for name, call in calls.items():
            rates[name].append(_concurrently(call, args.callers, args.single // 2))
    direct, piped = statistics.median(rates["direct"]), statistics.median(rates["durable"])
    print(f"  single rows, {args.callers} callers: direct {direct:,.0f}/s, pipeline {piped:,.0f}/s")
    _figure(f"single rows, {args.callers} callers (speed vs direct)", piped / direct, 0.5)


def _concurrently(call: Callable[[dict[str, Any]], Any], callers: int, each: int) -> float:
    """Calls per second of ``callers`` threads making ``each`` single-row calls."""
    go = threading.Event()

    def work(k: int) -> None:
        go.wait()
        for i in range(each):
            call({"text": f"prompt {k} {i}"})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(callers)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    return callers * each / (time.perf_counter() - start)


def _batches(client: Any, durable: Pipeline, hasty: Pipeline, args: argparse.Namespace) -> None:
    rows = [{"text": f"prompt number {i}"} for i in range(args.batch)]
    table = pa.Table.from_pylist(rows)

    def direct_arrow(_: int) -> None:
        replies = client.infer_many(table.to_pylist())
        pa.Table.from_pylist([reply[0] for reply in replies])

    median = _blocks(
        {
            "direct list": lambda _: client.infer_many(rows),
            "pipeline list": lambda _: durable.infer(rows),
            "direct arrow": direct_arrow,
            "pipeline arrow": lambda _: durable.infer(table),
            "async list": lambda _: hasty.infer(rows),
        },
        args.rounds,
        args.batches,
    )
    n = f"{args.batch:,}"
    print(
        "  batches of "
        + n
        + ", median ms: "
        + ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in median.items())
    )
    _figure(
        f"batches of {n} as a list (speed vs direct)",
        median["direct list"] / median["pipeline list"],
        0.9,
    )
    _figure(
        f"batches of {n} as Arrow (speed vs direct)",
        median["direct arrow"] / median["pipeline arrow"],
        0.9,
    )
    _figure(
        f"durable vs asynchronous log, batches of {n}",
        median["async list"] / median["pipeline list"],
        0.7,
    )


#: The child of the crash test: steady single-row load on a durable pipeline; each answer
#: ("a <id>") and refusal ("r <id>") reported on stdout once infer returned or raised.
CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import pyarrow as pa
    from assay import errors
    from assay.local import LocalPlatform, mocks
    from assay.pipelines import Pipeline

    root, i = Path(sys.argv[1]), int(sys.argv[2])
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
    os.write(1, b"ready\\n")
    while True:
        row = {"id": i, "text": None if i % 4 == 3 else f"prompt {i}"}
        try:
            pipeline.infer(row)
            os.write(1, b"a %d\\n" % i)
        except errors.ValidationError:
            os.write(1, b"r %d\\n" % i)
        i += 1
    """
)


def _crashes(rounds: int, answers: int) -> None:
    print(f"\ncrash test: steady single-row load, SIGKILL after {answers} reports, {rounds} rounds")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "platform"
        for k in range(rounds):
            found = _crash_round(root, k * 1_000_000, answers)
            print(
                f"  round {k + 1}: {found['answered']} answered, {found['refused']} refused; "
                f"missing from the log: {found['missing answers']}, from the failure log: "
                f"{found['missing refusals']} (target 0, 0); seq without gaps: "
                f"{found['gap-free']}"
            )


def _crash_round(root: Path, first: int, answers: int) -> dict[str, Any]:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    try:
        if child.stdout.readline() != b"ready\n":
            raise SystemExit(f"the child did not start: {child.communicate()[1][-3000:]!r}")
        lines = [child.stdout.readline() for _ in range(answers)]
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate()
    lines += rest.splitlines(keepends=True)
    whole = [line for line in lines if line.endswith(b"\n")]  # a line the kill cut is no report
    answered = {int(line[2:]) for line in whole if line.startswith(b"a ")}
    refused = {int(line[2:]) for line in whole if line.startswith(b"r ")}
    with InferenceLog(root / ".assay" / "pipelines" / "crash" / "crash") as log:

        def column(name: str, failures: bool) -> list[Any]:
            table = log.read(limit=None, dataset=["time", "seq", "in"], failures=failures)[0]
            return table.column(name).to_pylist() if name in table.column_names else []

        seqs = sorted(column("seq", False) + column("seq", True))
        return {
            "answered": len(answered),
            "refused": len(refused),
            "missing answers": len(answered - set(column("in.id", False))),
            "missing refusals": len(refused - set(column("in.id", True))),
            "gap-free": seqs == list(range(len(seqs))),
        }


if __name__ == "__main__":
    main()
