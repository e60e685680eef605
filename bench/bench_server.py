"""Benchmark of the server: entity create and get over HTTP with 50 concurrent clients.

A real ``assay serve`` (its default settings: SQLite, a local directory, the processes
executor) on loopback; 50 concurrent aiohttp clients (one connection each) first create N
InferenceServices (``POST /v0/inferenceservices``, an entity with nothing to run: validated,
stored, indexed), then get them (``GET /v0/inferenceservices/{id}``). Printed: requests/s and
the p50/p99 latency of each, beside a baseline measured in the same run: a bare uvicorn ASGI app
that answers every request with the same JSON body, driven the same way (the ceiling of HTTP
on this machine). Client and server share the machine's cores.

Run: ``.venv/bin/python bench/bench_server.py [--requests N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BASELINE_APP = """
import sys
import uvicorn

BODY = open(sys.argv[2], "rb").read()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start listening")


def service_body() -> dict[str, Any]:
    import pyarrow as pa

    from assay.schema.dataschema import DataSchema

    output = DataSchema.make_output_schema(pa.schema([("text", pa.string())]))
    return {
        "account": "bench",
        "name": "bench-service",
        "runner": {
            "kind": "mock",
            "configuration": {"mockType": "assay.local.mocks.TextCompletion"},
        },
        "interface": {"endpoint": "generate", "outputSchema": output.model_dump(by_alias=True)},
    }


async def drive(
    url: str,
    requests: list[tuple[str, str, bytes | None]],
    concurrency: int,
    headers: dict[str, str],
    check: Callable[[int, bytes], None],
) -> tuple[float, list[float], list[bytes]]:
    """Send ``requests`` (method, path, body) with ``concurrency`` workers; the wall time, each
    request's latency and each reply's body (in request order)."""
    import aiohttp

    latencies: list[float] = [0.0] * len(requests)
    replies: list[bytes] = [b""] * len(requests)
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(requests):
                i = next_index
                next_index += 1
                method, path, body = requests[i]
                start = time.perf_counter()
                async with session.request(method, path, data=body) as response:
                    data = await response.read()
                    check(response.status, data)
                latencies[i] = time.perf_counter() - start
                replies[i] = data

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return wall, latencies, replies


def _ok(status: int, body: bytes) -> None:
    if status >= 300:
        raise SystemExit(f"request failed with {status}: {body[:300]!r}")


def _report(name: str, n: int, wall: float, latencies: list[float], base: float | None) -> float:
    rate = n / wall
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    ratio = f"   ratio {rate / base:5.2f}x of bare uvicorn" if base else ""
    print(f"  {name:<28} {rate:>8,.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms{ratio}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    body = json.dumps(service_body()).encode()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        assay = [str(Path(sys.executable).parent / "assay")]
        token = subprocess.run(
            [*assay, "token", "create", "--data", str(data), "--account", "bench"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        # the baseline: bare uvicorn answering an entity-sized JSON body
        port = _free_port()
        sample = tmp / "sample.json"
        sample.write_bytes(body)
        script = tmp / "baseline.py"
        script.write_text(BASELINE_APP)
        baseline = subprocess.Popen([sys.executable, str(script), str(port), str(sample)])
        try:
            _wait_listening(port, baseline)
            url = f"http://127.0.0.1:{port}"
            warm = [("POST", "/v0/x", body)] * 200
            asyncio.run(drive(url, warm, c, headers, _ok))
            wall, lat, _ = asyncio.run(drive(url, [("POST", "/v0/x", body)] * n, c, headers, _ok))
            base_post = n / wall
            wall_get, lat_get, _ = asyncio.run(
                drive(url, [("GET", "/v0/x", None)] * n, c, headers, _ok)
            )
            base_get = n / wall_get
        finally:
            baseline.terminate()
            baseline.wait()

        port = _free_port()
        env = {**os.environ, "ASSAY_LOG_LEVEL": "warning"}
        server = subprocess.Popen(
            [*assay, "serve", "--data", str(data), "--port", str(port)], env=env
        )
        try:
            _wait_listening(port, server)
            url = f"http://127.0.0.1:{port}"
            create = [("POST", "/v0/inferenceservices", body)]
            asyncio.run(drive(url, create * 200, c, headers, _ok))  # warm-up
            wall_c, lat_c, replies = asyncio.run(drive(url, create * n, c, headers, _ok))
            ids = [json.loads(r)["id"] for r in replies]
            gets = [("GET", f"/v0/inferenceservices/{i}", None) for i in ids]
            wall_g, lat_g, _ = asyncio.run(drive(url, gets, c, headers, _ok))
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"{n:,} requests each, {c} concurrent clients, client and server on this machine")
    _report("bare uvicorn POST (baseline)", n, wall, lat, None)
    _report("bare uvicorn GET (baseline)", n, wall_get, lat_get, None)
    _report("assay create (POST)", n, wall_c, lat_c, base_post)
    _report("assay get (GET)", n, wall_g, lat_g, base_get)


if __name__ == "__main__":
    main()
