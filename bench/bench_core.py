"""Benchmark of the foundation: import time and entity create/query rates.

Run with ``make bench`` (or ``.venv/bin/python bench/bench_core.py [--entities N]``). Every
figure is printed beside a baseline measured in the same run on the same machine, because
these machines are shared and noisy:

- ``import assay`` (and ``import assay.local``) against ``python -c pass``, medians of
  several fresh interpreters;
- creating N entities through ``LocalPlatform`` (validation, store, scheduling) and querying
  them back, against plain ``sqlite3`` inserting and reading the same JSON documents in one
  transaction (a ceiling no entity store reaches, since each create is its own transaction).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _interpreter_time(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_import(runs: int) -> None:
    base = _interpreter_time("pass", runs)
    for module in ("assay", "assay.schema.platform", "assay.local"):
        t = _interpreter_time(f"import {module}", runs)
        print(
            f"import {module:<24} {t * 1000:7.1f} ms   python -c pass {base * 1000:6.1f} ms   "
            f"ratio {t / base:5.2f}   (import cost {(t - base) * 1000:6.1f} ms)"
        )
    heavy = ["jupyter", "nbclient", "ray", "torch", "transformers", "fastapi"]
    code = f"import sys, assay, assay.local; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    print(f"heavy modules imported by assay + assay.local: {out.stdout.strip()}")


def _model_request(i: int) -> dict[str, object]:
    return {
        "account": "bench",
        "name": f"model-{i}",
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"storage": "1Gi"},
    }


def bench_entities(n: int) -> None:
    from assay.local import LocalPlatform

    with tempfile.TemporaryDirectory() as tmp:
        # baseline: plain sqlite3, one transaction, the same documents
        docs = [json.dumps({"id": f"{i:032x}", **_model_request(i)}) for i in range(n)]
        con = sqlite3.connect(Path(tmp) / "baseline.db")
        con.execute("pragma journal_mode=wal")
        con.execute("create table t (id text primary key, name text, doc text)")
        start = time.perf_counter()
        with con:
            con.executemany(
                "insert into t values (?, ?, ?)",
                [(f"{i:032x}", f"model-{i}", d) for i, d in enumerate(docs)],
            )
        base_create = time.perf_counter() - start
        start = time.perf_counter()
        rows = [json.loads(r[0]) for r in con.execute("select doc from t order by id")]
        base_query = time.perf_counter() - start
        assert len(rows) == n
        con.close()

        with LocalPlatform(storage_root=Path(tmp) / "platform", account="bench") as platform:
            start = time.perf_counter()
            for i in range(n):
                platform.models.create(_model_request(i))
            create = time.perf_counter() - start
            start = time.perf_counter()
            everything = []
            after = None
            while True:
                page = platform.models.query(limit=1000, after=after)
                everything.extend(page)
                if len(page) < 1000:
                    break
                after = page[-1].id
            query = time.perf_counter() - start
            assert len(everything) == n, len(everything)
            start = time.perf_counter()
            platform.models.query(name=f"model-{n // 2}")
            platform.models.query(labels={"absent": "x"})
            lookups = time.perf_counter() - start

    print(
        f"create {n:,} entities      {n / create:9,.0f} /s   sqlite3 baseline {n / base_create:11,.0f} /s   "
        f"ratio {create / base_create:7.1f}x slower"
    )
    print(
        f"query {n:,} entities back  {n / query:9,.0f} /s   sqlite3 baseline {n / base_query:11,.0f} /s   "
        f"ratio {query / base_query:7.1f}x slower   (pages of 1,000)"
    )
    print(f"two indexed lookups among {n:,}: {lookups * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bench_import(args.runs)
    bench_entities(args.entities)


if __name__ == "__main__":
    main()
