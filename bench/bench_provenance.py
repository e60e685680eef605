"""Benchmark of provenance's cost (docs/design/provenance.md): the same evaluations with it and
without it (``assay.provenance.ENABLED``, which also stops the storage hashing what it writes),
measured in the same run, blocks alternating; and the time ``verify`` takes over the demo's
safety cases.

1. ``inprocess``: an evaluation of N instances on the in-process TextCompletion mock.
2. ``http``: an evaluation through a ``python``-runner echo replica, 32 instances per request.
3. ``verify``: ``assay demo`` run once into a temporary directory (``--skip-demo`` leaves it
   out), then ``platform.verify`` of each of its safety cases — the whole chain back to the
   data.

Targets (issue 15): provenance costs at most 5 % of evaluation throughput (ratio >= 0.95x);
verifying the demo's safety case takes under 2 s.

Run: ``.venv/bin/python bench/bench_provenance.py [--rows N] [--http-rows N] [--rounds R]
[--skip-demo]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_evaluation import _alternate, _load, _Replica, _upload, write_data  # noqa: E402


def _switched(enabled: bool, run: partial[float]) -> float:
    from assay import provenance

    provenance.ENABLED = enabled
    try:
        return run()
    finally:
        provenance.ENABLED = True


def _inprocess_run(platform: object, dataset: str, service: str) -> float:
    start = time.perf_counter()
    evaluation = platform.evaluations.create(  # type: ignore[attr-defined]
        {"account": "bench", "dataset": dataset, "inferenceSessionReference": service}
    )
    seconds = time.perf_counter() - start
    if evaluation.status != "Complete":
        raise SystemExit(f"the evaluation ended {evaluation.status}: {evaluation.message}")
    return seconds


def bench_inprocess(args: argparse.Namespace, tmp: Path) -> None:
    from assay.local import LocalPlatform, mocks
    from assay.schema.requests import InferenceSessionCreateRequest

    with LocalPlatform(tmp / "inprocess", account="bench") as platform:
        dataset = _upload(platform, write_data(tmp / "data", args.rows, files=4), "data")
        service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="bench")
        session = platform.inferencesessions.create(
            InferenceSessionCreateRequest(account="bench", inferenceService=service.id)
        ).inferencesession.id
        run = partial(_inprocess_run, platform, dataset, session)
        run()  # warm-up
        load = os.getloadavg()[0]
        on: list[float] = []
        off: list[float] = []
        _alternate(
            args.rounds, (off, partial(_switched, False, run)), (on, partial(_switched, True, run))
        )
        _report("in-process TextCompletion", args.rows, on, off, load)


def bench_http(args: argparse.Namespace, tmp: Path) -> None:
    replica = _Replica(tmp / "http", "Echo")
    try:
        dataset = _upload(replica.platform, write_data(tmp / "http-data", args.http_rows), "d")
        run = partial(replica.evaluate, dataset, args.concurrency, 32)
        run()  # warm-up
        load = os.getloadavg()[0]
        on: list[float] = []
        off: list[float] = []
        _alternate(
            args.rounds, (off, partial(_switched, False, run)), (on, partial(_switched, True, run))
        )
        _report("HTTP echo replica, 32 per request", args.http_rows, on, off, load)
    finally:
        replica.close()


def _report(what: str, rows: int, on: list[float], off: list[float], load: float) -> None:
    with_it, without = rows / statistics.median(on), rows / statistics.median(off)
    print(
        f"{what:<36} {rows:>9,} instances: with provenance {with_it:>9,.0f}/s   without "
        f"{without:>9,.0f}/s   ratio {with_it / without:5.2f}x   (target >= 0.95x; medians of "
        f"{len(on)}; {_load(load)})"
    )


def bench_verify(tmp: Path) -> None:
    from assay.cli import main
    from assay.local import LocalPlatform

    data = tmp / "demo"
    started = time.perf_counter()
    code = main(["demo", "--data", str(data)])
    if code != 0:
        raise SystemExit(f"assay demo failed with status {code}")
    print(f"(assay demo took {time.perf_counter() - started:.0f} s)")
    with LocalPlatform(data) as platform:
        for case in platform.safetycases.query():
            start = time.perf_counter()
            result = platform.verify(case.id)
            seconds = time.perf_counter() - start
            print(
                f"verify safety case {case.id} ({case.name}): {len(result.links)} links, "
                f"{'ok' if result.ok else 'MISMATCH'}, {seconds:.2f} s   (target < 2 s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="in-process instances")
    parser.add_argument("--http-rows", type=int, default=100_000, help="HTTP instances")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per side")
    parser.add_argument("--skip-demo", action="store_true", help="do not time verify")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bench_inprocess(args, tmp)
        bench_http(args, tmp)
        if not args.skip_demo:
            bench_verify(tmp)


if __name__ == "__main__":
    main()
