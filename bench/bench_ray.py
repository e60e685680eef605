"""Benchmark of the ``ray`` executor (docs/design/ray.md), measured in one run on a real Ray
cluster started on this machine (``tests/ray/cluster.py``: ``ray start --head`` and
``ray start --address``, one CPU each).

The work is a latency-bound evaluation: an in-process mock that answers one instance at a
time after ``--latency`` seconds (``assay.local.mocks.Slow``: a model that generates one reply
at a time), ``--rows`` instances. Each figure is the median, over ``--rounds`` rounds, of the
wall time from ``evaluations.create`` to ``Complete`` (session start, sharding and the
integrity check included):

1. ``ray`` on 1 node vs 2 nodes: the evaluation is cut into shards that run side by side, each
   with its own instance of the mock, so two nodes answer twice as many at once. Target: at
   least 1.8x. The second node runs one evaluation before it is timed: the first task of a
   new node starts its worker processes and opens their platform cores (~1-2 s, once).
2. The same evaluation on the ``processes`` executor (one worker process) vs ``ray`` on one
   node: Ray's overhead. Target: at most 1.25x.

Run: ``.venv/bin/python bench/bench_ray.py [--rows N] [--latency S] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ray.cluster import RayCluster  # noqa: E402

ACCOUNT = "bench"


def write_data(directory: Path, rows: int, files: int = 2) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    per = rows // files
    for f in range(files):
        start, stop = f * per, rows if f == files - 1 else (f + 1) * per
        table = pa.table(
            {
                "_index_": pa.array(range(start, stop), pa.int64()),
                "text": [f"prompt {i}" for i in range(start, stop)],
            }
        )
        pq.write_table(table, directory / f"part-{f}.parquet")
    return directory


class Bench:
    """A platform with a data set and the slow mock service, ready to run evaluations."""

    def __init__(self, root: Path, data: Path, latency: float, **platform: Any) -> None:
        from assay.local import LocalPlatform, mocks

        self.platform = LocalPlatform(root, account=ACCOUNT, **platform)
        dataset = self.platform.datasets.create_arrow_dataset(data, account=ACCOUNT, name="d")
        self.platform.datasets.upload_arrow_dataset(dataset, data)
        self.platform.datasets.wait(dataset.id, timeout=300)
        self.dataset = dataset.id
        self.service = self.platform.inferenceservices.create_mock(
            mocks.Slow, kwargs={"latency": latency}
        ).id

    def evaluate(self) -> float:
        """Seconds from create to Complete of one evaluation."""
        started = time.perf_counter()
        evaluation = self.platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": self.dataset,
                "inferenceSession": {"inferenceService": self.service},
                "client": {"batchSize": 10},
            }
        )
        done = self.platform.evaluations.wait(evaluation.id, timeout=3600)
        took = time.perf_counter() - started
        if done.status != "Complete":
            raise SystemExit(f"evaluation {evaluation.id} ended {done.status}: {done.message}")
        return took

    def close(self) -> None:
        self.platform.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="assay-bray-", dir="/tmp"))  # short: Ray's sockets
    cluster = RayCluster(scratch / "ray")
    times: dict[str, list[float]] = {"processes": [], "ray, 1 node": [], "ray, 2 nodes": []}
    benches: list[Bench] = []
    try:
        data = write_data(scratch / "data", args.rows)
        cluster.start()
        processes = Bench(
            scratch / "processes", data, args.latency, executor="processes", workers=1
        )
        ray = Bench(
            scratch / "ray-platform",
            data,
            args.latency,
            executor="ray",
            ray_address=cluster.address,
        )
        benches += [processes, ray]
        for bench in benches:  # warm-up: worker processes started, modules imported
            bench.evaluate()
        ideal = args.rows * args.latency
        print(
            f"{args.rows:,} instances x {args.latency} s, one at a time per service instance "
            f"(ideal on one worker: {ideal:.1f} s); load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for r in range(args.rounds):
            times["processes"].append(processes.evaluate())
            times["ray, 1 node"].append(ray.evaluate())
            node = cluster.add_node()
            ray.evaluate()  # warm-up: the new node's workers start (~1-2 s, once per node)
            times["ray, 2 nodes"].append(ray.evaluate())
            node.kill()
            _wait_for_nodes(1)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in times.items())
                + f"; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    finally:
        for bench in benches:
            bench.close()
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    scaling = median["ray, 1 node"] / median["ray, 2 nodes"]
    overhead = median["ray, 1 node"] / median["processes"]
    print(
        f"ray on 2 nodes vs 1: {scaling:.2f}x faster "
        f"({median['ray, 1 node']:.2f} s -> {median['ray, 2 nodes']:.2f} s; target >= 1.8x)"
    )
    print(
        f"ray on 1 node vs processes: {overhead:.2f}x the time "
        f"({median['processes']:.2f} s -> {median['ray, 1 node']:.2f} s; target <= 1.25x)"
    )
    return 0


def _wait_for_nodes(count: int, timeout: float = 60) -> None:
    """Wait until the cluster counts ``count`` live nodes (a killed node is seen dead)."""
    import ray

    deadline = time.monotonic() + timeout
    while len([n for n in ray.nodes() if n.get("Alive")]) != count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster did not come back to {count} node(s)")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
