"""Benchmark: the per-step overhead of an in-process pipeline against calling the same
services directly.

A pipeline of ``k`` model steps (each a ``TextCompletion`` mock giving one output, so each
step reads the previous one's) answers one row at a time; the direct path calls the same
session clients in the same chain. Blocks of the two alternate so that machine noise hits
both alike. The overhead per step is ``(p50 pipeline - p50 direct) / k``; it includes the
per-inference work (flattening the record into an Arrow table, appending it to the inference
log, the ``on_record`` hook, the timestamp) spread over the ``k`` steps, so the figure for
``k = 1`` is the worst case.

Then: an evaluation of ``--instances`` instances through the deployed one-step pipeline (its
InferenceService, runner kind ``pipeline``, every instance logged) against an evaluation of the
same service directly, alternating; instances/s, best of the runs — for the in-process mock,
and for a ``python`` service (Assay's replica processes, over HTTP).

Run: ``.venv/bin/python bench/bench_pipeline.py [--requests N] [--rounds R] [--instances N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline
from assay.schema.requests import InferenceSessionCreateRequest

ACCOUNT = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks of each path")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4, 8], help="step counts")
    parser.add_argument("--instances", type=int, default=20_000, help="instances evaluated")
    parser.add_argument("--runs", type=int, default=3, help="evaluations of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, LocalPlatform(root, account=ACCOUNT) as platform:
        services = [
            platform.inferenceservices.create_mock(
                mocks.TextCompletion,
                account=ACCOUNT,
                name=f"text-{i}",
                kwargs={"seed": i, "responses_per_request": 1},
            )
            for i in range(max(args.steps))
        ]
        clients = []
        for service in services:
            created = platform.inferencesessions.create(
                InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
            )
            clients.append(
                platform.inferencesessions.client(created.inferencesession.id, created.token)
            )
        print(
            f"{'steps':>5}  {'direct p50 µs':>14}  {'pipeline p50 µs':>16}  {'overhead/step µs':>17}"
        )
        for k in args.steps:
            records: list[Any] = []
            pipeline = Pipeline(platform, f"bench-{k}", on_record=records.append)
            for service in services[:k]:
                pipeline.add_model_step(service)
            pipeline.deploy()
            chain = clients[:k]

            def direct(row: dict[str, Any], chain: list[Any] = chain) -> None:
                current = row
                for client in chain:
                    current = client.infer(current)[0]

            def piped(row: dict[str, Any], pipeline: Pipeline = pipeline) -> None:
                pipeline.infer(row)

            times: dict[str, list[float]] = {"direct": [], "pipeline": []}
            for _ in range(args.rounds):
                for name, call in (("direct", direct), ("pipeline", piped)):
                    times[name] += _block(call, args.requests)
                records.clear()
            d = statistics.median(times["direct"]) * 1e6
            p = statistics.median(times["pipeline"]) * 1e6
            print(f"{k:>5}  {d:>14.1f}  {p:>16.1f}  {(p - d) / k:>17.1f}")
            pipeline.undeploy()
        _evaluations(platform, services[0], Path(root), args.instances, args.runs)


#: A service served by Assay's replica processes (runner kind ``python``), over HTTP.
ECHO_SOURCE = """
class Echo:
    def infer(self, endpoint, request):
        return [{"text": request["text"].upper()}]

    def infer_batch(self, endpoint, requests):
        return [self.infer(endpoint, r) for r in requests]
"""


def _python_service(platform: Any, root: Path) -> Any:
    from assay.schema.dataschema import DataSchema

    package = root / "echo-package"
    (package / "benchecho").mkdir(parents=True)
    (package / "benchecho" / "__init__.py").write_text("")
    (package / "benchecho" / "model.py").write_text(ECHO_SOURCE)
    module = platform.modules.create_package(package, account=ACCOUNT, name="echo")
    module = platform.modules.upload_package(module, package)
    schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    return platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "echo",
            "runner": {
                "kind": "python",
                "configuration": {"module": module.id, "target": "benchecho.model:Echo"},
            },
            "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
        }
    )


def _evaluations(platform: Any, service: Any, root: Path, n: int, runs: int) -> None:
    data = root / "data"
    data.mkdir()
    pq.write_table(
        pa.table(
            {
                "_index_": pa.array(range(n), pa.int64()),
                "text": [f"prompt {i}" for i in range(n)],
            }
        ),
        data / "part-0.parquet",
    )
    dataset = platform.datasets.create_arrow_dataset(data, account=ACCOUNT, name="bench")
    dataset = platform.datasets.upload_arrow_dataset(dataset, data)
    _evaluate(platform, dataset, service, "in-process mock", n, runs)
    _evaluate(platform, dataset, _python_service(platform, root), "python service", n, runs)


def _evaluate(platform: Any, dataset: Any, service: Any, what: str, n: int, runs: int) -> None:
    pipeline = platform.pipelines.create(f"bench-{service.name}")
    pipeline.add_model_step(service).deploy()
    systems = {"direct": service.id, "pipeline": pipeline.inference_service.id}
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(runs):
        for name, system in systems.items():
            start = time.perf_counter()
            evaluation = platform.evaluations.create(
                {
                    "account": ACCOUNT,
                    "dataset": dataset.id,
                    "inferenceSession": {"inferenceService": system},
                }
            )
            evaluation = platform.evaluations.wait(evaluation.id)
            assert evaluation.status == "Complete", evaluation.message
            rates[name].append(n / (time.perf_counter() - start))
    direct, piped = max(rates["direct"]), max(rates["pipeline"])
    print(f"\nevaluation of {n:,} instances, {what} (best of {runs})")
    print(f"  service directly:        {direct:>10,.0f} instances/s")
    print(f"  through the pipeline:    {piped:>10,.0f} instances/s  ({piped / direct:.2f}x)")
    pipeline.log.flush()
    logged = pipeline.log_counters()["written"]
    print(f"  instances logged by the pipeline: {logged:,} ({runs} x {n:,})")


def _block(call: Callable[[dict[str, Any]], None], n: int) -> list[float]:
    result = []
    for i in range(n):
        row = {"text": f"prompt {i}"}
        start = time.perf_counter()
        call(row)
        result.append(time.perf_counter() - start)
    return result


if __name__ == "__main__":
    main()
