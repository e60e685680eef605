"""Benchmark of an analysis's fixed overhead: a trivial measurement beside the reference's.

A Python-function Method that counts the rows of a 1,000-row Dataset runs as a Measurement
again and again; the figure is the median wall time of ``measurements.create`` (which returns
when the measurement is done) — process start, imports and bookkeeping, since the work itself
is nothing. The baseline is the reference, ``dyff-audit==0.18.5``'s local platform, doing the
same in its own virtual environment (``bench/.venv-reference``, installed by
``bench_evaluation.py`` or here on first use) in the same run, its ``bin`` first on ``PATH``
because it starts ``python3`` from there. Target: at most 0.15x the reference's time.

Run: ``.venv/bin/python bench/bench_analysis.py [--rounds R] [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_evaluation import REFERENCE_VENV, reference_python, write_data  # noqa: E402

FUNCTION = """
import pyarrow as pa


def count(args, *, data):
    return pa.table({"rows": pa.array([data.count_rows()], pa.int64())})
"""


def _package(directory: Path) -> Path:
    (directory / "trivial").mkdir(parents=True, exist_ok=True)
    (directory / "trivial" / "__init__.py").write_text(FUNCTION)
    return directory


def reference_child(package: Path, data: Path, runs: int) -> None:
    """Runs in the reference's venv: ``runs`` measurements; prints each one's seconds."""
    import pyarrow as pa
    from dyff.audit.local.platform import DyffLocalPlatform  # type: ignore[import-not-found]
    from dyff.schema import ids  # type: ignore[import-not-found]
    from dyff.schema.dataset import arrow  # type: ignore[import-not-found]
    from dyff.schema.requests import (  # type: ignore[import-not-found]
        AnalysisCreateRequest,
        MethodCreateRequest,
    )

    with tempfile.TemporaryDirectory() as tmp:
        platform = DyffLocalPlatform(Path(tmp) / "store")
        dataset = platform.datasets.create_arrow_dataset(str(data), account="bench", name="data")
        platform.datasets.upload_arrow_dataset(dataset, str(data))
        module = platform.modules.create_package(str(package), account="bench", name="trivial")
        platform.modules.upload_package(module, str(package))
        schema = pa.schema([("rows", pa.int64())])
        method = platform.methods.create(
            MethodCreateRequest(
                account="bench",
                name="count",
                scope="InferenceService",
                implementation={
                    "kind": "PythonFunction",
                    "pythonFunction": {"fullyQualifiedName": "trivial.count"},
                },
                parameters=[],
                inputs=[{"kind": "Dataset", "keyword": "data"}],
                output={
                    "kind": "Measurement",
                    "measurement": {
                        "name": "count",
                        "level": "Dataset",
                        "schema": {"arrowSchema": arrow.encode_schema(schema)},
                    },
                },
                modules=[module.id],
            )
        )
        times = []
        for _ in range(runs):
            request = AnalysisCreateRequest(
                account="bench",
                method=method.id,
                scope={"inferenceService": ids.generate_entity_id()},
                inputs=[{"keyword": "data", "entity": dataset.id}],
            )
            start = time.perf_counter()
            measurement = platform.measurements.create(request)
            times.append(time.perf_counter() - start)
            if str(measurement.status) != "Complete":
                raise SystemExit(f"the reference's measurement ended {measurement.status}")
    print(json.dumps({"seconds": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks (default 3)")
    parser.add_argument("--runs", type=int, default=5, help="measurements per block (default 5)")
    parser.add_argument("--reference-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_child:
        package, data, runs = args.reference_child
        reference_child(Path(package), Path(data), int(runs))
        return

    from assay.local import LocalPlatform, mocks
    from assay.schema.dataschema import DataSchema

    python = reference_python()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        package = _package(tmp / "pkg")
        data = write_data(tmp / "data", 1000)
        env = {**os.environ, "PATH": f"{REFERENCE_VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}

        def reference() -> list[float]:
            out = subprocess.run(
                [
                    str(python),
                    __file__,
                    "--reference-child",
                    str(package),
                    str(data),
                    str(args.runs),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            seconds: list[float] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            return seconds

        import pyarrow as pa

        with LocalPlatform(storage_root=tmp / "assay", account="bench") as platform:
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
            request: dict[str, Any] = {
                "account": "bench",
                "method": method.id,
                "scope": {"inferenceService": service.id},
                "inputs": [{"keyword": "data", "entity": dataset.id}],
            }

            def assay() -> list[float]:
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    measurement = platform.measurements.create(request)
                    times.append(time.perf_counter() - start)
                    if measurement.status != "Complete":
                        raise SystemExit(
                            f"the measurement ended {measurement.status}: {measurement.message}"
                        )
                    rows = platform.measurements.open(measurement.id).to_table()["rows"][0].as_py()
                    if rows != 1000:
                        raise SystemExit(f"the measurement counted {rows} rows, expected 1000")
                return times

            first = assay()[0]  # warm-up; the first one starts the fork server
            assay_times: list[float] = []
            reference_times: list[float] = []
            for _ in range(args.rounds):
                reference_times += reference()
                assay_times += assay()
    a, r = statistics.median(assay_times), statistics.median(reference_times)
    print(
        f"trivial measurement (fixed overhead): assay {a * 1000:,.0f} ms   reference "
        f"dyff-audit 0.18.5 {r * 1000:,.0f} ms   ratio {a / r:.3f}x   (target <= 0.15x; "
        f"medians of {len(assay_times)})"
    )
    print(f"  the platform's first analysis (fork server start included): {first * 1000:,.0f} ms")


if __name__ == "__main__":
    main()
