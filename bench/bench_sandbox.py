"""Benchmark of the sandbox's cost (docs/design/security.md): the same work with and without
it, measured in the same run, on the embedded platform (``LocalPlatform(sandbox=...)``).

1. An analysis's fixed overhead: a Python-function Method that counts the rows of a 1,000-row
   Dataset, run as a Measurement again and again; the median wall time of
   ``measurements.create`` (which returns when the measurement is done). In the sandbox an
   analysis is a confining fork of the sandboxed fork server (``assay/confine.py``); the
   fallback through a new ``bwrap`` per analysis is measured too.
2. A ``python``-runner replica's throughput: single-instance inference calls through the
   session client to one replica (sequential, so the figure is the per-call round trip), and
   batches of 64.

Targets (issue 14): each at most 1.5x without the sandbox.

Run: ``.venv/bin/python bench/bench_sandbox.py [--rounds R] [--runs N] [--calls C]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_evaluation import write_data  # noqa: E402

FUNCTION = """
import pyarrow as pa


def count(args, *, data):
    return pa.table({"rows": pa.array([data.count_rows()], pa.int64())})


class Echo:
    def infer(self, endpoint, request):
        return [{"text": request["text"]}]

    def infer_batch(self, endpoint, requests):
        return [[{"text": r["text"]}] for r in requests]
"""


class Setup:
    """A platform (with or without the sandbox) with the Method, the Measurement request and
    a Ready session of the echo replica."""

    def __init__(self, root: Path, package: Path, data: Path, *, sandbox: bool) -> None:
        import pyarrow as pa

        from assay.local import LocalPlatform, mocks
        from assay.schema.dataschema import DataSchema

        self.name = "sandbox" if sandbox else "plain"
        self.platform = platform = LocalPlatform(root, account="bench", sandbox=sandbox)
        dataset = platform.datasets.create_arrow_dataset(data, account="bench", name="data")
        platform.datasets.upload_arrow_dataset(dataset, data)
        module = platform.modules.upload_package(
            platform.modules.create_package(package, account="bench", name="trivial"), package
        )
        service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="bench")
        schema = DataSchema.from_arrow(pa.schema([("rows", pa.int64())]))
        method = platform.methods.create(
            {
                "account": "bench",
                "name": "count",
                "scope": "InferenceService",
                "implementation": {
                    "kind": "PythonFunction",
                    "pythonFunction": {"fullyQualifiedName": "trivial.count"},
                },
                "inputs": [{"kind": "Dataset", "keyword": "data"}],
                "output": {
                    "kind": "Measurement",
                    "measurement": {
                        "name": "count",
                        "level": "Dataset",
                        "schema": schema.model_dump(by_alias=True),
                    },
                },
                "modules": [module.id],
            }
        )
        self.request: dict[str, Any] = {
            "account": "bench",
            "method": method.id,
            "scope": {"inferenceService": service.id},
            "inputs": [{"keyword": "data", "entity": dataset.id}],
        }
        output = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
        echo = platform.inferenceservices.create(
            {
                "account": "bench",
                "name": "echo",
                "runner": {
                    "kind": "python",
                    "configuration": {"module": module.id, "target": "trivial:Echo"},
                },
                "interface": {
                    "endpoint": "echo",
                    "outputSchema": output.model_dump(by_alias=True),
                },
            }
        )
        created = platform.inferencesessions.create(
            {"account": "bench", "inferenceService": echo.id}
        )
        session = platform.inferencesessions.get(created.inferencesession.id)
        if session.status != "Ready":
            raise SystemExit(
                f"{self.name}: the echo session is {session.status}: {session.message}"
            )
        self.client = platform.inferencesessions.client(session.id, created.token)

    def analysis(self, runs: int) -> list[float]:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            measurement = self.platform.measurements.create(self.request)
            times.append(time.perf_counter() - start)
            if measurement.status != "Complete":
                raise SystemExit(f"{self.name}: the measurement ended {measurement.message}")
        return times

    def calls(self, n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            self.client.infer({"text": str(i)})
        return n / (time.perf_counter() - start)

    def batches(self, n: int) -> float:
        start = time.perf_counter()
        for i in range(n // 64):
            self.client.infer_many([{"text": str(i * 64 + j)} for j in range(64)])
        return (n // 64) * 64 / (time.perf_counter() - start)

    def close(self) -> None:
        self.client.close()
        self.platform.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks (default 3)")
    parser.add_argument("--runs", type=int, default=5, help="measurements per block (default 5)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per block (default 1000)")
    args = parser.parse_args()
    from assay import sandbox

    why = sandbox.available()
    if why is not None:
        raise SystemExit(f"the sandbox cannot run here: {why}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        package = tmp / "pkg"
        (package / "trivial").mkdir(parents=True)
        (package / "trivial" / "__init__.py").write_text(FUNCTION)
        data = write_data(tmp / "data", 1000)
        plain = Setup(tmp / "plain", package, data, sandbox=False)
        boxed = Setup(tmp / "boxed", package, data, sandbox=True)
        try:
            first = {s.name: s.analysis(1)[0] for s in (plain, boxed)}  # warm-up
            analyses: dict[str, list[float]] = {"plain": [], "sandbox": []}
            calls: dict[str, list[float]] = {"plain": [], "sandbox": []}
            batches: dict[str, list[float]] = {"plain": [], "sandbox": []}
            for s in (plain, boxed):
                s.calls(100)
            for _ in range(args.rounds):
                for s in (plain, boxed):
                    analyses[s.name] += s.analysis(args.runs)
                    calls[s.name].append(s.calls(args.calls))
                    batches[s.name].append(s.batches(args.calls * 4))
            # the same analyses through a new bwrap and interpreter each (the fallback)
            os.environ["ASSAY_SANDBOX_FORK"] = "0"
            through_bwrap = statistics.median(boxed.analysis(args.runs))
            del os.environ["ASSAY_SANDBOX_FORK"]
        finally:
            plain.close()
            boxed.close()
    a_plain, a_box = statistics.median(analyses["plain"]), statistics.median(analyses["sandbox"])
    if os.environ.get("BENCH_VERBOSE"):
        for name, times in analyses.items():
            print(name, " ".join(f"{t * 1000:.0f}" for t in times))
    print(
        f"analysis fixed overhead: sandbox {a_box * 1000:,.0f} ms   without {a_plain * 1000:,.0f}"
        f" ms   ratio {a_box / a_plain:.2f}x   (target <= 1.5x; medians of "
        f"{len(analyses['plain'])})"
    )
    print(
        f"  through bwrap (ASSAY_SANDBOX_FORK=0): {through_bwrap * 1000:,.0f} ms   ratio "
        f"{through_bwrap / a_plain:.2f}x"
    )
    print(
        f"  first analysis of each platform: sandbox {first['sandbox'] * 1000:,.0f} ms   "
        f"without {first['plain'] * 1000:,.0f} ms (the fork server's start)"
    )
    for label, figures in (("single calls", calls), ("batches of 64", batches)):
        c_plain, c_box = statistics.median(figures["plain"]), statistics.median(figures["sandbox"])
        print(
            f"python replica, {label}: sandbox {c_box:,.0f}/s   without {c_plain:,.0f}/s   "
            f"time ratio {c_plain / c_box:.2f}x   (target <= 1.5x)"
        )


if __name__ == "__main__":
    main()
