"""Benchmark: the session client's per-request overhead against a bare HTTP client.

Both call the same replica process (a ``python``-runner service whose class echoes its input)
over loopback, one request at a time, in the same run; blocks of the two alternate so that
machine noise hits both alike. The session client adds the token check, the interface's
adapters, the output-schema check and replica selection; the bare client is one
``httpx.Client.post`` plus JSON decoding.

Run: ``.venv/bin/python bench/bench_inference.py [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow as pa

from assay.local import LocalPlatform
from assay.schema.dataschema import DataSchema
from assay.schema.requests import InferenceSessionCreateRequest

SOURCE = """
class Echo:
    endpoints = ["echo"]

    def infer(self, endpoint, request):
        return [{"text": request["text"]}]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks of each client")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalPlatform(storage_root=Path(tmp) / "p", account="bench") as platform,
    ):
        package = Path(tmp) / "pkg"
        (package / "echo").mkdir(parents=True)
        (package / "echo" / "__init__.py").write_text(SOURCE)
        module = platform.modules.upload_package(
            platform.modules.create_package(package, account="bench", name="echo"), package
        )
        schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
        service = platform.inferenceservices.create(
            {
                "account": "bench",
                "name": "echo",
                "runner": {
                    "kind": "python",
                    "configuration": {"module": module.id, "target": "echo:Echo"},
                },
                "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
            }
        )
        created = platform.inferencesessions.create(
            InferenceSessionCreateRequest(account="bench", inferenceService=service.id)
        )
        session = created.inferencesession
        assert session.status == "Ready", session.message
        (replica,) = platform.core.sessions.handles(session.id)
        body = {"text": "Open the pod bay doors, Hal!"}

        with (
            httpx.Client() as bare,
            platform.inferencesessions.client(session.id, created.token) as client,
        ):
            url = f"{replica.url}/infer/echo"
            headers = {"Content-Type": "application/json", **replica.headers}

            def bare_block() -> float:
                start = time.perf_counter()
                for _ in range(args.requests):
                    reply = bare.post(url, content=json.dumps(body), headers=headers)
                    reply.raise_for_status()
                    reply.json()
                return (time.perf_counter() - start) / args.requests

            def client_block() -> float:
                start = time.perf_counter()
                for _ in range(args.requests):
                    client.infer(body)
                return (time.perf_counter() - start) / args.requests

            bare_block(), client_block()  # warm up connections and caches
            bare_times, client_times = [], []
            for _ in range(args.rounds):
                bare_times.append(bare_block())
                client_times.append(client_block())
        platform.inferencesessions.terminate(session.id)

    b, c = statistics.median(bare_times), statistics.median(client_times)
    print(f"bare httpx client      {b * 1e6:8.1f} µs/request   ({1 / b:,.0f} requests/s)")
    print(f"assay session client   {c * 1e6:8.1f} µs/request   ({1 / c:,.0f} requests/s)")
    print(
        f"overhead               {(c / b - 1) * 100:+7.1f} %   (target: at most +10 %; medians of {args.rounds} blocks of {args.requests})"
    )


if __name__ == "__main__":
    main()
