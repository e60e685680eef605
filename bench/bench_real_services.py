"""Benchmark of evaluations against services as they are: slow, batching, rate-limited, stopped.

Every figure is printed beside its baseline, measured or derived in the same run:

1. ``slow``: a single-threaded ``python`` service answering one instance in 1.0 s, no
   ``infer_batch``, 2 replicas, 60 instances, default settings, against the ideal 30 s (each
   replica busy all the time) and a bare loop that sends one request at a time to each
   replica. Target: at most 1.1x the ideal.
2. ``batch``: the same with an ``infer_batch`` that costs 0.1 s + 0.01 s per instance, against
   the ideal (each replica answering one batch of half the instances). Target: at most 1.2x.
3. ``ratelimited``: an OpenAI-compatible service (the fake, in a process of its own) answering
   in 0.2 s and admitting 8 requests at a time (429 with ``Retry-After: 1`` beyond), 1,000
   prompts, default settings. Targets: at least 0.85x the ideal 40 instances/s, every
   instance answered, at most 1.1x as many requests as instances.
4. ``nolimit``: the same service with no admission limit: the adaptive default against the
   best of a sweep of fixed concurrencies (``workersPerReplica``). Target: at least 0.8x.
5. ``rerun``: a script that evaluates 1,600 prompts on the rate-limited service with
   ``client.cache``, interrupted (SIGINT, as Ctrl-C) after 30 s and run again to the end: the
   requests the service received against the instances. Target: at most 1.05x.

Sessions are started before the clock starts (``inferenceSessionReference``): the figures are
of the evaluation, not of starting replicas. Each line ends with the 1-minute load average
before and after (the machine may be shared). Run:
``.venv/bin/python bench/bench_real_services.py [--only NAME] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ACCOUNT = "bench"

MODELS = """
import threading
import time


class OneAtATime:
    '''An LLM on one GPU: one instance at a time, LATENCY seconds each, no infer_batch.'''

    endpoints = ["echo"]

    def __init__(self, latency=1.0):
        self.latency = latency
        self.lock = threading.Lock()

    def infer(self, endpoint, request):
        with self.lock:
            time.sleep(self.latency)
        return [{"text": request["text"]}]


class Batching(OneAtATime):
    '''A batch costs FIXED + PER * instances (one batch at a time).'''

    def __init__(self, fixed=0.1, per=0.01):
        super().__init__()
        self.fixed, self.per = fixed, per

    def infer(self, endpoint, request):
        return self.infer_batch(endpoint, [request])[0]

    def infer_batch(self, endpoint, requests):
        with self.lock:
            time.sleep(self.fixed + self.per * len(requests))
        return [[{"text": r["text"]}] for r in requests]
"""


def _load(before: float) -> str:
    return f"load {before:.2f} -> {os.getloadavg()[0]:.2f}"


def _platform(root: Path) -> Any:
    from assay.local import LocalPlatform

    return LocalPlatform(root)


def _dataset(platform: Any, directory: Path, rows: int) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "_index_": pa.array(range(rows), pa.int64()),
            "text": [f"prompt {i}" for i in range(rows)],
        }
    )
    pq.write_table(table, directory / "part-0.parquet")
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="prompts")
    return str(platform.datasets.upload_arrow_dataset(dataset, directory).id)


def _python_service(platform: Any, tmp: Path, target: str, **kwargs: Any) -> str:
    import pyarrow as pa

    from assay.schema.dataschema import DataSchema

    package = tmp / "benchpkg"
    if not package.exists():
        (package / "benchmodels").mkdir(parents=True)
        (package / "benchmodels" / "__init__.py").write_text(MODELS)
    module = platform.modules.upload_package(
        platform.modules.create_package(package, account=ACCOUNT, name="benchmodels"), package
    )
    schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    request = {
        "account": ACCOUNT,
        "name": target,
        "runner": {
            "kind": "python",
            "configuration": {
                "module": module.id,
                "target": f"benchmodels:{target}",
                "kwargs": kwargs,
            },
        },
        "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
    }
    return str(platform.inferenceservices.create(request).id)


def _openai_service(platform: Any, url: str) -> str:
    from assay.inference.runners.openai import openai_interface

    interface = openai_interface("fake-model", api="completions")
    request = {
        "account": ACCOUNT,
        "name": "api",
        "runner": {"kind": "openai", "configuration": {"baseURL": f"{url}/v1"}},
        "interface": interface.model_dump(by_alias=True),
    }
    return str(platform.inferenceservices.create(request).id)


def _session(platform: Any, service: str, replicas: int = 1) -> str:
    from assay.schema.requests import InferenceSessionCreateRequest

    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service, replicas=replicas)
    )
    return str(created.inferencesession.id)


def _evaluate(platform: Any, dataset: str, session: str, **fields: Any) -> tuple[float, Any]:
    from assay.schema.status import Status

    started = time.monotonic()
    evaluation = platform.evaluations.create(
        {
            "account": ACCOUNT,
            "dataset": dataset,
            "inferenceSessionReference": session,
            **fields,
        }
    )
    seconds = time.monotonic() - started
    if evaluation.status != Status.Complete:
        raise SystemExit(f"the evaluation did not complete: {evaluation.message}")
    return seconds, evaluation


# -- 1, 2. slow python services ------------------------------------------------------------------


def _bare(urls: list[tuple[str, dict[str, str]]], rows: int, batch: int) -> float:
    """Seconds a bare aiohttp loop takes to send ``rows`` instances, ``batch`` per request,
    one request at a time per replica, the rows split evenly."""
    import aiohttp

    async def run() -> float:
        async with aiohttp.ClientSession() as session:

            async def replica(target: tuple[str, dict[str, str]], rows: list[int]) -> None:
                url, headers = target
                for first in range(0, len(rows), batch):
                    chunk = [{"text": f"prompt {i}"} for i in rows[first : first + batch]]
                    path = "/batch/echo" if batch > 1 else "/infer/echo"
                    body = chunk if batch > 1 else chunk[0]
                    async with session.post(url + path, json=body, headers=headers) as reply:
                        reply.raise_for_status()
                        await reply.read()

            started = time.monotonic()
            shares = [list(range(rows))[k :: len(urls)] for k in range(len(urls))]
            await asyncio.gather(*(replica(u, s) for u, s in zip(urls, shares, strict=True)))
            return time.monotonic() - started

    return asyncio.run(run())


def _replica_urls(platform: Any, session: str) -> list[tuple[str, dict[str, str]]]:
    return [(str(h.url), dict(h.headers)) for h in platform.core.sessions.handles(session)]


def bench_slow(args: argparse.Namespace) -> None:
    latency, rows, replicas = (0.25 if args.quick else 1.0), 60, 2
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        platform = _platform(Path(tmp) / "platform")
        dataset = _dataset(platform, Path(tmp) / "data", rows)
        service = _python_service(platform, Path(tmp), "OneAtATime", latency=latency)
        session = _session(platform, service, replicas)
        seconds, _ = _evaluate(platform, dataset, session)
        bare = _bare(_replica_urls(platform, session), rows, 1)
        platform.close()
    ideal = rows * latency / replicas
    print(
        f"slow: {rows} instances of {latency:g} s, {replicas} replicas, defaults: {seconds:.1f} s "
        f"= {seconds / ideal:.3f}x the ideal {ideal:g} s (target <= 1.1x); a bare loop "
        f"{bare:.1f} s = {bare / ideal:.3f}x | {_load(before)}",
        flush=True,
    )


def bench_batch(args: argparse.Namespace) -> None:
    rows, replicas, fixed, per = 60, 2, 0.1, 0.01
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        platform = _platform(Path(tmp) / "platform")
        dataset = _dataset(platform, Path(tmp) / "data", rows)
        service = _python_service(platform, Path(tmp), "Batching", fixed=fixed, per=per)
        session = _session(platform, service, replicas)
        _evaluate(platform, dataset, session)  # warm-up (imports, first connections)
        runs = [_evaluate(platform, dataset, session)[0] for _ in range(args.rounds)]
        bares = [
            _bare(_replica_urls(platform, session), rows, rows // replicas)
            for _ in range(args.rounds)
        ]
        platform.close()
    seconds, bare = sorted(runs)[len(runs) // 2], sorted(bares)[len(bares) // 2]
    ideal = fixed + per * rows / replicas
    print(
        f"batch: {rows} instances, infer_batch {fixed:g} s + {per:g} s/instance, {replicas} "
        f"replicas, defaults: {seconds:.3f} s = {seconds / ideal:.3f}x the ideal {ideal:.2f} s "
        f"(target <= 1.2x); a bare loop (one batch per replica) {bare:.3f} s = "
        f"{bare / ideal:.3f}x (median of {args.rounds}) | {_load(before)}",
        flush=True,
    )


# -- 3, 4. an OpenAI-compatible service --------------------------------------------------------


def _fake(**options: Any) -> Any:
    from assay.inference.fake_openai import FakeOpenAIProcess

    return FakeOpenAIProcess(**options)


def _completions(stats: dict[str, int]) -> int:
    return stats["requests"] - stats.get("rejected_429", 0) - 1  # less GET /v1/models


def bench_ratelimited(args: argparse.Namespace) -> None:
    rows = 400 if args.quick else 1000
    latency, admits = 0.2, 8
    before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        _fake(latency=latency, max_concurrent=admits, retry_after=1.0) as fake,
    ):
        platform = _platform(Path(tmp) / "platform")
        dataset = _dataset(platform, Path(tmp) / "data", rows)
        session = _session(platform, _openai_service(platform, fake.url))
        start = fake.stats()
        seconds, evaluation = _evaluate(platform, dataset, session)
        stats = fake.stats()
        answered = platform.evaluations.open(evaluation.id).to_table().num_rows
        platform.close()
    requests = stats["requests"] - start["requests"]
    rejected = stats["rejected_429"] - start["rejected_429"]
    ideal = admits / latency
    rate = rows / seconds
    print(
        f"ratelimited: {rows} prompts, {latency:g} s each, {admits} admitted at once: "
        f"{rate:.1f}/s = {rate / ideal:.3f}x the ideal {ideal:g}/s (target >= 0.85x); "
        f"{answered} / {rows} answered; {requests} requests = {requests / rows:.3f}x the "
        f"instances ({rejected} refused with 429; target <= 1.1x) | {_load(before)}",
        flush=True,
    )


def bench_nolimit(args: argparse.Namespace) -> None:
    rows = 2000 if args.quick else 5000
    latency = 0.2
    before = os.getloadavg()[0]
    sweep = [16, 64, 128, 256] if not args.quick else [32, 128]
    with tempfile.TemporaryDirectory() as tmp, _fake(latency=latency) as fake:
        platform = _platform(Path(tmp) / "platform")
        dataset = _dataset(platform, Path(tmp) / "data", rows)
        session = _session(platform, _openai_service(platform, fake.url))
        _evaluate(platform, dataset, session, workersPerReplica=64)  # warm-up
        fixed = {
            n: rows / _evaluate(platform, dataset, session, workersPerReplica=n)[0] for n in sweep
        }
        adaptive = rows / _evaluate(platform, dataset, session)[0]
        platform.close()
    best = max(fixed, key=lambda n: fixed[n])
    listed = ", ".join(f"{n}: {r:.0f}/s" for n, r in fixed.items())
    print(
        f"nolimit: {rows} prompts, {latency:g} s each, no admission limit: adaptive "
        f"{adaptive:.0f}/s = {adaptive / fixed[best]:.3f}x the best fixed concurrency "
        f"({best}: {fixed[best]:.0f}/s; sweep {listed}) (target >= 0.8x) | {_load(before)}",
        flush=True,
    )


# -- 5. Ctrl-C and a rerun -------------------------------------------------------------------------

RERUN_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
from bench_real_services import _dataset, _openai_service, _platform, ACCOUNT
from pathlib import Path

root = Path({root!r})
platform = _platform(root / "platform")
found = platform.datasets.query(name="prompts")
dataset = found[0].id if found else _dataset(platform, root / "data", {rows})
service = _openai_service(platform, {url!r})  # a new service each run, as a script makes
evaluation = platform.evaluations.create(
    {{"account": ACCOUNT, "dataset": dataset, "inferenceSession": {{"inferenceService": service}},
     "client": {{"cache": True}}}}
)
print("STATUS", evaluation.status, evaluation.message, flush=True)
platform.close()
"""


def bench_rerun(args: argparse.Namespace) -> None:
    rows = 800 if args.quick else 1600
    after = 10.0 if args.quick else 30.0
    before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        _fake(latency=0.2, max_concurrent=8, retry_after=1.0) as fake,
    ):
        script = Path(tmp) / "audit.py"
        paths = [str(HERE), *sys.path]
        script.write_text(RERUN_SCRIPT.format(paths=paths, root=tmp, rows=rows, url=fake.url))
        env = {**os.environ, "ASSAY_PROGRESS": "0"}
        first = subprocess.Popen([sys.executable, str(script)], env=env)
        time.sleep(after)
        first.send_signal(signal.SIGINT)
        first_code = first.wait(60)
        middle = fake.stats()
        second = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=False
        )
        stats = fake.stats()
    status = next((line for line in second.stdout.splitlines() if line.startswith("STATUS")), "")
    print(
        f"rerun: {rows} prompts with client.cache, SIGINT after {after:g} s (exit {first_code}, "
        f"{_completions(middle)} answered), then run again ({status[:90]}...): "
        f"{stats['requests']} requests = {stats['requests'] / rows:.3f}x the instances "
        f"({_completions(stats)} completions, {stats['rejected_429']} refused with 429; "
        f"target <= 1.05x) | {_load(before)}",
        flush=True,
    )


BENCHMARKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "slow": bench_slow,
    "batch": bench_batch,
    "ratelimited": bench_ratelimited,
    "nolimit": bench_nolimit,
    "rerun": bench_rerun,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs (batch)")
    parser.add_argument(
        "--quick", action="store_true", help="smaller and shorter (not the targets' sizes)"
    )
    args = parser.parse_args()
    os.environ.setdefault("ASSAY_PROGRESS", "0")
    for name, bench in BENCHMARKS.items():
        if not args.only or name in args.only:
            bench(args)


if __name__ == "__main__":
    main()
